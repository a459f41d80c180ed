//! MIME for MM7 (3GPP TS 23.140 section 8.4): the `multipart/related`
//! bodies that carry a SOAP envelope first and the message content after,
//! built and parsed from bytes. Pure: no I/O, so the parser can be fuzzed.
//!
//! Parsing accepts what MMSCs send in practice: header names in any case,
//! quoted or bare parameters, CRLF or bare LF line ends, a preamble before
//! the first boundary, nested `multipart/*` content, and parts in base64,
//! 7bit, 8bit or binary transfer encoding.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The deepest nesting of multiparts followed; deeper parts are refused.
const MAX_DEPTH: usize = 4;
/// The most parts one message may hold.
const MAX_PARTS: usize = 64;

/// One body part: its headers (names lower-case) and decoded bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Part {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Part {
    /// A part of `content_type` holding `body`.
    pub fn new(content_type: &str, body: Vec<u8>) -> Part {
        Part {
            headers: vec![("content-type".into(), content_type.into())],
            body,
        }
    }

    /// Adds a header (its name is kept lower-case).
    pub fn header(mut self, name: &str, value: &str) -> Part {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// The first value of header `name` (any case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The media type, lower-case, without parameters (`text/plain` when absent,
    /// as RFC 2045 says).
    pub fn media_type(&self) -> String {
        self.get("content-type")
            .map(|v| ContentType::parse(v).media_type)
            .unwrap_or_else(|| "text/plain".into())
    }

    /// The Content-ID without its angle brackets.
    pub fn content_id(&self) -> Option<String> {
        self.get("content-id").map(strip_angles)
    }

    /// The Content-Location, if any.
    pub fn content_location(&self) -> Option<&str> {
        self.get("content-location").map(str::trim)
    }
}

/// Removes `<` and `>` around a Content-ID (and a `cid:` prefix of an href).
pub fn strip_angles(value: &str) -> String {
    let value = value.trim();
    let value = value.strip_prefix("cid:").unwrap_or(value);
    value
        .strip_prefix('<')
        .and_then(|v| v.strip_suffix('>'))
        .unwrap_or(value)
        .to_string()
}

/// A parsed `Content-Type` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    /// Lower-case `type/subtype`.
    pub media_type: String,
    /// Parameters, names lower-case, values unquoted.
    pub params: Vec<(String, String)>,
}

impl ContentType {
    pub fn parse(value: &str) -> ContentType {
        let mut rest = value.trim();
        let end = rest.find(';').unwrap_or(rest.len());
        let media_type = rest[..end].trim().to_ascii_lowercase();
        rest = &rest[end..];
        let mut params = Vec::new();
        while let Some(after) = rest.strip_prefix(';') {
            let after = after.trim_start();
            let Some(eq) = after.find('=') else {
                break;
            };
            let name = after[..eq].trim().to_ascii_lowercase();
            let value_part = after[eq + 1..].trim_start();
            let (value, next) = if let Some(quoted) = value_part.strip_prefix('"') {
                let mut out = String::new();
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, escaped)) = chars.next() {
                                out.push(escaped);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => out.push(c),
                    }
                }
                (out, &quoted[end.min(quoted.len())..])
            } else {
                let end = value_part.find(';').unwrap_or(value_part.len());
                (value_part[..end].trim().to_string(), &value_part[end..])
            };
            params.push((name, value));
            rest = next.trim_start();
            if !rest.starts_with(';') {
                break;
            }
        }
        ContentType { media_type, params }
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a body could not be read as MIME.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MimeError {
    #[error("Content-Type {0:?} is multipart without a boundary parameter")]
    NoBoundary(String),
    #[error("the body holds no part delimited by boundary {0:?}")]
    NoParts(String),
    #[error("a part's headers are not followed by an empty line")]
    Headers,
    #[error("a part's base64 content cannot be decoded")]
    Base64,
    #[error("multipart nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("more than {MAX_PARTS} parts")]
    TooManyParts,
}

/// Splits a multipart body into its parts (not descending into nested
/// multiparts; see [`flatten`]).
pub fn parse_multipart(content_type: &str, body: &[u8]) -> Result<Vec<Part>, MimeError> {
    let ct = ContentType::parse(content_type);
    let boundary = ct
        .param("boundary")
        .filter(|b| !b.is_empty())
        .ok_or_else(|| MimeError::NoBoundary(content_type.to_string()))?;
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut positions = Vec::new();
    let mut at = 0;
    // A delimiter starts the body or follows a line end.
    while let Some(found) = find(&body[at..], delimiter.as_bytes()) {
        let start = at + found;
        let line_start = start == 0 || body[start - 1] == b'\n';
        if line_start {
            positions.push(start);
        }
        at = start + delimiter.len();
    }
    for pair in positions.windows(2) {
        let (start, next) = (pair[0], pair[1]);
        let after = start + delimiter.len();
        if body[after..].starts_with(b"--") {
            break;
        }
        // The rest of the delimiter line (transport padding) is skipped.
        let content_start = match find(&body[after..next], b"\n") {
            Some(nl) => after + nl + 1,
            None => continue,
        };
        // The line end before the next delimiter belongs to the delimiter.
        let mut content_end = next;
        if content_end > content_start && body[content_end - 1] == b'\n' {
            content_end -= 1;
            if content_end > content_start && body[content_end - 1] == b'\r' {
                content_end -= 1;
            }
        }
        let content_end = content_end.max(content_start);
        parts.push(parse_part(&body[content_start..content_end])?);
        if parts.len() > MAX_PARTS {
            return Err(MimeError::TooManyParts);
        }
    }
    if parts.is_empty() {
        return Err(MimeError::NoParts(boundary.to_string()));
    }
    Ok(parts)
}

/// Parses one part: headers (folded lines joined), an empty line, content
/// decoded from its transfer encoding.
pub fn parse_part(raw: &[u8]) -> Result<Part, MimeError> {
    let (head, content) = if raw.starts_with(b"\r\n") {
        (&raw[..0], &raw[2..])
    } else if raw.starts_with(b"\n") {
        (&raw[..0], &raw[1..])
    } else if let Some(i) = find(raw, b"\r\n\r\n") {
        let lf = find(raw, b"\n\n").filter(|&j| j < i);
        match lf {
            Some(j) => (&raw[..j], &raw[j + 2..]),
            None => (&raw[..i], &raw[i + 4..]),
        }
    } else if let Some(j) = find(raw, b"\n\n") {
        (&raw[..j], &raw[j + 2..])
    } else if raw
        .iter()
        .all(|b| !b.is_ascii_control() || matches!(b, b'\r' | b'\n' | b'\t'))
        && raw.contains(&b':')
    {
        // Headers only: an empty part whose blank line went with the
        // delimiter's line end.
        (raw, &raw[..0])
    } else {
        return Err(MimeError::Headers);
    };
    let head = String::from_utf8_lossy(head);
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let mut part = Part {
        headers,
        body: Vec::new(),
    };
    let encoding = part
        .get("content-transfer-encoding")
        .unwrap_or("binary")
        .trim()
        .to_ascii_lowercase();
    part.body = if encoding == "base64" {
        let cleaned: Vec<u8> = content
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        STANDARD.decode(cleaned).map_err(|_| MimeError::Base64)?
    } else {
        content.to_vec()
    };
    Ok(part)
}

/// Every leaf part under `parts`, nested multiparts opened.
pub fn flatten(parts: Vec<Part>) -> Result<Vec<Part>, MimeError> {
    let mut out = Vec::new();
    flatten_into(parts, 0, &mut out)?;
    Ok(out)
}

fn flatten_into(parts: Vec<Part>, depth: usize, out: &mut Vec<Part>) -> Result<(), MimeError> {
    if depth > MAX_DEPTH {
        return Err(MimeError::TooDeep);
    }
    for part in parts {
        if part.media_type().starts_with("multipart/") {
            let ct = part.get("content-type").unwrap_or_default().to_string();
            flatten_into(parse_multipart(&ct, &part.body)?, depth + 1, out)?;
        } else {
            out.push(part);
        }
        if out.len() > MAX_PARTS {
            return Err(MimeError::TooManyParts);
        }
    }
    Ok(())
}

/// A boundary that cannot occur in base64 or in the SOAP text we write.
pub fn new_boundary() -> String {
    format!("mms-part-{:016x}", rand::random::<u64>())
}

/// Writes `parts` as one multipart body delimited by `boundary`. Parts
/// whose media type is not text are written in base64.
pub fn write_multipart(boundary: &str, parts: &[Part]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let textual = {
            let t = part.media_type();
            t.starts_with("text/") || t.starts_with("multipart/") || t.ends_with("+xml")
        };
        for (name, value) in &part.headers {
            if name == "content-transfer-encoding" {
                continue;
            }
            out.extend_from_slice(format!("{}: {value}\r\n", header_name(name)).as_bytes());
        }
        if !textual {
            out.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n\r\n");
            let encoded = STANDARD.encode(&part.body);
            let lines: Vec<&[u8]> = encoded.as_bytes().chunks(76).collect();
            out.extend_from_slice(&lines.join(&b"\r\n"[..]));
        } else {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&part.body);
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

/// `content-type` → `Content-Type`, `content-id` → `Content-ID`.
fn header_name(lower: &str) -> String {
    if lower == "content-id" {
        return "Content-ID".into();
    }
    lower
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_parameters_quoted_or_bare() {
        let ct = ContentType::parse(
            r#"Multipart/Related; boundary="Next Part;1"; type=text/xml; start="<soap@x>""#,
        );
        assert_eq!(ct.media_type, "multipart/related");
        assert_eq!(ct.param("boundary"), Some("Next Part;1"));
        assert_eq!(ct.param("type"), Some("text/xml"));
        assert_eq!(ct.param("start"), Some("<soap@x>"));
    }

    #[test]
    fn written_parts_read_back_alike() {
        let image: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let parts = vec![
            Part::new("text/xml; charset=utf-8", b"<a/>".to_vec()).header("Content-ID", "<soap>"),
            Part::new("image/png", image.clone()).header("Content-ID", "<img1>"),
        ];
        let boundary = new_boundary();
        let body = write_multipart(&boundary, &parts);
        let ct = format!("multipart/related; boundary=\"{boundary}\"; type=\"text/xml\"");
        let read = parse_multipart(&ct, &body).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].body, b"<a/>");
        assert_eq!(read[0].content_id().as_deref(), Some("soap"));
        assert_eq!(read[1].body, image);
        assert_eq!(read[1].media_type(), "image/png");

        // An empty part keeps the blank line after its headers.
        let empty = vec![
            Part::new("image/gif", Vec::new()),
            Part::new("text/plain", Vec::new()),
        ];
        let body = write_multipart("b", &empty);
        let read = parse_multipart("multipart/mixed; boundary=b", &body).unwrap();
        assert_eq!(read.len(), 2);
        assert!(read[0].body.is_empty() && read[1].body.is_empty());
        assert_eq!(read[0].media_type(), "image/gif");
    }

    #[test]
    fn nested_multipart_with_lf_line_ends_and_preamble() {
        let body = b"preamble\n--outer\nContent-Type: text/xml\n\n<x/>\n--outer\nContent-Type: multipart/mixed; boundary=inner\n\n--inner\nContent-Type: text/plain\n\nhello\n--inner\nContent-Type: image/gif\nContent-Transfer-Encoding: base64\nContent-ID: <g>\n\nR0lG\nODlh\n--inner--\n\n--outer--\n";
        let parts = parse_multipart("multipart/related; boundary=outer", body).unwrap();
        assert_eq!(parts.len(), 2);
        let leaves = flatten(parts).unwrap();
        assert_eq!(leaves.len(), 3);
        assert_eq!(leaves[1].body, b"hello");
        assert_eq!(leaves[2].body, b"GIF89a");
        assert_eq!(leaves[2].content_id().as_deref(), Some("g"));
    }

    #[test]
    fn refusals_name_their_cause() {
        assert!(matches!(
            parse_multipart("multipart/related", b"x"),
            Err(MimeError::NoBoundary(_))
        ));
        assert!(matches!(
            parse_multipart("multipart/related; boundary=b", b"no delimiters"),
            Err(MimeError::NoParts(_))
        ));
        let bad = b"--b\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!\r\n--b--";
        assert_eq!(
            parse_multipart("multipart/related; boundary=b", bad),
            Err(MimeError::Base64)
        );
    }

    proptest::proptest! {
        #[test]
        fn any_bodies_round_trip(
            text in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            binary in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            let parts = vec![
                Part::new("text/plain", text.clone()),
                Part::new("image/gif", binary.clone()),
            ];
            let boundary = new_boundary();
            let body = write_multipart(&boundary, &parts);
            let read = parse_multipart(&format!("multipart/mixed; boundary={boundary}"), &body).unwrap();
            proptest::prop_assert_eq!(read.len(), 2);
            proptest::prop_assert_eq!(&read[0].body, &text);
            proptest::prop_assert_eq!(&read[1].body, &binary);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 7u64;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    let alphabet = b"-b\r\n:ab \"=";
                    alphabet[(seed >> 33) as usize % alphabet.len()]
                })
                .collect();
            let _ = parse_multipart("multipart/related; boundary=b", &bytes).map(flatten);
        }
    }
}
