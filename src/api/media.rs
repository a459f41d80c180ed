//! `media.*` (spec section 5.6): uploading a file or a URL, listing,
//! describing and destroying a client's media. Checking the bytes, storing
//! and fetching live in `crate::media`; this module reads parameters and
//! writes answers.

use serde_json::{Map, Value};

use super::envelope::{Reply, XmlNode, js};
use super::error::{ApiError, Code};
use super::{Ctx, Outcome};
use crate::media::fetch::{check_url, fetch_to_temp};
use crate::media::sniff::Kind;
use crate::media::storage::{NewFile, check_name, store_file};
use crate::store::media::Media;
use crate::store::webhook::NewWebhook;

/// Which fields of a media an answer shows, in the order it shows them.
#[derive(Clone, Copy)]
enum Layout {
    /// media.upload: name, content_id, smart_url.
    Uploaded,
    /// media.list items: name, type, content_id, smart_url, filename.
    Listed,
    /// media.info and media.destroy: the list fields, then size.
    Full,
}

/// One field: its name, its value, and whether XML writes it as CDATA
/// (spec section 2's table).
fn fields(media: &Media, layout: Layout) -> Vec<(&'static str, String, bool)> {
    let mut out = vec![("name", media.name.clone(), true)];
    if !matches!(layout, Layout::Uploaded) {
        out.push(("type", media.kind.clone(), true));
    }
    out.push(("content_id", media.id.to_string(), false));
    out.push(("smart_url", media.smart_url(), true));
    if !matches!(layout, Layout::Uploaded) {
        out.push(("filename", media.filename.clone(), true));
    }
    if matches!(layout, Layout::Full) {
        out.push(("size", media.size.to_string(), false));
    }
    out
}

/// `<media>` with the layout's children.
fn media_xml(media: &Media, layout: Layout) -> XmlNode {
    XmlNode::new("media").children(
        fields(media, layout)
            .into_iter()
            .map(|(name, value, cdata)| {
                let node = XmlNode::new(name);
                if cdata {
                    node.cdata(value)
                } else {
                    node.text(value)
                }
            }),
    )
}

/// The same fields as a JSON object of strings.
fn media_json(media: &Media, layout: Layout) -> Value {
    let map: Map<String, Value> = fields(media, layout)
        .into_iter()
        .map(|(name, value, _)| (name.to_string(), js(value)))
        .collect();
    Value::Object(map)
}

/// A reply carrying one `<media>` / `"media"`.
fn with_media(message: &str, media: &Media, layout: Layout) -> Reply {
    Reply::success(message)
        .xml(media_xml(media, layout))
        .json("media", media_json(media, layout))
}

/// media.upload (spec section 5.6): `type`, `name`, then `file` or `url`,
/// then `callback`; the bytes are checked, stored, and the callback (if
/// any) is queued with the same XML as the answer, success or error.
pub async fn upload(ctx: &Ctx) -> Outcome {
    let kind = ctx.params.require("type", Code::MissingParameter)?;
    let kind = Kind::parse(kind).ok_or_else(|| {
        ApiError::detail(
            Code::BadMedia,
            format!("type must be image, audio or video, not {kind:?}"),
        )
    })?;
    let name = ctx
        .params
        .get("name")
        .ok_or_else(|| ApiError::detail(Code::BadMediaName, "\"name\" is required"))?;
    check_name(name).map_err(|detail| ApiError::detail(Code::BadMediaName, detail))?;
    let source = match (&ctx.params.upload, ctx.params.get("url")) {
        (Some(file), None) => Source::File(file),
        (None, Some(url)) => Source::Url(url),
        (None, None) => {
            return Err(ApiError::detail(
                Code::BadMedia,
                "give a \"file\" (multipart) or a \"url\"",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::detail(
                Code::BadMedia,
                "give a \"file\" or a \"url\", not both",
            ));
        }
    };
    let callback =
        match ctx.params.get("callback") {
            None => None,
            Some(url) => Some(check_url(&ctx.app.config, url).map_err(|detail| {
                ApiError::detail(Code::BadRequest, format!("callback: {detail}"))
            })?),
        };
    let new = NewFile {
        client_id: Some(ctx.client.id),
        name,
        declared: Some(kind),
        base_url: &ctx.public_url(),
    };
    let stored = store_source(ctx, new, source).await;
    let reply =
        stored.map(|media| with_media("media correctly uploaded", &media, Layout::Uploaded));
    if let Some(url) = callback {
        let body = match &reply {
            Ok(reply) => reply.to_xml(),
            Err(error) => Reply::error(error).to_xml(),
        };
        queue_callback(ctx, url.as_str(), body).await?;
    }
    Ok(reply?.into())
}

enum Source<'a> {
    File(&'a super::params::Upload),
    Url(&'a str),
}

async fn store_source(ctx: &Ctx, new: NewFile<'_>, source: Source<'_>) -> Result<Media, ApiError> {
    match source {
        Source::File(file) => store_file(&ctx.app, new, file).await,
        Source::Url(url) => {
            // Dropping `fetched` removes the temp file if it was not moved.
            let fetched = fetch_to_temp(&ctx.app, url).await?;
            store_file(&ctx.app, new, &fetched).await
        }
    }
}

async fn queue_callback(ctx: &Ctx, url: &str, body: String) -> Result<(), ApiError> {
    let hook = NewWebhook {
        client_id: ctx.client.id,
        url: url.to_string(),
        content_type: "application/xml",
        body,
    };
    ctx.app.store.enqueue_media_callback(&hook).await?;
    ctx.app.webhook_wake.notify_one();
    Ok(())
}

/// media.list (spec section 5.6): the client's live media, newest first,
/// at most `limit`.
pub async fn list(ctx: &Ctx) -> Outcome {
    let limit = ctx.params.limit()?;
    let media = ctx.app.store.list_media(ctx.client.id, limit).await?;
    let xml =
        XmlNode::new("media_list").children(media.iter().map(|m| media_xml(m, Layout::Listed)));
    let json = media
        .iter()
        .map(|m| media_json(m, Layout::Listed))
        .collect();
    Ok(Reply::success("media list retrieved")
        .xml(xml)
        .json("media_list", Value::Array(json))
        .into())
}

fn no_such_media(id: i64) -> ApiError {
    ApiError::detail(Code::BadMedia, format!("no media with content_id {id}"))
}

/// media.info (spec section 5.6).
pub async fn info(ctx: &Ctx) -> Outcome {
    // 443 when absent, 460 when not a positive integer.
    let id = ctx
        .params
        .require_id("content_id", Code::MissingParameter, Code::BadMedia)?;
    let media = ctx
        .app
        .store
        .client_media(ctx.client.id, id)
        .await?
        .ok_or_else(|| no_such_media(id))?;
    Ok(with_media("media retrieved", &media, Layout::Full).into())
}

/// media.destroy and its alias media.remove (spec section 5.6): the smart
/// URL stops working and the stored bytes are removed.
pub async fn destroy(ctx: &Ctx) -> Outcome {
    // 443 when absent, 460 when not a positive integer.
    let id = ctx
        .params
        .require_id("content_id", Code::MissingParameter, Code::BadMedia)?;
    let media = ctx
        .app
        .store
        .destroy_media(ctx.client.id, id)
        .await?
        .ok_or_else(|| no_such_media(id))?;
    // The row is already destroyed, so a file left behind is only wasted
    // space: logged, not answered.
    crate::media::storage::remove_files(&ctx.app.config, &[id]).await;
    Ok(with_media("media correctly deleted", &media, Layout::Full).into())
}
