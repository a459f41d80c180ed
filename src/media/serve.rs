//! The smart URL `/oc/<token>` (spec section 5.6): stored media served to
//! phones without credentials, streamed from disk with its sniffed
//! `Content-Type`. Single byte ranges are answered 206, because audio and
//! video players seek with them. A token never changes its bytes, so answers
//! may be cached for long, and the token is the `ETag`: `If-None-Match`
//! with it is answered 304.
//!
//! `?r=<message_id>` names the transaction that carried the link; when that
//! transaction did carry this media, the fetching phone's User-Agent is
//! recorded as its recipient's handset.

use std::collections::HashMap;
use std::io::SeekFrom;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::storage::media_path;
use crate::app::App;
use crate::store::media::Media;

/// A year: the bytes behind a token never change.
const CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

pub async fn smart_url(
    State(app): State<Arc<App>>,
    Path(token): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let media = match lookup(&app, &token).await {
        Ok(Some(media)) => media,
        Ok(None) => return not_found(),
        Err(error) => {
            tracing::error!(%error, "smart URL lookup failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    if let Some(message_id) = query.get("r").and_then(|r| r.parse::<i64>().ok()) {
        record_handset(&app, &media, message_id, &headers).await;
    }
    let mut file = match tokio::fs::File::open(media_path(&app.config, media.id)).await {
        Ok(file) => file,
        // Destroyed between the lookup and the open.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return not_found(),
        Err(error) => {
            tracing::error!(%error, id = media.id, "cannot open stored media");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    // The file, not the row, is the truth about what can be sent.
    let size = match file.metadata().await {
        Ok(meta) => meta.len(),
        Err(error) => {
            tracing::error!(%error, id = media.id, "cannot stat stored media");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    // The token names its bytes for good: it is their validator too, and a
    // phone that has them is told so without them (304).
    let etag = format!("\"{}\"", media.token);
    let has_it = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if has_it {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        let out = response.headers_mut();
        out.insert(header::ETAG, header_value(&etag));
        out.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(CACHE_CONTROL),
        );
        return response;
    }
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|v| parse_range(v, size));
    let (status, start, len) = match range {
        None | Some(RangeAnswer::Whole) => (StatusCode::OK, 0, size),
        Some(RangeAnswer::Unsatisfiable) => return unsatisfiable(size),
        Some(RangeAnswer::Part { start, end }) => {
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
    };
    if start > 0
        && let Err(error) = file.seek(SeekFrom::Start(start)).await
    {
        tracing::error!(%error, id = media.id, "cannot seek stored media");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let body = Body::from_stream(ReaderStream::new(file.take(len)));
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let out = response.headers_mut();
    out.insert(header::CONTENT_TYPE, header_value(&media.mime));
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    out.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    out.insert(header::ETAG, header_value(&etag));
    if status == StatusCode::PARTIAL_CONTENT {
        let content_range = format!("bytes {start}-{}/{size}", start + len - 1);
        out.insert(header::CONTENT_RANGE, header_value(&content_range));
    }
    response
}

/// Live media by token; a token that cannot be one is not looked up.
async fn lookup(app: &App, token: &str) -> sqlx::Result<Option<Media>> {
    let well_formed = token.len() == 10
        && token
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !well_formed {
        return Ok(None);
    }
    app.store.media_by_token(token).await
}

/// Best effort: a phone gets its media whether or not this works.
async fn record_handset(app: &App, media: &Media, message_id: i64, headers: &HeaderMap) {
    let Some(user_agent) = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|ua| !ua.is_empty())
    else {
        return;
    };
    let recorded = async {
        if let Some(number) = app.store.media_recipient(message_id, media.id).await? {
            app.store.record_handset(&number, user_agent).await?;
        }
        Ok::<(), sqlx::Error>(())
    };
    if let Err(error) = recorded.await {
        tracing::warn!(%error, message_id, "cannot record the handset");
    }
}

fn header_value(value: &str) -> HeaderValue {
    HeaderValue::from_str(value)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

fn unsatisfiable(size: u64) -> Response {
    let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
    let out = response.headers_mut();
    out.insert(
        header::CONTENT_RANGE,
        header_value(&format!("bytes */{size}")),
    );
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    response
}

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
enum RangeAnswer {
    /// Absent, malformed, or several ranges: the whole file, 200 (RFC 9110
    /// lets a server ignore a range it does not serve).
    Whole,
    /// One satisfiable range, inclusive.
    Part { start: u64, end: u64 },
    /// One well-formed range that lies past the end: 416.
    Unsatisfiable,
}

fn parse_range(value: &str, size: u64) -> RangeAnswer {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Whole;
    };
    if spec.contains(',') {
        return RangeAnswer::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAnswer::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // `bytes=-N`: the last N bytes.
        return match number(last) {
            None => RangeAnswer::Whole,
            Some(0) => RangeAnswer::Unsatisfiable,
            Some(_) if size == 0 => RangeAnswer::Unsatisfiable,
            Some(suffix) => RangeAnswer::Part {
                start: size.saturating_sub(suffix),
                end: size - 1,
            },
        };
    }
    let Some(start) = number(first) else {
        return RangeAnswer::Whole;
    };
    // `bytes=N-` is open-ended; `bytes=N-M` is inclusive.
    let end = if last.is_empty() {
        u64::MAX
    } else {
        match number(last) {
            Some(end) if end >= start => end,
            _ => return RangeAnswer::Whole,
        }
    };
    if start >= size {
        return RangeAnswer::Unsatisfiable;
    }
    RangeAnswer::Part {
        start,
        end: end.min(size - 1),
    }
}

/// A decimal number of digits only (no sign, no spaces inside).
fn number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_parsed() {
        use RangeAnswer::*;
        assert_eq!(parse_range("bytes=0-9", 100), Part { start: 0, end: 9 });
        assert_eq!(parse_range("bytes=90-", 100), Part { start: 90, end: 99 });
        assert_eq!(parse_range("bytes=-10", 100), Part { start: 90, end: 99 });
        assert_eq!(parse_range("bytes=-500", 100), Part { start: 0, end: 99 });
        assert_eq!(
            parse_range("bytes=50-500", 100),
            Part { start: 50, end: 99 }
        );
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=200-300", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Whole);
        assert_eq!(parse_range("bytes=9-3", 100), Whole);
        assert_eq!(parse_range("items=0-9", 100), Whole);
        assert_eq!(parse_range("bytes=x-9", 100), Whole);
        assert_eq!(parse_range("bytes=5-y", 100), Whole);
        assert_eq!(parse_range("bytes=-", 100), Whole);
    }
}
