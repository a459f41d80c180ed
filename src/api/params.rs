//! Request parameters (spec section 1): query string, urlencoded body and
//! multipart fields merged, the body winning on a clash and the last of a
//! repeated key winning within one source. Empty values count as absent.
//!
//! Decoding is lenient on purpose: clients of the old service send
//! unencoded or double-encoded values, so an invalid `%XX` is kept as
//! written and invalid UTF-8 becomes U+FFFD. Nothing here can fail.

use std::collections::HashMap;
use std::path::PathBuf;

use super::error::{ApiError, Code};

/// A file part of a multipart body, already streamed to disk.
#[derive(Debug)]
pub struct Upload {
    pub path: PathBuf,
    pub file_name: Option<String>,
    pub size: u64,
}

impl Drop for Upload {
    fn drop(&mut self) {
        // The media store moves the file away; anything left is a temp file.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[derive(Debug, Default)]
pub struct Params {
    values: HashMap<String, String>,
    pub upload: Option<Upload>,
}

impl Params {
    /// Decodes `application/x-www-form-urlencoded` text, adding its pairs
    /// (later ones win).
    pub fn add_form(&mut self, input: &[u8]) {
        for pair in input.split(|b| *b == b'&') {
            if pair.is_empty() {
                continue;
            }
            let (key, value) = match pair.iter().position(|b| *b == b'=') {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &b""[..]),
            };
            self.set(decode_component(key), decode_component(value));
        }
    }

    pub fn set(&mut self, key: String, value: String) {
        self.values.insert(key, value);
    }

    /// Copies `other` over these values: `other` wins on a clash.
    pub fn merge_over(&mut self, other: Params) {
        let Params { values, upload } = other;
        self.values.extend(values);
        if upload.is_some() {
            self.upload = upload;
        }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// A value, `None` when absent or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A value that must be there, else `missing`.
    pub fn require(&self, name: &str, missing: Code) -> Result<&str, ApiError> {
        self.get(name)
            .ok_or_else(|| ApiError::detail(missing, format!("\"{name}\" is required")))
    }

    /// An optional positive integer id; `invalid` when present but not one.
    pub fn id(&self, name: &str, invalid: Code) -> Result<Option<i64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(raw) => parse_id(raw).map(Some).ok_or_else(|| {
                ApiError::detail(invalid, format!("{raw:?} is not a positive integer"))
            }),
        }
    }

    /// A required positive integer id.
    pub fn require_id(&self, name: &str, missing: Code, invalid: Code) -> Result<i64, ApiError> {
        self.require(name, missing)?;
        Ok(self.id(name, invalid)?.expect("checked present"))
    }

    /// Every `udp_*` parameter, sorted by name so echoes are stable.
    pub fn udp(&self) -> Vec<(String, String)> {
        let mut udp: Vec<(String, String)> = self
            .values
            .iter()
            .filter(|(k, v)| k.starts_with("udp_") && k.len() > 4 && !v.is_empty())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        udp.sort();
        udp
    }

    /// A `limit` for listing methods (spec section 4): 1–10,000, default 1,000.
    pub fn limit(&self) -> Result<i64, ApiError> {
        match self.get("limit") {
            None => Ok(1000),
            Some(raw) => raw
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=10_000).contains(n))
                .ok_or_else(|| {
                    ApiError::detail(Code::BadRequest, "\"limit\" must be between 1 and 10000")
                }),
        }
    }
}

/// A positive integer that fits the 31-bit ids of spec section 4.
pub fn parse_id(raw: &str) -> Option<i64> {
    let raw = raw.trim();
    if raw.is_empty() || raw.len() > 18 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse::<i64>().ok().filter(|n| *n > 0 && *n < (1 << 31))
}

/// Percent-decodes one form component leniently: `+` is a space, a `%`
/// not followed by two hex digits stays as written, and bytes that are not
/// UTF-8 become U+FFFD.
pub fn decode_component(input: &[u8]) -> String {
    let mut bytes = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => bytes.push(b' '),
            b'%' if i + 2 < input.len() => match (hex(input[i + 1]), hex(input[i + 2])) {
                (Some(h), Some(l)) => {
                    bytes.push(h << 4 | l);
                    i += 2;
                }
                _ => bytes.push(b'%'),
            },
            b => bytes.push(b),
        }
        i += 1;
    }
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn form(input: &str) -> Params {
        let mut params = Params::default();
        params.add_form(input.as_bytes());
        params
    }

    #[test]
    fn plus_is_space_and_escapes_decode() {
        let p = form("message=hello+world%21&to=%2B1%20310");
        assert_eq!(p.get("message"), Some("hello world!"));
        assert_eq!(p.get("to"), Some("+1 310"));
    }

    #[test]
    fn invalid_escapes_are_kept_as_written() {
        assert_eq!(form("m=100%").get("m"), Some("100%"));
        assert_eq!(form("m=%zz%4").get("m"), Some("%zz%4"));
        assert_eq!(form("m=%%41").get("m"), Some("%A"));
    }

    #[test]
    fn invalid_utf8_becomes_replacement_character() {
        assert_eq!(form("m=a%FFb").get("m"), Some("a\u{fffd}b"));
    }

    #[test]
    fn empty_is_absent_and_last_repeat_wins() {
        let p = form("a=&b=1&b=2&c");
        assert_eq!(p.get("a"), None);
        assert_eq!(p.get("c"), None);
        assert_eq!(p.get("b"), Some("2"));
    }

    #[test]
    fn body_wins_over_query() {
        let mut query = form("a=query&b=query");
        query.merge_over(form("a=body"));
        assert_eq!(query.get("a"), Some("body"));
        assert_eq!(query.get("b"), Some("query"));
    }

    #[test]
    fn ids_are_positive_31_bit_integers() {
        assert_eq!(parse_id("42"), Some(42));
        assert_eq!(parse_id("0"), None);
        assert_eq!(parse_id("-3"), None);
        assert_eq!(parse_id("2147483648"), None);
        assert_eq!(parse_id("12a"), None);
    }

    fn encode(value: &str) -> String {
        percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
    }

    proptest! {
        #[test]
        fn any_string_round_trips_through_form_encoding(key in "[a-z_]{1,12}", value in any::<String>()) {
            let p = form(&format!("{}={}", encode(&key), encode(&value)));
            let expected = if value.is_empty() { None } else { Some(value.as_str()) };
            prop_assert_eq!(p.get(&key), expected);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut p = Params::default();
            p.add_form(&bytes);
            // Every decoded key came from between separators: a raw `&` is impossible
            // unless it was percent-encoded.
            for k in p.values.keys() {
                prop_assert!(!k.contains('&') || bytes.contains(&b'%'));
            }
        }
    }
}
