//! `list.*` but list.send (spec section 5.5): a client's lists of numbers.
//!
//! Lists belong to a client. A list of another client, a destroyed one and
//! one that never existed are all answered with 444. `list.download`
//! streams its answer in every format, so a list of any size is exported
//! without being held in memory.

use std::collections::HashSet;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use futures_util::Stream;
use serde_json::{Map, Value};

use super::envelope::{Format, Reply, XML_DECLARATION, XmlNode, cdata_into, js};
use super::error::{ApiError, Code};
use super::{Answer, Ctx, Outcome};
use crate::app::App;
use crate::domain::name::parse_name;
use crate::domain::phone::PhoneNumber;
use crate::domain::timezone::time_zone_of;
use crate::store::list::List;

/// Members read per page by `list.download`.
const DOWNLOAD_PAGE: i64 = 1000;

/// list.list (5.5): the client's newest lists, `limit` of them.
pub async fn list(ctx: &Ctx) -> Outcome {
    let limit = ctx.params.limit()?;
    let lists = ctx.app.store.lists(ctx.client.id, limit).await?;
    let xml = XmlNode::new("lists").children(lists.iter().map(|l| {
        XmlNode::new("list")
            .attr("id", l.id)
            .child(XmlNode::new("name").cdata(l.name.clone()))
            .child(XmlNode::new("type").cdata(l.kind.clone()))
    }));
    let json = lists
        .iter()
        .map(|l| {
            object([
                ("id", js(l.id)),
                ("name", js(&l.name)),
                ("type", js(&l.kind)),
            ])
        })
        .collect();
    Ok(Reply::success("lists retrieved")
        .xml(xml)
        .json("lists", Value::Array(json))
        .into())
}

/// list.info (5.5): one list with its size and times.
pub async fn info(ctx: &Ctx) -> Outcome {
    let list = owned_list(ctx).await?;
    let total = ctx.app.store.list_total(list.id).await?;
    let last_used = list.last_used.map(rfc3339).unwrap_or_default();
    let fields = [
        ("total", total.to_string()),
        ("created", rfc3339(list.created_at)),
        ("updated", rfc3339(list.updated_at)),
        ("last_used", last_used),
    ];
    let mut xml = XmlNode::new("list")
        .attr("id", list.id)
        .child(XmlNode::new("name").cdata(list.name.clone()))
        .child(XmlNode::new("type").cdata(list.kind.clone()));
    let mut json = Map::new();
    json.insert("id".into(), js(list.id));
    json.insert("name".into(), js(&list.name));
    json.insert("type".into(), js(&list.kind));
    for (name, value) in fields {
        xml = xml.child(XmlNode::new(name).text(&value));
        json.insert(name.into(), js(value));
    }
    Ok(Reply::success("list retrieved")
        .xml(xml)
        .json("list", Value::Object(json))
        .into())
}

/// list.create (5.5): an empty list; JSON gives `list_id` as a number.
pub async fn create(ctx: &Ctx) -> Outcome {
    let name = name_param(ctx)?;
    let Some(id) = ctx.app.store.create_list(ctx.client.id, name).await? else {
        return Err(ApiError::detail(
            Code::InvalidName,
            format!("a list named {name:?} already exists"),
        ));
    };
    Ok(Reply::success("list created")
        .xml(XmlNode::new("list").attr("id", id))
        .json("list_id", Value::from(id))
        .into())
}

/// list.append (5.5): adds numbers; counts created, duplicate and rejected.
pub async fn append(ctx: &Ctx) -> Outcome {
    let list_id = list_id_param(ctx)?;
    let numbers = numbers_param(ctx)?;
    let list = existing_list(ctx, list_id).await?;
    let (unique, repeated) = distinct(&numbers.valid);
    let created = ctx
        .app
        .store
        .add_list_members(list.id, &unique)
        .await?
        .ok_or_else(no_such_list)?;
    let duplicate = repeated + unique.len() as u64 - created;
    Ok(statistics([
        ("created", created),
        ("duplicate", duplicate),
        ("rejected", numbers.rejected),
    ]))
}

/// list.prune (5.5): removes numbers; counts deleted, not_found and rejected.
pub async fn prune(ctx: &Ctx) -> Outcome {
    let list_id = list_id_param(ctx)?;
    let numbers = numbers_param(ctx)?;
    let list = existing_list(ctx, list_id).await?;
    let (unique, _) = distinct(&numbers.valid);
    let deleted = ctx
        .app
        .store
        .remove_list_members(list.id, &unique)
        .await?
        .ok_or_else(no_such_list)?;
    // A number given twice is deleted once and not found the second time.
    let not_found = numbers.valid.len() as u64 - deleted;
    Ok(statistics([
        ("deleted", deleted),
        ("not_found", not_found),
        ("rejected", numbers.rejected),
    ]))
}

/// list.empty (5.5): removes every member; `name` must be the list's.
pub async fn empty(ctx: &Ctx) -> Outcome {
    let list = named_list(ctx).await?;
    if !ctx.app.store.empty_list(list.id).await? {
        return Err(no_such_list());
    }
    Ok(Reply::success("list reset").into())
}

/// list.destroy (5.5): the list is gone for good; `name` must be the list's.
pub async fn destroy(ctx: &Ctx) -> Outcome {
    let list = named_list(ctx).await?;
    if !ctx.app.store.destroy_list(list.id).await? {
        return Err(no_such_list());
    }
    Ok(Reply::success("list destroyed").into())
}

/// list.download (5.5): every member with its time zone, as XML, JSON or
/// (`format=csv`) a `text/csv` body; streamed page by page.
pub async fn download(ctx: &Ctx) -> Outcome {
    let list = owned_list(ctx).await?;
    let content_type = match ctx.format {
        Format::Csv => "text/csv; charset=utf-8",
        Format::Json => "application/json",
        Format::Xml => "application/xml; charset=utf-8",
    };
    let body = Body::from_stream(export(ctx.app.clone(), list.id, ctx.format));
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if ctx.format == Format::Csv {
        let disposition = format!("attachment; filename=\"list-{}.csv\"", list.id);
        if let Ok(value) = HeaderValue::from_str(&disposition) {
            headers.insert(header::CONTENT_DISPOSITION, value);
        }
    }
    Ok(Answer::Raw(response))
}

/// Where an export stream is.
enum Stage {
    Start,
    Rows { after: String, first: bool },
    Done,
}

/// The body of `list.download`: the envelope's opening, one chunk per page
/// of members, the closing. A store failure mid-way ends the body early
/// (the status line is already sent), which a client sees as a cut answer.
fn export(
    app: std::sync::Arc<App>,
    list_id: i64,
    format: Format,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures_util::stream::unfold(Stage::Start, move |stage| {
        let app = app.clone();
        async move {
            match stage {
                Stage::Start => {
                    let next = Stage::Rows {
                        after: String::new(),
                        first: true,
                    };
                    Some((Ok(opening(format)), next))
                }
                Stage::Rows { after, first } => {
                    let page = app
                        .store
                        .list_members_after(list_id, &after, DOWNLOAD_PAGE)
                        .await;
                    match page {
                        Ok(page) if page.is_empty() => Some((Ok(closing(format)), Stage::Done)),
                        Ok(page) => {
                            let chunk = rows(format, &page, first);
                            let last = page.last().cloned().unwrap_or_default();
                            let next = Stage::Rows {
                                after: last,
                                first: false,
                            };
                            Some((Ok(chunk), next))
                        }
                        Err(error) => {
                            tracing::error!(%error, list_id, "list download failed");
                            Some((Err(std::io::Error::other(error)), Stage::Done))
                        }
                    }
                }
                Stage::Done => None,
            }
        }
    })
}

fn opening(format: Format) -> Bytes {
    let mut out = String::new();
    match format {
        Format::Csv => out.push_str("number,time_zone\n"),
        Format::Json => {
            out.push_str(r#"{"response":{"code":"1","status":"success","message":"data exported","recipients":["#)
        }
        Format::Xml => {
            out.push_str(XML_DECLARATION);
            out.push_str(r#"<response status="success" code="1"><message>"#);
            cdata_into("data exported", &mut out);
            out.push_str("</message><recipients>");
        }
    }
    Bytes::from(out)
}

fn rows(format: Format, numbers: &[String], first: bool) -> Bytes {
    let mut out = String::with_capacity(numbers.len() * 64);
    for (i, number) in numbers.iter().enumerate() {
        let zone = time_zone_of(&PhoneNumber::from_e164_digits(number));
        match format {
            Format::Csv => {
                out.push_str(number);
                out.push(',');
                out.push_str(zone);
                out.push('\n');
            }
            Format::Json => {
                if !(first && i == 0) {
                    out.push(',');
                }
                let row = object([("number", js(number)), ("time_zone", js(zone))]);
                out.push_str(&row.to_string());
            }
            Format::Xml => XmlNode::new("recipient")
                .child(XmlNode::new("number").cdata(number.clone()))
                .child(XmlNode::new("time_zone").cdata(zone))
                .write(&mut out),
        }
    }
    Bytes::from(out)
}

fn closing(format: Format) -> Bytes {
    Bytes::from_static(match format {
        Format::Csv => b"",
        Format::Json => b"]}}",
        Format::Xml => b"</recipients></response>",
    })
}

/// The `numbers` of an append or prune, parsed.
struct Numbers {
    /// E.164 digits in the order given, repeats included.
    valid: Vec<String>,
    rejected: u64,
}

/// `numbers`: required (443), at most `limits.list_numbers` of them (400).
fn numbers_param(ctx: &Ctx) -> Result<Numbers, ApiError> {
    let raw = ctx.params.require("numbers", Code::MissingParameter)?;
    let limit = ctx.app.config.limits.list_numbers;
    let too_many = || {
        ApiError::detail(
            Code::BadRequest,
            format!("at most {limit} numbers per call"),
        )
    };
    // Each piece holds at least one number: refuse early, before parsing.
    if pieces(raw).count() > limit {
        return Err(too_many());
    }
    let mut numbers = Numbers {
        valid: Vec::new(),
        rejected: 0,
    };
    let mut count = 0;
    for piece in pieces(raw) {
        for parsed in parse_piece(piece, ctx.app.region) {
            count += 1;
            match parsed {
                Some(number) => numbers.valid.push(number.digits().to_string()),
                None => numbers.rejected += 1,
            }
        }
    }
    if count > limit {
        return Err(too_many());
    }
    Ok(numbers)
}

/// The comma- or line-separated pieces of `numbers`, trimmed, empty ones
/// dropped (a trailing comma is not a number).
fn pieces(raw: &str) -> impl Iterator<Item = &str> {
    raw.split([',', '\n', '\r'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
}

/// One piece is one number (`(310) 867-5309` has spaces in it), unless it
/// does not parse whole and its space-separated words do: then those.
fn parse_piece(piece: &str, region: rlibphonenumber::enums::Region) -> Vec<Option<PhoneNumber>> {
    if let Ok(number) = PhoneNumber::parse(piece, region) {
        return vec![Some(number)];
    }
    let words: Vec<&str> = piece.split_whitespace().collect();
    if words.len() > 1 {
        let parsed: Vec<Option<PhoneNumber>> = words
            .iter()
            .map(|w| PhoneNumber::parse(w, region).ok())
            .collect();
        if parsed.iter().all(Option::is_some) {
            return parsed;
        }
    }
    vec![None]
}

/// The distinct numbers in order of first appearance, and how many repeats
/// were dropped.
fn distinct(numbers: &[String]) -> (Vec<String>, u64) {
    let mut seen = HashSet::with_capacity(numbers.len());
    let unique: Vec<String> = numbers
        .iter()
        .filter(|n| seen.insert(n.as_str()))
        .cloned()
        .collect();
    let repeated = (numbers.len() - unique.len()) as u64;
    (unique, repeated)
}

/// `<statistics>` with plain-text counts; JSON `"statistics":{..}`.
fn statistics(counts: [(&'static str, u64); 3]) -> Answer {
    let xml =
        XmlNode::new("statistics").children(counts.iter().map(|(k, v)| XmlNode::new(k).text(v)));
    let json = object(counts.map(|(k, v)| (k, js(v))));
    Reply::success("request processed")
        .xml(xml)
        .json("statistics", json)
        .into()
}

/// `list_id`: required (443), a positive integer (444).
fn list_id_param(ctx: &Ctx) -> Result<i64, ApiError> {
    ctx.params
        .require_id("list_id", Code::MissingParameter, Code::InvalidListId)
}

/// `name`: required and well-formed (445).
fn name_param(ctx: &Ctx) -> Result<&str, ApiError> {
    let raw = ctx.params.require("name", Code::InvalidName)?;
    parse_name(raw).ok_or_else(|| {
        ApiError::detail(
            Code::InvalidName,
            "a name is 1 to 64 characters without control characters",
        )
    })
}

/// The client's live list named by `list_id`.
pub(crate) async fn owned_list(ctx: &Ctx) -> Result<List, ApiError> {
    let id = list_id_param(ctx)?;
    existing_list(ctx, id).await
}

async fn existing_list(ctx: &Ctx, id: i64) -> Result<List, ApiError> {
    ctx.app
        .store
        .list(ctx.client.id, id)
        .await?
        .ok_or_else(no_such_list)
}

/// The list of `list_id` whose name is `name` (list.empty, list.destroy).
async fn named_list(ctx: &Ctx) -> Result<List, ApiError> {
    let id = list_id_param(ctx)?;
    let name = name_param(ctx)?;
    let list = existing_list(ctx, id).await?;
    if list.name != name {
        return Err(ApiError::detail(
            Code::InvalidName,
            "\"name\" must be the list's name",
        ));
    }
    Ok(list)
}

fn no_such_list() -> ApiError {
    ApiError::detail(Code::InvalidListId, "no such list")
}

/// Unix seconds as RFC 3339 UTC, `2012-02-27T05:21:50Z` (spec section 4).
fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Object(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rlibphonenumber::enums::Region;

    fn parse_all(raw: &str) -> Vec<Option<String>> {
        pieces(raw)
            .flat_map(|p| parse_piece(p, Region::US))
            .map(|n| n.map(|n| n.digits().to_string()))
            .collect()
    }

    #[test]
    fn numbers_split_on_commas_and_lines_and_keep_spaced_forms_whole() {
        assert_eq!(
            parse_all("(310) 867-5309, 3108675310\n+1 310 867 5311,,"),
            vec![
                Some("13108675309".to_string()),
                Some("13108675310".to_string()),
                Some("13108675311".to_string()),
            ]
        );
    }

    #[test]
    fn space_separated_numbers_are_several() {
        assert_eq!(parse_all("3108675309 3108675310").len(), 2);
        assert_eq!(parse_all("abc 3108675310"), vec![None]);
    }

    #[test]
    fn repeats_are_counted_once_dropped() {
        let numbers: Vec<String> = ["1", "2", "1", "1"].map(String::from).to_vec();
        let (unique, repeated) = distinct(&numbers);
        assert_eq!(unique, vec!["1".to_string(), "2".to_string()]);
        assert_eq!(repeated, 2);
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(1_330_320_110), "2012-02-27T05:21:50Z");
    }
}
