//! MM7 SOAP envelopes (3GPP TS 23.140 section 8.7, schema REL-5-MM7-1-2
//! and later): `SubmitReq` built for the MMSC; `SubmitRsp` read back;
//! `DeliveryReportReq` and `DeliverReq` read from the MMSC and answered
//! with their `…Rsp`. Pure: bytes in, values out, no I/O, so the parsers
//! can be fuzzed ([`parse_request`], [`parse_submit_response`]).
//!
//! Elements are matched by local name, whatever prefix or namespace the
//! peer uses, so one parser reads every schema version; what we write
//! uses the namespace and `MM7Version` of the configured version.

use quick_xml::events::Event;

use super::mime::{self, ContentType, MimeError, Part};

/// The schema versions we write (and the `MM7Version` each declares).
pub const VERSIONS: &[(&str, &str)] = &[
    ("REL-5-MM7-1-2", "5.3.0"),
    ("REL-5-MM7-1-3", "5.5.0"),
    ("REL-6-MM7-1-4", "6.8.0"),
    ("REL-6-MM7-1-5", "6.8.0"),
];

/// The SOAP 1.1 envelope namespace.
pub const SOAP_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// A schema version from [`VERSIONS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub schema: &'static str,
    pub mm7_version: &'static str,
}

impl Version {
    /// The version named `schema`; the error lists the supported ones.
    pub fn parse(schema: &str) -> Result<Version, String> {
        VERSIONS
            .iter()
            .find(|(s, _)| s.eq_ignore_ascii_case(schema.trim()))
            .map(|(s, v)| Version {
                schema: s,
                mm7_version: v,
            })
            .ok_or_else(|| {
                let known: Vec<&str> = VERSIONS.iter().map(|(s, _)| *s).collect();
                format!(
                    "MM7 version {schema:?} is not supported: use one of {}",
                    known.join(", ")
                )
            })
    }

    pub fn namespace(&self) -> String {
        format!(
            "http://www.3gpp.org/ftp/Specs/archive/23_series/23.140/schema/{}",
            self.schema
        )
    }
}

impl Default for Version {
    fn default() -> Version {
        Version::parse("REL-5-MM7-1-2").expect("the default version is listed")
    }
}

/// An address in MM7: a phone number (E.164 digits), a short code, or an
/// e-mail address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Number(String),
    ShortCode(String),
    Email(String),
}

impl Address {
    /// A sender or recipient of ours: up to 6 digits is a short code.
    pub fn of_digits(digits: &str) -> Address {
        if digits.len() <= 6 {
            Address::ShortCode(digits.to_string())
        } else {
            Address::Number(digits.to_string())
        }
    }

    /// The address text without any `+` or `/TYPE=PLMN` suffix.
    pub fn value(&self) -> &str {
        match self {
            Address::Number(v) | Address::ShortCode(v) | Address::Email(v) => v,
        }
    }

    fn element(&self) -> &'static str {
        match self {
            Address::Number(_) => "Number",
            Address::ShortCode(_) => "ShortCode",
            Address::Email(_) => "RFC2822Address",
        }
    }
}

/// What a `SubmitReq` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submit {
    pub transaction_id: String,
    pub vasp_id: String,
    pub vas_id: String,
    pub sender: Address,
    pub recipient: Address,
    pub service_code: String,
    pub subject: String,
    pub delivery_report: bool,
    /// The Content-ID of the content part (without `<>`).
    pub content_id: String,
}

/// A status of an MM7 answer (`StatusCode` 1000 is success).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: u32,
    pub text: String,
}

impl Status {
    pub fn success() -> Status {
        Status {
            code: 1000,
            text: "Success".into(),
        }
    }

    /// 1xxx: success or partial success.
    pub fn is_success(&self) -> bool {
        (1000..2000).contains(&self.code)
    }

    /// 3xxx server errors and 4006 (service unavailable) may pass: retry.
    pub fn is_temporary(&self) -> bool {
        (3000..3002).contains(&self.code) || self.code == 4006
    }
}

/// The MMSC's answer to a `SubmitReq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitResponse {
    pub transaction_id: String,
    pub status: Status,
    /// The MMSC's id of the message, named by its delivery reports.
    pub message_id: String,
}

/// A delivery report's status (TS 23.140 `MMStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmStatus {
    /// `Retrieved` (or `Forwarded`): the phone has it.
    Delivered,
    /// `Expired`, `Rejected`, `Unrecognised`: it never will.
    Failed,
    /// `Deferred`, `Indeterminate` and anything else: not final.
    Pending,
}

impl MmStatus {
    pub fn parse(value: &str) -> MmStatus {
        match value.trim().to_ascii_lowercase().as_str() {
            "retrieved" | "forwarded" => MmStatus::Delivered,
            "expired" | "rejected" | "unrecognised" | "unrecognized" => MmStatus::Failed,
            _ => MmStatus::Pending,
        }
    }
}

/// A `DeliveryReportReq` from the MMSC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    pub transaction_id: String,
    pub message_id: String,
    pub recipient: String,
    /// `MMStatus` as written (`Retrieved`, `Expired`, …).
    pub mm_status: String,
    pub status_text: String,
}

impl DeliveryReport {
    pub fn outcome(&self) -> MmStatus {
        MmStatus::parse(&self.mm_status)
    }
}

/// A `DeliverReq` from the MMSC: a message from a phone, its content parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deliver {
    pub transaction_id: String,
    pub sender: String,
    pub recipient: String,
    pub subject: String,
    /// Every content part, nested multiparts opened; the SOAP part left out.
    pub parts: Vec<Part>,
}

impl Deliver {
    /// The text parts joined by a space.
    pub fn text(&self) -> String {
        let texts: Vec<String> = self
            .parts
            .iter()
            .filter(|p| p.media_type() == "text/plain")
            .map(|p| String::from_utf8_lossy(&p.body).trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        texts.join(" ")
    }
}

/// A request the MMSC sends to us (or, for a fake MMSC, one we send).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    DeliveryReport(DeliveryReport),
    Deliver(Deliver),
    /// A `SubmitReq` and its content parts.
    Submit(Submit, Vec<Part>),
}

impl Request {
    /// The element name of the answer this request needs.
    pub fn response_name(&self) -> &'static str {
        match self {
            Request::DeliveryReport(_) => "DeliveryReportRsp",
            Request::Deliver(_) => "DeliverRsp",
            Request::Submit(..) => "SubmitRsp",
        }
    }

    pub fn transaction_id(&self) -> &str {
        match self {
            Request::DeliveryReport(r) => &r.transaction_id,
            Request::Deliver(d) => &d.transaction_id,
            Request::Submit(s, _) => &s.transaction_id,
        }
    }
}

/// Why an MM7 message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mm7Error {
    #[error("MIME: {0}")]
    Mime(#[from] MimeError),
    #[error("the SOAP envelope is not well-formed XML: {0}")]
    Xml(String),
    #[error("the body is not a SOAP envelope (no Envelope/Body element)")]
    NotSoap,
    #[error("unsupported MM7 request {0:?}: this endpoint takes DeliveryReportReq and DeliverReq")]
    Unsupported(String),
    #[error("the {0} element is missing")]
    Missing(&'static str),
    #[error("the SOAP answer is a fault: {0}")]
    Fault(String),
}

/// The SOAP part and the rest: a `multipart/related` body's root (the part
/// named by `start`, else the first), or the whole body when it is plain XML.
pub fn split(content_type: &str, body: &[u8]) -> Result<(Vec<u8>, Vec<Part>), Mm7Error> {
    let ct = ContentType::parse(content_type);
    if !ct.media_type.starts_with("multipart/") {
        return Ok((body.to_vec(), Vec::new()));
    }
    let mut parts = mime::parse_multipart(content_type, body)?;
    let start = ct.param("start").map(mime::strip_angles);
    let root = start
        .and_then(|s| {
            parts
                .iter()
                .position(|p| p.content_id().as_deref() == Some(s.as_str()))
        })
        .unwrap_or(0);
    let soap = parts.remove(root);
    Ok((soap.body, mime::flatten(parts)?))
}

/// Reads a request the MMSC posts (or, in a fake MMSC, one we post).
pub fn parse_request(content_type: &str, body: &[u8]) -> Result<Request, Mm7Error> {
    let (soap, parts) = split(content_type, body)?;
    let envelope = Element::parse(&soap)?;
    let transaction_id = transaction_id(&envelope);
    let request = soap_body(&envelope)?
        .children
        .first()
        .ok_or(Mm7Error::NotSoap)?;
    match request.name.as_str() {
        "DeliveryReportReq" => Ok(Request::DeliveryReport(DeliveryReport {
            transaction_id,
            message_id: required(request, "MessageID")?,
            recipient: address_text(request.child("Recipient")),
            mm_status: required(request, "MMStatus")?,
            status_text: text_of(request, "StatusText"),
        })),
        "DeliverReq" => Ok(Request::Deliver(Deliver {
            transaction_id,
            sender: address_text(request.child("Sender")),
            recipient: address_text(
                request
                    .child("Recipients")
                    .and_then(|r| r.children.first())
                    .or_else(|| request.child("Recipient")),
            ),
            subject: text_of(request, "Subject"),
            parts,
        })),
        "SubmitReq" => {
            let sender_id = request.child("SenderIdentification");
            let sender = sender_id
                .and_then(|s| s.child("SenderAddress"))
                .map(address)
                .unwrap_or(Address::Number(String::new()));
            let recipient = request
                .child("Recipients")
                .and_then(|r| r.child("To"))
                .map(address)
                .ok_or(Mm7Error::Missing("Recipients/To"))?;
            let content_id = request
                .child("Content")
                .and_then(|c| c.attr("href"))
                .map(mime::strip_angles)
                .unwrap_or_default();
            Ok(Request::Submit(
                Submit {
                    transaction_id,
                    vasp_id: sender_id.map(|s| text_of(s, "VASPID")).unwrap_or_default(),
                    vas_id: sender_id.map(|s| text_of(s, "VASID")).unwrap_or_default(),
                    sender,
                    recipient,
                    service_code: text_of(request, "ServiceCode"),
                    subject: text_of(request, "Subject"),
                    delivery_report: text_of(request, "DeliveryReport").trim() == "true",
                    content_id,
                },
                parts,
            ))
        }
        other => Err(Mm7Error::Unsupported(other.to_string())),
    }
}

/// Reads the MMSC's answer to our `SubmitReq`: a `SubmitRsp`, or a SOAP
/// fault whose detail carries an MM7 status.
pub fn parse_submit_response(content_type: &str, body: &[u8]) -> Result<SubmitResponse, Mm7Error> {
    let (soap, _) = split(content_type, body)?;
    let envelope = Element::parse(&soap)?;
    let transaction_id = transaction_id(&envelope);
    let body = soap_body(&envelope)?;
    let first = body.children.first().ok_or(Mm7Error::NotSoap)?;
    if first.name == "Fault" {
        // The detail's Status, when the MMSC gives one, says what failed.
        if let Some(status) = first.find("Status") {
            return Ok(SubmitResponse {
                transaction_id,
                status: status_of(status),
                message_id: String::new(),
            });
        }
        return Err(Mm7Error::Fault(text_of(first, "faultstring")));
    }
    if first.name != "SubmitRsp" {
        return Err(Mm7Error::Unsupported(first.name.clone()));
    }
    let status = first.child("Status").ok_or(Mm7Error::Missing("Status"))?;
    Ok(SubmitResponse {
        transaction_id,
        status: status_of(status),
        message_id: text_of(first, "MessageID"),
    })
}

/// The `multipart/related` body of a `SubmitReq` carrying `content` (text
/// and media parts): the SOAP part first, then the content as one
/// `multipart/mixed` part named by the envelope's `Content href`.
/// Returns the HTTP Content-Type and the body.
pub fn submit_request(version: &Version, submit: &Submit, content: &[Part]) -> (String, Vec<u8>) {
    let soap = submit_envelope(version, submit);
    let inner = mime::new_boundary();
    let mixed = mime::write_multipart(&inner, content);
    let soap_cid = format!("mm7-soap-{}", submit.transaction_id);
    let parts = vec![
        Part::new("text/xml; charset=utf-8", soap.into_bytes())
            .header("Content-ID", &format!("<{soap_cid}>")),
        Part::new(&format!("multipart/mixed; boundary=\"{inner}\""), mixed)
            .header("Content-ID", &format!("<{}>", submit.content_id)),
    ];
    let outer = mime::new_boundary();
    let content_type = format!(
        "multipart/related; boundary=\"{outer}\"; type=\"text/xml\"; start=\"<{soap_cid}>\""
    );
    (content_type, mime::write_multipart(&outer, &parts))
}

/// The SOAP envelope of a `SubmitReq`.
pub fn submit_envelope(version: &Version, s: &Submit) -> String {
    let mut body = String::new();
    body.push_str(&format!("<MM7Version>{}</MM7Version>", version.mm7_version));
    body.push_str("<SenderIdentification>");
    body.push_str(&format!("<VASPID>{}</VASPID>", escape(&s.vasp_id)));
    body.push_str(&format!("<VASID>{}</VASID>", escape(&s.vas_id)));
    if !s.sender.value().is_empty() {
        body.push_str(&format!(
            "<SenderAddress>{}</SenderAddress>",
            address_xml(&s.sender)
        ));
    }
    body.push_str("</SenderIdentification>");
    body.push_str(&format!(
        "<Recipients><To>{}</To></Recipients>",
        address_xml(&s.recipient)
    ));
    if !s.service_code.is_empty() {
        body.push_str(&format!(
            "<ServiceCode>{}</ServiceCode>",
            escape(&s.service_code)
        ));
    }
    body.push_str("<MessageClass>Informational</MessageClass>");
    body.push_str(&format!(
        "<DeliveryReport>{}</DeliveryReport>",
        s.delivery_report
    ));
    if !s.subject.is_empty() {
        body.push_str(&format!("<Subject>{}</Subject>", escape(&s.subject)));
    }
    body.push_str(&format!(
        "<Content href=\"cid:{}\" allowAdaptations=\"true\"/>",
        escape(&s.content_id)
    ));
    envelope(version, &s.transaction_id, "SubmitReq", &body)
}

/// The SOAP envelope answering a request: `DeliveryReportRsp`,
/// `DeliverRsp` or `SubmitRsp` (with the MMSC's `message_id`).
pub fn response(
    version: &Version,
    name: &str,
    transaction_id: &str,
    status: &Status,
    message_id: Option<&str>,
) -> String {
    let mut body = format!(
        "<MM7Version>{}</MM7Version><Status><StatusCode>{}</StatusCode><StatusText>{}</StatusText></Status>",
        version.mm7_version,
        status.code,
        escape(&status.text)
    );
    if let Some(id) = message_id {
        body.push_str(&format!("<MessageID>{}</MessageID>", escape(id)));
    }
    envelope(version, transaction_id, name, &body)
}

/// A `DeliveryReportReq` envelope (what an MMSC sends; used by tests and
/// by the fake MMSC).
pub fn delivery_report_envelope(
    version: &Version,
    transaction_id: &str,
    message_id: &str,
    recipient: &Address,
    mm_status: &str,
) -> String {
    let body = format!(
        "<MM7Version>{}</MM7Version><MMSRelayServerID>mmsc</MMSRelayServerID><MessageID>{}</MessageID><Recipient>{}</Recipient><Sender><ShortCode>0</ShortCode></Sender><Date>2026-01-01T00:00:00Z</Date><MMStatus>{}</MMStatus><StatusText>{}</StatusText>",
        version.mm7_version,
        escape(message_id),
        address_xml(recipient),
        escape(mm_status),
        escape(mm_status)
    );
    envelope(version, transaction_id, "DeliveryReportReq", &body)
}

/// A `DeliverReq` envelope whose content is the part `content_id`.
pub fn deliver_envelope(
    version: &Version,
    transaction_id: &str,
    sender: &Address,
    recipient: &Address,
    subject: &str,
    content_id: &str,
) -> String {
    let body = format!(
        "<MM7Version>{}</MM7Version><MMSRelayServerID>mmsc</MMSRelayServerID><Sender>{}</Sender><Recipients><To>{}</To></Recipients><TimeStamp>2026-01-01T00:00:00Z</TimeStamp><Priority>Normal</Priority><Subject>{}</Subject><Content href=\"cid:{}\"/>",
        version.mm7_version,
        address_xml(sender),
        address_xml(recipient),
        escape(subject),
        escape(content_id)
    );
    envelope(version, transaction_id, "DeliverReq", &body)
}

fn envelope(version: &Version, transaction_id: &str, name: &str, body: &str) -> String {
    let ns = version.namespace();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
<env:Envelope xmlns:env=\"{SOAP_ENV}\">\
<env:Header><mm7:TransactionID xmlns:mm7=\"{ns}\" env:mustUnderstand=\"1\">{}</mm7:TransactionID></env:Header>\
<env:Body><{name} xmlns=\"{ns}\">{body}</{name}></env:Body></env:Envelope>",
        escape(transaction_id)
    )
}

fn address_xml(address: &Address) -> String {
    let name = address.element();
    format!("<{name}>{}</{name}>", escape(address.value()))
}

/// Escapes text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

fn transaction_id(envelope: &Element) -> String {
    envelope
        .child("Header")
        .and_then(|h| h.child("TransactionID"))
        .map(|t| t.text.trim().to_string())
        .unwrap_or_default()
}

fn soap_body(envelope: &Element) -> Result<&Element, Mm7Error> {
    if envelope.name != "Envelope" {
        return Err(Mm7Error::NotSoap);
    }
    envelope.child("Body").ok_or(Mm7Error::NotSoap)
}

fn status_of(status: &Element) -> Status {
    Status {
        code: text_of(status, "StatusCode").trim().parse().unwrap_or(0),
        text: text_of(status, "StatusText"),
    }
}

/// An address element's text: its `Number`/`ShortCode`/`RFC2822Address`
/// child, or its own text (REL-5-MM7-1-0 style), without `+` or `/TYPE=`.
fn address_text(element: Option<&Element>) -> String {
    let Some(element) = element else {
        return String::new();
    };
    let raw = element
        .children
        .first()
        .map_or(element.text.as_str(), |c| c.text.as_str());
    let raw = raw.trim();
    let raw = raw.split("/TYPE=").next().unwrap_or(raw);
    raw.trim_start_matches('+').to_string()
}

fn address(element: &Element) -> Address {
    let value = address_text(Some(element));
    match element.children.first().map(|c| c.name.as_str()) {
        Some("ShortCode") => Address::ShortCode(value),
        Some("RFC2822Address") => Address::Email(value),
        _ => Address::Number(value),
    }
}

fn text_of(parent: &Element, name: &str) -> String {
    parent
        .child(name)
        .map(|c| c.text.trim().to_string())
        .unwrap_or_default()
}

fn required(parent: &Element, name: &'static str) -> Result<String, Mm7Error> {
    let text = text_of(parent, name);
    if text.is_empty() {
        return Err(Mm7Error::Missing(name));
    }
    Ok(text)
}

/// A parsed XML element: local names only.
#[derive(Debug, Clone, Default)]
struct Element {
    name: String,
    attrs: Vec<(String, String)>,
    text: String,
    children: Vec<Element>,
}

/// The deepest element nesting read.
const MAX_XML_DEPTH: usize = 32;

impl Element {
    fn parse(xml: &[u8]) -> Result<Element, Mm7Error> {
        let text = std::str::from_utf8(xml).map_err(|e| Mm7Error::Xml(e.to_string()))?;
        let mut reader = quick_xml::Reader::from_str(text);
        let mut stack: Vec<Element> = Vec::new();
        let err = |e: &dyn std::fmt::Display| Mm7Error::Xml(e.to_string());
        loop {
            match reader.read_event().map_err(|e| err(&e))? {
                Event::Start(e) => {
                    if stack.len() >= MAX_XML_DEPTH {
                        return Err(Mm7Error::Xml("elements nested too deep".into()));
                    }
                    stack.push(Element::open(&e)?);
                }
                Event::Empty(e) => {
                    let element = Element::open(&e)?;
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(element),
                        None => return Ok(element),
                    }
                }
                Event::End(_) => {
                    let element = stack.pop().ok_or_else(|| err(&"unbalanced end tag"))?;
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(element),
                        None => return Ok(element),
                    }
                }
                Event::Text(t) => {
                    if let Some(top) = stack.last_mut() {
                        top.text.push_str(&t.xml10_content().map_err(|e| err(&e))?);
                    }
                }
                Event::CData(d) => {
                    if let Some(top) = stack.last_mut() {
                        top.text.push_str(&String::from_utf8_lossy(&d));
                    }
                }
                Event::GeneralRef(r) => {
                    if let Some(top) = stack.last_mut() {
                        let c = match crate::api::envelope::predefined_entity(&r) {
                            Some(c) => c,
                            None => r
                                .resolve_char_ref()
                                .map_err(|e| err(&e))?
                                .unwrap_or('\u{FFFD}'),
                        };
                        top.text.push(c);
                    }
                }
                Event::Eof => return Err(err(&"the document ends inside an element")),
                _ => {}
            }
        }
    }

    fn open(e: &quick_xml::events::BytesStart) -> Result<Element, Mm7Error> {
        let mut attrs = Vec::new();
        for attr in e.attributes() {
            let attr = attr.map_err(|e| Mm7Error::Xml(e.to_string()))?;
            let value = attr
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| Mm7Error::Xml(e.to_string()))?
                .to_string();
            attrs.push((
                String::from_utf8_lossy(attr.key.local_name().as_ref()).into_owned(),
                value,
            ));
        }
        Ok(Element {
            name: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
            attrs,
            ..Element::default()
        })
    }

    fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first descendant named `name`, depth first.
    fn find(&self, name: &str) -> Option<&Element> {
        self.children.iter().find_map(|c| {
            if c.name == name {
                Some(c)
            } else {
                c.find(name)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v() -> Version {
        Version::default()
    }

    /// A `DeliveryReportReq` as TS 23.140's REL-5-MM7-1-2 example writes
    /// it: another prefix, whitespace, an address with a `/TYPE=PLMN` suffix.
    const REPORT_SAMPLE: &str = r#"<?xml version="1.0" ?>
<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/">
  <soap-env:Header>
    <mm7:TransactionID xmlns:mm7="http://www.3gpp.org/ftp/Specs/archive/23_series/23.140/schema/REL-5-MM7-1-2" soap-env:mustUnderstand="1">TID.7717</mm7:TransactionID>
  </soap-env:Header>
  <soap-env:Body>
    <mm7:DeliveryReportReq xmlns:mm7="http://www.3gpp.org/ftp/Specs/archive/23_series/23.140/schema/REL-5-MM7-1-2">
      <mm7:MM7Version>5.3.0</mm7:MM7Version>
      <mm7:MMSRelayServerID>240.188.25.21</mm7:MMSRelayServerID>
      <mm7:MessageID>041502073667</mm7:MessageID>
      <mm7:Recipient><mm7:Number>+13105550123/TYPE=PLMN</mm7:Number></mm7:Recipient>
      <mm7:Sender><mm7:ShortCode>21534</mm7:ShortCode></mm7:Sender>
      <mm7:Date>2002-04-02T06:40:11Z</mm7:Date>
      <mm7:MMStatus>Retrieved</mm7:MMStatus>
      <mm7:StatusText>Message retrieved &amp; read</mm7:StatusText>
    </mm7:DeliveryReportReq>
  </soap-env:Body>
</soap-env:Envelope>"#;

    /// A `DeliverReq` in `multipart/related`, content in `multipart/mixed`,
    /// written from the REL-6-MM7-1-4 schema.
    fn deliver_sample() -> (String, Vec<u8>) {
        let ct = r#"multipart/related; boundary="=_outer"; type="text/xml"; start="<soap-start>""#;
        let body = "--=_outer\r\n\
Content-Type: text/xml; charset=\"utf-8\"\r\n\
Content-ID: <soap-start>\r\n\
\r\n\
<?xml version=\"1.0\"?><env:Envelope xmlns:env=\"http://schemas.xmlsoap.org/soap/envelope/\"><env:Header><TransactionID xmlns=\"http://www.3gpp.org/ftp/Specs/archive/23_series/23.140/schema/REL-6-MM7-1-4\">in-1</TransactionID></env:Header><env:Body><DeliverReq xmlns=\"http://www.3gpp.org/ftp/Specs/archive/23_series/23.140/schema/REL-6-MM7-1-4\"><MM7Version>6.8.0</MM7Version><MMSRelayServerID>mmsc.example</MMSRelayServerID><Sender><Number>+13105550199</Number></Sender><Recipients><To><ShortCode>21534</ShortCode></To></Recipients><TimeStamp>2026-01-01T00:00:00Z</TimeStamp><Subject>Look</Subject><Content href=\"cid:c1\"/></DeliverReq></env:Body></env:Envelope>\r\n\
--=_outer\r\n\
Content-Type: multipart/mixed; boundary=\"=_inner\"\r\n\
Content-ID: <c1>\r\n\
\r\n\
--=_inner\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
PIZZA extra cheese\r\n\
--=_inner\r\n\
Content-Type: image/gif\r\n\
Content-Transfer-Encoding: base64\r\n\
Content-Location: pic.gif\r\n\
\r\n\
R0lGODlhAQABAAAAACw=\r\n\
--=_inner--\r\n\
--=_outer--\r\n";
        (ct.to_string(), body.as_bytes().to_vec())
    }

    #[test]
    fn delivery_report_sample_is_read() {
        let Request::DeliveryReport(report) =
            parse_request("text/xml", REPORT_SAMPLE.as_bytes()).unwrap()
        else {
            panic!("not a delivery report")
        };
        assert_eq!(report.transaction_id, "TID.7717");
        assert_eq!(report.message_id, "041502073667");
        assert_eq!(report.recipient, "13105550123");
        assert_eq!(report.outcome(), MmStatus::Delivered);
        assert_eq!(report.status_text, "Message retrieved & read");
    }

    #[test]
    fn deliver_sample_is_read_with_its_parts() {
        let (ct, body) = deliver_sample();
        let Request::Deliver(deliver) = parse_request(&ct, &body).unwrap() else {
            panic!("not a deliver")
        };
        assert_eq!(deliver.transaction_id, "in-1");
        assert_eq!(deliver.sender, "13105550199");
        assert_eq!(deliver.recipient, "21534");
        assert_eq!(deliver.subject, "Look");
        assert_eq!(deliver.text(), "PIZZA extra cheese");
        assert_eq!(deliver.parts.len(), 2);
        assert_eq!(deliver.parts[1].media_type(), "image/gif");
        assert!(deliver.parts[1].body.starts_with(b"GIF89a"));
        assert_eq!(deliver.parts[1].content_location(), Some("pic.gif"));
    }

    #[test]
    fn submit_round_trips_in_every_version() {
        for (schema, mm7_version) in VERSIONS {
            let version = Version::parse(schema).unwrap();
            let submit = Submit {
                transaction_id: "42-1".into(),
                vasp_id: "vasp <1>".into(),
                vas_id: "news".into(),
                sender: Address::of_digits("21534"),
                recipient: Address::of_digits("13105550123"),
                service_code: "gold".into(),
                subject: "Hi & bye".into(),
                delivery_report: true,
                content_id: "content-42".into(),
            };
            let content = vec![
                Part::new("text/plain; charset=utf-8", b"hello".to_vec()),
                Part::new("image/png", vec![0x89, b'P', b'N', b'G', 0, 1, 2]),
            ];
            let (ct, body) = submit_request(&version, &submit, &content);
            let text = String::from_utf8_lossy(&body);
            assert!(text.contains(&version.namespace()));
            assert!(text.contains(&format!("<MM7Version>{mm7_version}</MM7Version>")));
            // The SOAP part comes first.
            let soap_at = text.find("<env:Envelope").unwrap();
            let png_at = text.find("image/png").unwrap();
            assert!(soap_at < png_at);
            let Request::Submit(read, parts) = parse_request(&ct, &body).unwrap() else {
                panic!("not a submit")
            };
            assert_eq!(read, submit);
            assert_eq!(parts.len(), content.len());
            for (got, sent) in parts.iter().zip(&content) {
                assert_eq!(got.media_type(), sent.media_type());
                assert_eq!(got.body, sent.body);
            }
        }
    }

    #[test]
    fn responses_round_trip_and_faults_carry_their_status() {
        let xml = response(&v(), "SubmitRsp", "t1", &Status::success(), Some("mid-9"));
        let read = parse_submit_response("text/xml; charset=utf-8", xml.as_bytes()).unwrap();
        assert_eq!(read.transaction_id, "t1");
        assert!(read.status.is_success());
        assert_eq!(read.message_id, "mid-9");

        let fault = r#"<env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"><env:Body><env:Fault><faultcode>env:Client</faultcode><faultstring>Client error</faultstring><detail><VASPErrorRsp xmlns="x"><MM7Version>5.3.0</MM7Version><Status><StatusCode>2002</StatusCode><StatusText>Address Error</StatusText></Status></VASPErrorRsp></detail></env:Fault></env:Body></env:Envelope>"#;
        let read = parse_submit_response("text/xml", fault.as_bytes()).unwrap();
        assert_eq!(read.status.code, 2002);
        assert!(!read.status.is_success() && !read.status.is_temporary());

        let bare = r#"<e:Envelope xmlns:e="s"><e:Body><e:Fault><faultstring>boom</faultstring></e:Fault></e:Body></e:Envelope>"#;
        assert_eq!(
            parse_submit_response("text/xml", bare.as_bytes()),
            Err(Mm7Error::Fault("boom".into()))
        );
    }

    #[test]
    fn written_requests_read_back() {
        let report = delivery_report_envelope(
            &v(),
            "r1",
            "m1",
            &Address::Number("13105550123".into()),
            "Expired",
        );
        let Request::DeliveryReport(r) = parse_request("text/xml", report.as_bytes()).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (r.message_id.as_str(), r.outcome()),
            ("m1", MmStatus::Failed)
        );
        let deliver = deliver_envelope(
            &v(),
            "d1",
            &Address::Number("13105550123".into()),
            &Address::ShortCode("21534".into()),
            "s",
            "c",
        );
        let Request::Deliver(d) = parse_request("text/xml", deliver.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(
            (d.sender.as_str(), d.recipient.as_str()),
            ("13105550123", "21534")
        );
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        assert!(matches!(
            parse_request("text/xml", b"<a><b></a>"),
            Err(Mm7Error::Xml(_))
        ));
        assert_eq!(
            parse_request("text/xml", b"<html/>"),
            Err(Mm7Error::NotSoap)
        );
        let cancel = REPORT_SAMPLE.replace("DeliveryReportReq", "CancelReq");
        assert_eq!(
            parse_request("text/xml", cancel.as_bytes()),
            Err(Mm7Error::Unsupported("CancelReq".into()))
        );
        let no_id = REPORT_SAMPLE.replace("041502073667", "");
        assert_eq!(
            parse_request("text/xml", no_id.as_bytes()),
            Err(Mm7Error::Missing("MessageID"))
        );
        assert!(
            Version::parse("REL-4")
                .unwrap_err()
                .contains("REL-5-MM7-1-2")
        );
    }

    proptest::proptest! {
        #[test]
        fn any_printable_text_round_trips_through_a_submit(
            subject in "[^\\p{Cc}\u{FFFE}\u{FFFF}]{0,40}",
            vasp in "[^\\p{Cc}\u{FFFE}\u{FFFF}]{0,20}",
            text in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        ) {
            let submit = Submit {
                transaction_id: "p".into(),
                vasp_id: vasp.clone(),
                vas_id: String::new(),
                sender: Address::ShortCode("12345".into()),
                recipient: Address::Number("447911123456".into()),
                service_code: String::new(),
                subject: subject.clone(),
                delivery_report: false,
                content_id: "c".into(),
            };
            let content = vec![Part::new("application/octet-stream", text.clone())];
            let (ct, body) = submit_request(&v(), &submit, &content);
            let read = parse_request(&ct, &body);
            let Ok(Request::Submit(read, parts)) = read else {
                panic!("not read back: {read:?}")
            };
            // Values are read trimmed, as MMSCs pad them.
            proptest::prop_assert_eq!(read.subject, subject.trim());
            proptest::prop_assert_eq!(read.vasp_id, vasp.trim());
            proptest::prop_assert_eq!(&parts[0].body, &text);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let (ct, body) = deliver_sample();
        for cut in 0..body.len() {
            let _ = parse_request(&ct, &body[..cut]);
            let _ = parse_submit_response(
                "text/xml",
                &REPORT_SAMPLE.as_bytes()[..cut.min(REPORT_SAMPLE.len())],
            );
        }
    }
}
