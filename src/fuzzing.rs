//! The checks the fuzz targets (`fuzz/`) run on arbitrary bytes, kept in
//! the library so the stable test suite replays every corpus entry
//! through the very same code (`tests/fuzz_corpus.rs`). Each check panics
//! on a broken property; returning means the input was handled.
//!
//! - [`params`]: query/form decoding and multipart parsing, within limits.
//! - [`envelope`]: the XML and JSON writers give well-formed documents
//!   that read back to what was written (XML 1.0's replacement rule aside).
//! - [`smpp_pdu`]: rusmpp's decoder on raw bytes, then our handling of
//!   what a `deliver_sm` carries (text decoding, receipts); and our
//!   encoder's segments decode back to the text.
//! - [`smpp_receipt`]: receipt text and id parsing.
//! - [`mm7`]: MM7 requests and submit answers (SOAP, `multipart/related`)
//!   as an MMSC posts them; what reads as a request can be answered, and
//!   the answer reads back.

use std::sync::OnceLock;

use crate::api::envelope::{Reply, XmlNode};
use crate::api::params::Params;
use crate::api::request::{FormLimits, read_multipart};
use crate::smpp::pdu::encoding;
use crate::smpp::receipt;

/// A target's check.
pub type Check = fn(&[u8]);

/// The targets, by the name of their corpus folder.
pub const TARGETS: &[(&str, Check)] = &[
    ("params", params),
    ("envelope", envelope),
    ("smpp_pdu", smpp_pdu),
    ("smpp_receipt", smpp_receipt),
    ("mm7", mm7),
];

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    })
}

/// The first byte picks a variant; the rest is the input.
fn split(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((first, rest)) => (*first, rest),
        None => (0, data),
    }
}

/// Form and query decoding, and multipart bodies with a boundary taken
/// from the input's first line.
pub fn params(data: &[u8]) {
    let mut form = Params::default();
    form.add_form(data);
    assert!(form.len() <= data.len() / 2 + 1, "more pairs than `&`s");

    let (boundary, body) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&b"B"[..], data),
    };
    let Ok(boundary) = std::str::from_utf8(boundary) else {
        return;
    };
    let limits = FormLimits {
        body_bytes: 64 * 1024,
        media_bytes: 64 * 1024,
    };
    let body = axum::body::Body::from(body.to_vec());
    let parsed = runtime().block_on(read_multipart(body, boundary.to_string(), limits, None));
    if let Ok(fields) = parsed {
        assert!(fields.len() <= 1000, "the part limit held");
        assert!(
            fields.upload.is_none(),
            "no upload without an upload folder"
        );
    }
}

/// An envelope with the input as message, CDATA field, text field and
/// attribute, in XML and JSON: well-formed, and read back unchanged.
pub fn envelope(data: &[u8]) {
    let value = String::from_utf8_lossy(data).into_owned();
    let reply = Reply::success(value.clone())
        .cdata("name", value.clone())
        .text("hash", value.clone())
        .xml(XmlNode::new("item").attr("id", &value).cdata(value.clone()));

    let xml = reply.to_xml();
    let read = read_xml(&xml);
    // XML 1.0 cannot carry some characters: they become U+FFFD, and a CR
    // inside CDATA is a line end like any other.
    let safe: String = value
        .chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => '\u{fffd}',
            c => c,
        })
        .collect();
    let cdata_safe = safe.replace("\r\n", "\n").replace('\r', "\n");
    let text = |name: &str| read.texts.get(name).cloned().unwrap_or_default();
    assert_eq!(text("message"), cdata_safe, "{xml}");
    assert_eq!(text("name"), cdata_safe, "{xml}");
    assert_eq!(text("hash"), safe, "{xml}");
    assert_eq!(read.attribute.as_ref(), Some(&safe), "{xml}");

    for legacy in [false, true] {
        let json: serde_json::Value =
            serde_json::from_str(&reply.to_json(legacy)).expect("well-formed JSON");
        assert_eq!(json["response"]["message"], serde_json::json!(value));
        assert_eq!(json["response"]["name"], serde_json::json!(value));
    }
}

/// What [`read_xml`] found.
struct ReadBack {
    /// The text of each element directly under `<response>`.
    texts: std::collections::HashMap<String, String>,
    /// The `id` attribute of `<item>`.
    attribute: Option<String>,
}

/// Parses `xml` as XML 1.0, panicking where it is not well-formed.
fn read_xml(xml: &str) -> ReadBack {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    reader.config_mut().check_end_names = true;
    let mut read = ReadBack {
        texts: Default::default(),
        attribute: None,
    };
    let mut path: Vec<String> = Vec::new();
    let mut roots = 0;
    loop {
        let event = reader.read_event().unwrap_or_else(|e| panic!("{e}: {xml}"));
        let current = || path.last().cloned().unwrap_or_default();
        match event {
            Event::Start(e) => {
                let name = String::from_utf8(e.name().as_ref().to_vec()).expect("UTF-8 name");
                if path.is_empty() {
                    roots += 1;
                }
                if name == "item" {
                    for a in e.attributes() {
                        let a = a.unwrap_or_else(|e| panic!("{e}: {xml}"));
                        let v = a
                            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .unwrap_or_else(|e| panic!("{e}: {xml}"));
                        read.attribute = Some(v.to_string());
                    }
                }
                path.push(name);
            }
            Event::End(_) => {
                path.pop();
            }
            Event::CData(d) => {
                let text = std::str::from_utf8(&d).expect("UTF-8 CDATA");
                let text = text.replace("\r\n", "\n").replace('\r', "\n");
                read.texts.entry(current()).or_default().push_str(&text);
            }
            Event::Text(t) => {
                let text = t.xml10_content().unwrap_or_else(|e| panic!("{e}: {xml}"));
                read.texts.entry(current()).or_default().push_str(&text);
            }
            Event::GeneralRef(r) => {
                let c = match crate::api::envelope::predefined_entity(&r) {
                    Some(c) => c,
                    None => r
                        .resolve_char_ref()
                        .unwrap_or_else(|e| panic!("{e}: {xml}"))
                        .expect("a character reference"),
                };
                read.texts.entry(current()).or_default().push(c);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert!(path.is_empty(), "unclosed elements: {xml}");
    assert_eq!(roots, 1, "one root element: {xml}");
    read
}

/// Raw bytes through rusmpp's decoder and our handling of each PDU; then
/// the input as text through our encoder and back.
pub fn smpp_pdu(data: &[u8]) {
    use bytes::BytesMut;
    use rusmpp::Pdu;
    use rusmpp::tokio_codec::CommandCodec;
    use tokio_util::codec::Decoder;

    let mut codec = CommandCodec::new();
    let mut buffer = BytesMut::from(data);
    // Each decoded command takes bytes, so this ends.
    while let Ok(Some(command)) = codec.decode(&mut buffer) {
        if let Some(Pdu::DeliverSm(deliver)) = command.pdu() {
            let esm = u8::from(deliver.esm_class);
            let short = deliver.short_message().as_ref();
            let _ = encoding::decode(u8::from(deliver.data_coding), esm & 0x40 != 0, short);
            let _ = receipt::parse(None, None, short);
        }
    }

    let (reference, rest) = split(data);
    let text = String::from_utf8_lossy(rest);
    let encoded = encoding::encode(&text, reference);
    assert!(!encoded.segments.is_empty(), "at least one segment");
    let mut joined = String::new();
    for segment in &encoded.segments {
        // GSM 7-bit goes unpacked, a septet an octet: 160 (or 6 + 153);
        // UCS-2 in 140 octets.
        let room = if encoded.data_coding == 8 { 140 } else { 160 };
        assert!(segment.len() <= room, "a segment fits one short_message");
        let decoded = encoding::decode(encoded.data_coding, encoded.udhi, segment);
        assert_eq!(decoded.concat.is_some(), encoded.segments.len() > 1);
        joined.push_str(&decoded.text);
    }
    assert_eq!(joined, text, "segments decode to the text");
}

/// Receipt text, and ids as SMSCs write them.
pub fn smpp_receipt(data: &[u8]) {
    let (state, rest) = split(data);
    let parsed = receipt::parse(None, None, rest);
    let with_tlv = receipt::parse(Some(&String::from_utf8_lossy(rest)), Some(state), rest);
    if let Some(receipt) = parsed {
        assert!(!receipt.message_id.is_empty());
        let normal = receipt::normalise_id(&receipt.message_id);
        assert_eq!(receipt::normalise_id(&normal), normal, "normalising twice");
        let candidates = receipt::candidates(&receipt.message_id);
        assert!(candidates.contains(&normal), "the id itself is a candidate");
    }
    if let Some(receipt) = with_tlv {
        assert!(!receipt.message_id.trim().is_empty());
    }
}

/// An MM7 message: the input's first line is its `Content-Type`, the rest
/// its body. Reading never panics; a request that reads can be answered,
/// and that answer reads back with its transaction id and message id.
pub fn mm7(data: &[u8]) {
    use crate::mm7::envelope::{self, Status, Version};
    let (content_type, body) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (
            String::from_utf8_lossy(&data[..at]).into_owned(),
            &data[at + 1..],
        ),
        None => ("text/xml".to_string(), data),
    };
    let _ = envelope::parse_submit_response(&content_type, body);
    let _ = crate::mm7::mime::parse_multipart(&content_type, body);
    let Ok(request) = envelope::parse_request(&content_type, body) else {
        return;
    };
    let id = request.transaction_id();
    // XML 1.0 cannot carry control characters, whatever the escaping.
    if id.chars().any(|c| c.is_control()) {
        return;
    }
    let answer = envelope::response(
        &Version::default(),
        "SubmitRsp",
        id,
        &Status::success(),
        Some("fuzz-1"),
    );
    let read = envelope::parse_submit_response("text/xml", answer.as_bytes())
        .unwrap_or_else(|e| panic!("our answer does not read back: {e}\n{answer}"));
    assert_eq!(read.transaction_id, id.trim(), "transaction id");
    assert_eq!(read.message_id, "fuzz-1");
}
