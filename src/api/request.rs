//! Reading a request body into [`Params`] within the limits of spec
//! section 1: 1 MiB for every method, except the file part of
//! `media.upload`, which is streamed to a temp file up to 150 MB.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use futures_util::{StreamExt, TryStreamExt};
use tokio::io::AsyncWriteExt;

use super::error::{ApiError, Code};
use super::params::{Params, Upload};
use crate::app::App;

/// Multipart nesting and part counts an honest client never needs.
const MAX_PARTS: usize = 1000;

/// Adds the body's parameters to `params` (the body wins on a clash).
pub async fn read_body(
    app: &Arc<App>,
    headers: &HeaderMap,
    body: Body,
    upload: bool,
    params: &mut Params,
) -> Result<(), ApiError> {
    let content_type_header = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // The type is compared without case; the boundary keeps its case
    // (browsers write `----WebKitFormBoundaryAbC…`).
    let content_type = content_type_header.to_ascii_lowercase();
    let limit = app.config.limits.body_bytes;
    let idle = Duration::from_secs(app.config.limits.body_idle_secs.max(1));
    // Uploads may take long on slow links; they only must not stall.
    let total = (!upload).then(|| Duration::from_secs(app.config.limits.body_secs.max(1)));
    let body = paced(body, idle, total);
    if content_type.starts_with("multipart/form-data") {
        let boundary = multer::parse_boundary(content_type_header)
            .map_err(|_| bad(upload, "multipart body without a boundary"))?;
        let limits = FormLimits {
            body_bytes: limit,
            media_bytes: app.config.limits.media_bytes,
        };
        let upload_dir = app.config.tmp_dir();
        let body_params = read_multipart(
            body,
            boundary,
            limits,
            upload.then_some(upload_dir.as_path()),
        )
        .await?;
        params.merge_over(body_params);
    } else if content_type.is_empty()
        || content_type.starts_with("application/x-www-form-urlencoded")
    {
        let bytes = read_limited(body, limit).await?;
        let mut body_params = Params::default();
        body_params.add_form(&bytes);
        params.merge_over(body_params);
    }
    // Other content types carry no parameters the API reads; the body is ignored.
    Ok(())
}

/// The body, failing once the client sends nothing for `idle` or, with a
/// `total`, once that much time has passed: a client that stalls or trickles
/// cannot hold a request, and its memory, open.
fn paced(body: Body, idle: Duration, total: Option<Duration>) -> Body {
    let deadline = total.map(|t| tokio::time::Instant::now() + t);
    let stream = body.into_data_stream();
    let paced = futures_util::stream::unfold(Some(stream), move |stream| async move {
        let mut stream = stream?;
        let wait = match deadline {
            Some(deadline) => {
                idle.min(deadline.saturating_duration_since(tokio::time::Instant::now()))
            }
            None => idle,
        };
        match tokio::time::timeout(wait, stream.next()).await {
            Ok(Some(item)) => Some((item.map_err(axum::BoxError::from), Some(stream))),
            Ok(None) => None,
            Err(_) => {
                let why = format!(
                    "the body stalled (nothing for {wait:?}, or over the time a body may take)"
                );
                Some((Err(axum::BoxError::from(why)), None))
            }
        }
    });
    Body::from_stream(paced)
}

fn bad(upload: bool, detail: &str) -> ApiError {
    ApiError::detail(
        if upload {
            Code::BadMedia
        } else {
            Code::BadRequest
        },
        detail,
    )
}

fn too_large(limit: usize) -> ApiError {
    ApiError::detail(Code::BadRequest, format!("request body over {limit} bytes"))
}

/// The whole body, or 400 once it passes `limit`, without buffering more.
async fn read_limited(body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::detail(Code::BadRequest, format!("unreadable body: {e}")))?;
        if bytes.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The size limits of a form body.
#[derive(Debug, Clone, Copy)]
pub struct FormLimits {
    /// Every field but an upload's file, together.
    pub body_bytes: usize,
    /// The file of an upload.
    pub media_bytes: u64,
}

/// The fields of a multipart body. With `upload_dir` (media.upload), the
/// `file` part is streamed to a temp file there instead of being held.
pub async fn read_multipart(
    body: Body,
    boundary: String,
    limits: FormLimits,
    upload_dir: Option<&std::path::Path>,
) -> Result<Params, ApiError> {
    let upload = upload_dir.is_some();
    let limit = limits.body_bytes;
    let media_limit = limits.media_bytes;
    let stream = TryStreamExt::map_err(body.into_data_stream(), std::io::Error::other);
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut params = Params::default();
    let mut field_bytes = 0usize;
    let mut parts = 0usize;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(bad(upload, &format!("broken multipart body: {e}"))),
        };
        parts += 1;
        if parts > MAX_PARTS {
            return Err(ApiError::detail(
                Code::BadRequest,
                format!("more than {MAX_PARTS} multipart parts"),
            ));
        }
        let name = field.name().unwrap_or("").to_string();
        if let Some(dir) = upload_dir.filter(|_| name == "file") {
            let file_name = field.file_name().map(str::to_string);
            params.upload = Some(stream_to_disk(dir, field, file_name, media_limit).await?);
            continue;
        }
        let mut value = Vec::new();
        let mut field = field;
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    field_bytes += chunk.len();
                    if field_bytes > limit {
                        return Err(too_large(limit));
                    }
                    value.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(bad(upload, &format!("broken multipart body: {e}"))),
            }
        }
        let value = match String::from_utf8(value) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        params.set(name, value);
    }
    Ok(params)
}

/// Streams a file part to `dir` (`<data_dir>/tmp`), never holding it in memory.
async fn stream_to_disk(
    dir: &std::path::Path,
    mut field: multer::Field<'static>,
    file_name: Option<String>,
    limit: u64,
) -> Result<Upload, ApiError> {
    let path = dir.join(format!("upload-{}", crate::store::client::random_hex(12)));
    let mut file = tokio::fs::File::create(&path).await?;
    // From here the Upload owns the path and removes it if we bail out.
    let mut upload = Upload {
        path,
        file_name,
        size: 0,
    };
    loop {
        match field.chunk().await {
            Ok(Some(chunk)) => {
                upload.size += chunk.len() as u64;
                if upload.size > limit {
                    return Err(ApiError::detail(
                        Code::MediaTooLarge,
                        format!("the file is over {limit} bytes"),
                    ));
                }
                file.write_all(&chunk).await?;
            }
            Ok(None) => break,
            Err(e) => return Err(bad(true, &format!("unreadable upload: {e}"))),
        }
    }
    file.flush().await?;
    file.sync_all().await?;
    Ok(upload)
}
