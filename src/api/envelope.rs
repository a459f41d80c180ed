//! The response envelope of spec section 2, in XML and JSON.
//!
//! A method builds one [`Reply`]: its XML children and its JSON keys are
//! given separately, because the spec lays several methods out differently in
//! the two formats. The writers here own the wire rules: the XML declaration,
//! CDATA sections split around `]]>`, characters XML cannot carry replaced,
//! and JSON with string scalars.

use serde_json::{Map, Value};

use super::error::{ApiError, Code, UserInfo};

/// The response format asked for with `format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Xml,
    Json,
    /// `format=csv`, accepted by `list.download` only.
    Csv,
}

impl Format {
    /// Parses `format` (case-insensitive); `None` is a value no method takes.
    pub fn parse(value: Option<&str>) -> Option<Format> {
        match value.map(|v| v.to_ascii_lowercase()) {
            None => Some(Format::Xml),
            Some(v) if v == "xml" => Some(Format::Xml),
            Some(v) if v == "json" => Some(Format::Json),
            Some(v) if v == "csv" => Some(Format::Csv),
            Some(_) => None,
        }
    }
}

/// The text of an XML element: CDATA or plain (spec section 2's table).
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    Empty,
    Cdata(String),
    Text(String),
    Children(Vec<XmlNode>),
}

/// One XML element with its attributes in order.
#[derive(Debug, Clone, PartialEq)]
pub struct XmlNode {
    pub name: &'static str,
    pub attrs: Vec<(&'static str, String)>,
    pub content: Content,
}

impl XmlNode {
    pub fn new(name: &'static str) -> XmlNode {
        XmlNode {
            name,
            attrs: Vec::new(),
            content: Content::Empty,
        }
    }

    pub fn attr(mut self, name: &'static str, value: impl ToString) -> XmlNode {
        self.attrs.push((name, value.to_string()));
        self
    }

    pub fn cdata(mut self, value: impl Into<String>) -> XmlNode {
        self.content = Content::Cdata(value.into());
        self
    }

    pub fn text(mut self, value: impl ToString) -> XmlNode {
        self.content = Content::Text(value.to_string());
        self
    }

    pub fn child(mut self, node: XmlNode) -> XmlNode {
        match &mut self.content {
            Content::Children(children) => children.push(node),
            _ => self.content = Content::Children(vec![node]),
        }
        self
    }

    pub fn children(mut self, nodes: impl IntoIterator<Item = XmlNode>) -> XmlNode {
        let mut list = match std::mem::replace(&mut self.content, Content::Empty) {
            Content::Children(children) => children,
            _ => Vec::new(),
        };
        list.extend(nodes);
        self.content = Content::Children(list);
        self
    }

    pub fn write(&self, out: &mut String) {
        out.push('<');
        out.push_str(self.name);
        for (name, value) in &self.attrs {
            out.push(' ');
            out.push_str(name);
            out.push_str("=\"");
            escape_into(value, out);
            out.push('"');
        }
        match &self.content {
            Content::Empty => {
                out.push_str("/>");
                return;
            }
            Content::Cdata(value) => {
                out.push('>');
                cdata_into(value, out);
            }
            Content::Text(value) => {
                out.push('>');
                escape_into(value, out);
            }
            Content::Children(children) => {
                out.push('>');
                for child in children {
                    child.write(out);
                }
            }
        }
        out.push_str("</");
        out.push_str(self.name);
        out.push('>');
    }
}

/// Characters XML 1.0 cannot carry become U+FFFD.
fn xml_char(c: char) -> char {
    match c {
        '\t' | '\n' | '\r' => c,
        '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => '\u{fffd}',
        _ => c,
    }
}

/// Escapes text and attribute values.
pub fn escape_into(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            // Kept as references so attribute-value normalisation leaves them intact.
            '\r' => out.push_str("&#13;"),
            '\n' => out.push_str("&#10;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(xml_char(c)),
        }
    }
}

/// Writes a CDATA section; a `]]>` inside the value closes one section and
/// opens the next between `]]` and `>`, so the value survives intact.
pub fn cdata_into(value: &str, out: &mut String) {
    out.push_str("<![CDATA[");
    let mut rest = value;
    while let Some(at) = rest.find("]]>") {
        push_xml_chars(&rest[..at + 2], out);
        out.push_str("]]><![CDATA[");
        rest = &rest[at + 2..];
    }
    push_xml_chars(rest, out);
    out.push_str("]]>");
}

fn push_xml_chars(value: &str, out: &mut String) {
    // A CR inside CDATA would be normalised away by a parser; nothing to do
    // about that short of leaving CDATA, which the spec requires here.
    out.extend(value.chars().map(xml_char));
}

pub const XML_DECLARATION: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// A method's answer, success or error, before it is written.
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: Code,
    pub message: String,
    pub xml: Vec<XmlNode>,
    pub json: Map<String, Value>,
}

impl Reply {
    pub fn success(message: impl Into<String>) -> Reply {
        Reply {
            code: Code::Success,
            message: message.into(),
            xml: Vec::new(),
            json: Map::new(),
        }
    }

    /// A flat field written the same way in both formats: a CDATA element and a JSON string.
    pub fn cdata(self, name: &'static str, value: impl Into<String>) -> Reply {
        let value = value.into();
        self.json(name, Value::String(value.clone()))
            .xml(XmlNode::new(name).cdata(value))
    }

    /// A flat field written as a plain-text element and a JSON string.
    pub fn text(self, name: &'static str, value: impl ToString) -> Reply {
        let value = value.to_string();
        self.json(name, Value::String(value.clone()))
            .xml(XmlNode::new(name).text(value))
    }

    /// An XML child only.
    pub fn xml(mut self, node: XmlNode) -> Reply {
        self.xml.push(node);
        self
    }

    /// A JSON key only.
    pub fn json(mut self, key: &str, value: Value) -> Reply {
        self.json.insert(key.to_string(), value);
        self
    }

    /// The envelope of an error, with the 602–606 user fields in their order.
    pub fn error(error: &ApiError) -> Reply {
        let mut reply = Reply {
            code: error.code,
            message: error.message(),
            xml: Vec::new(),
            json: Map::new(),
        };
        if let Some(user) = &error.user {
            reply = reply.user_fields(user);
        }
        reply
    }

    fn user_fields(mut self, user: &UserInfo) -> Reply {
        self = self.cdata("number", user.number.clone());
        if let Some(input) = &user.input {
            self = self.cdata("input", input.clone());
        }
        if let Some((id, name)) = &user.carrier {
            self = self
                .xml(XmlNode::new("carrier").attr("id", id).cdata(name.clone()))
                .json("carrier_id", Value::String(id.to_string()))
                .json("carrier_name", Value::String(name.clone()));
        }
        self
    }

    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }

    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(128);
        out.push_str(XML_DECLARATION);
        let status = if self.is_success() {
            "success"
        } else {
            "error"
        };
        out.push_str("<response status=\"");
        out.push_str(status);
        out.push_str("\" code=\"");
        out.push_str(&self.code.number().to_string());
        out.push_str("\"><message>");
        cdata_into(&self.message, &mut out);
        out.push_str("</message>");
        for node in &self.xml {
            node.write(&mut out);
        }
        out.push_str("</response>");
        out
    }

    /// `legacy_code` writes "0" as the code of errors (spec section 8).
    pub fn to_json(&self, legacy_code: bool) -> String {
        let code = if legacy_code && !self.is_success() {
            "0".to_string()
        } else {
            self.code.number().to_string()
        };
        let mut body = Map::with_capacity(self.json.len() + 3);
        body.insert("code".into(), Value::String(code));
        let status = if self.is_success() {
            "success"
        } else {
            "error"
        };
        body.insert("status".into(), Value::String(status.into()));
        body.insert("message".into(), Value::String(self.message.clone()));
        for (key, value) in &self.json {
            body.insert(key.clone(), value.clone());
        }
        let mut top = Map::with_capacity(1);
        top.insert("response".into(), Value::Object(body));
        Value::Object(top).to_string()
    }
}

/// A JSON string value.
pub fn js(value: impl ToString) -> Value {
    Value::String(value.to_string())
}

/// The character of one of XML's five predefined entities (`&lt;` …),
/// for readers of quick-xml's general references; `None` for any other
/// name (a character reference, or an undeclared entity).
pub fn predefined_entity(name: &[u8]) -> Option<char> {
    match name {
        b"lt" => Some('<'),
        b"gt" => Some('>'),
        b"amp" => Some('&'),
        b"quot" => Some('"'),
        b"apos" => Some('\''),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_envelope_has_declaration_status_code_and_message() {
        let xml = Reply::success("pong").to_xml();
        assert_eq!(
            xml,
            r#"<?xml version="1.0" encoding="UTF-8"?><response status="success" code="1"><message><![CDATA[pong]]></message></response>"#
        );
        assert_eq!(
            Reply::success("pong").to_json(false),
            r#"{"response":{"code":"1","status":"success","message":"pong"}}"#
        );
    }

    #[test]
    fn cdata_terminator_is_split() {
        let mut out = String::new();
        cdata_into("a]]>b", &mut out);
        assert_eq!(out, "<![CDATA[a]]]]><![CDATA[>b]]>");
    }

    #[test]
    fn user_fields_follow_message_in_order() {
        let error = ApiError::new(Code::Blacklisted).with_user(UserInfo {
            number: "13108675309".into(),
            input: None,
            carrier: Some((2, "T-Mobile".into())),
        });
        let xml = Reply::error(&error).to_xml();
        assert!(xml.ends_with(r#"</message><number><![CDATA[13108675309]]></number><carrier id="2"><![CDATA[T-Mobile]]></carrier></response>"#), "{xml}");
    }

    #[test]
    fn legacy_json_error_code_is_zero() {
        let reply = Reply::error(&ApiError::new(Code::InvalidName));
        assert!(
            reply
                .to_json(true)
                .starts_with(r#"{"response":{"code":"0","status":"error""#)
        );
        assert!(
            reply
                .to_json(false)
                .starts_with(r#"{"response":{"code":"445""#)
        );
    }

    /// Reads back the text of `<response>`'s first `<v>` child and its `a` attribute.
    fn read_back(xml: &str) -> (String, String) {
        use quick_xml::events::Event;
        let mut reader = quick_xml::Reader::from_str(xml);
        let (mut text, mut attr, mut inside) = (String::new(), String::new(), false);
        loop {
            match reader.read_event().expect("well-formed") {
                Event::Start(e) if e.name().as_ref() == b"v" => {
                    inside = true;
                    for a in e.attributes() {
                        let a = a.unwrap();
                        attr = a
                            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .unwrap()
                            .to_string();
                    }
                }
                Event::End(e) if e.name().as_ref() == b"v" => inside = false,
                Event::CData(d) if inside => text.push_str(std::str::from_utf8(&d).unwrap()),
                Event::Text(t) if inside => text.push_str(&t.xml10_content().unwrap()),
                Event::GeneralRef(r) if inside => {
                    let c = match predefined_entity(&r) {
                        Some(c) => c,
                        None => r.resolve_char_ref().unwrap().expect("char ref"),
                    };
                    text.push(c);
                }
                Event::Eof => break,
                _ => {}
            }
        }
        (text, attr)
    }

    /// What XML 1.0 can carry of a string: the replacement rule of spec section 2.
    fn xml_safe(value: &str) -> String {
        value.chars().map(xml_char).collect()
    }

    proptest::proptest! {
        #[test]
        fn any_string_round_trips_through_cdata_text_and_attributes(value in proptest::prelude::any::<String>()) {
            // CR is normalised by every XML parser; the writer keeps it as a
            // reference in text and attributes, and CDATA cannot protect it.
            for node in [XmlNode::new("v").attr("a", &value).cdata(value.clone()), XmlNode::new("v").attr("a", &value).text(value.clone())] {
                let is_cdata = matches!(node.content, Content::Cdata(_));
                let xml = Reply::success("m").xml(node).to_xml();
                let (text, attr) = read_back(&xml);
                let expected = xml_safe(&value);
                let expected_text = if is_cdata { expected.replace("\r\n", "\n").replace('\r', "\n") } else { expected.clone() };
                proptest::prop_assert_eq!(text, expected_text);
                proptest::prop_assert_eq!(attr, expected.clone());
            }
        }

        #[test]
        fn any_string_round_trips_through_json(value in proptest::prelude::any::<String>()) {
            let json = Reply::success(value.clone()).cdata("v", value.clone()).to_json(false);
            let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
            proptest::prop_assert_eq!(parsed["response"]["message"].as_str().unwrap(), value.as_str());
            proptest::prop_assert_eq!(parsed["response"]["v"].as_str().unwrap(), value.as_str());
        }
    }
}
