//! A small XML tree for assertions: element names, attributes in order,
//! text, and whether the text came from CDATA (spec section 2 decides which).

use quick_xml::Reader;
use quick_xml::events::Event;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub text: String,
    /// The text was written as CDATA (and nothing else).
    pub cdata: bool,
    pub children: Vec<Element>,
}

impl Element {
    #[track_caller]
    pub fn attr(&self, name: &str) -> &str {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("<{}> has no attribute {name}: {self:?}", self.name))
    }

    pub fn attr_names(&self) -> Vec<&str> {
        self.attrs.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[track_caller]
    pub fn child(&self, name: &str) -> &Element {
        self.children
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("<{}> has no child <{name}>: {self:?}", self.name))
    }

    pub fn find(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn all(&self, name: &str) -> Vec<&Element> {
        self.children.iter().filter(|c| c.name == name).collect()
    }

    /// Child element names in document order.
    pub fn child_names(&self) -> Vec<&str> {
        self.children.iter().map(|c| c.name.as_str()).collect()
    }

    /// A child's text, asserting it was CDATA.
    #[track_caller]
    pub fn cdata_of(&self, name: &str) -> &str {
        let child = self.child(name);
        assert!(
            child.cdata || child.text.is_empty() && child.children.is_empty(),
            "<{name}> should be CDATA: {child:?}"
        );
        &child.text
    }

    /// A child's text, asserting it was plain text.
    #[track_caller]
    pub fn text_of(&self, name: &str) -> &str {
        let child = self.child(name);
        assert!(!child.cdata, "<{name}> should be plain text: {child:?}");
        &child.text
    }
}

pub fn parse(input: &str) -> Result<Element, String> {
    let mut reader = Reader::from_str(input);
    let mut stack: Vec<(Element, bool, bool)> = Vec::new(); // element, saw cdata, saw plain text
    let mut root = None;
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Decl(_) => {}
            Event::Start(start) => {
                stack.push((element(&start)?, false, false));
            }
            Event::Empty(start) => {
                let el = element(&start)?;
                match stack.last_mut() {
                    Some((parent, _, _)) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(text) => {
                let value = text.xml10_content().map_err(|e| e.to_string())?;
                if let Some((el, _, plain)) = stack.last_mut() {
                    el.text.push_str(&value);
                    if !value.is_empty() {
                        *plain = true;
                    }
                } else if !value.trim().is_empty() {
                    return Err("text outside the root".into());
                }
            }
            Event::GeneralRef(reference) => {
                let name = String::from_utf8_lossy(&reference).to_string();
                let resolved = match name.as_str() {
                    "lt" => "<".to_string(),
                    "gt" => ">".to_string(),
                    "amp" => "&".to_string(),
                    "quot" => "\"".to_string(),
                    "apos" => "'".to_string(),
                    other => match reference.resolve_char_ref().map_err(|e| e.to_string())? {
                        Some(c) => c.to_string(),
                        None => return Err(format!("unknown entity &{other};")),
                    },
                };
                if let Some((el, _, plain)) = stack.last_mut() {
                    el.text.push_str(&resolved);
                    *plain = true;
                }
            }
            Event::CData(data) => {
                let value = std::str::from_utf8(&data)
                    .map_err(|e| e.to_string())?
                    .to_string();
                if let Some((el, cdata, _)) = stack.last_mut() {
                    el.text.push_str(&value);
                    *cdata = true;
                }
            }
            Event::End(_) => {
                let (mut el, cdata, plain) = stack.pop().ok_or("unbalanced end tag")?;
                el.cdata = cdata && !plain;
                match stack.last_mut() {
                    Some((parent, _, _)) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Eof => break,
            other => return Err(format!("unexpected {other:?}")),
        }
    }
    if !stack.is_empty() {
        return Err("unclosed element".into());
    }
    root.ok_or_else(|| "no root element".into())
}

fn element(start: &quick_xml::events::BytesStart) -> Result<Element, String> {
    let mut el = Element {
        name: String::from_utf8_lossy(start.name().as_ref()).to_string(),
        ..Element::default()
    };
    for attr in start.attributes() {
        let attr = attr.map_err(|e| e.to_string())?;
        let key = String::from_utf8_lossy(attr.key.as_ref()).to_string();
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| e.to_string())?
            .to_string();
        el.attrs.push((key, value));
    }
    Ok(el)
}
