//! The MM7 endpoint moms serves to MMSCs: `POST /mm7/<carrier_id>` (spec
//! sections 6.1 and 7). It takes `DeliveryReportReq` (the fate of a
//! message we submitted) and `DeliverReq` (an MMS from a phone), each
//! answered with its `…Rsp`, after HTTP Basic auth against the carrier's
//! `[[mm7]]` `inbound_username` and `inbound_password`.
//!
//! A delivery report ends its transaction (see [`super::report_step`]); one
//! that cannot be recorded yet (it overtook its submission's answer) is
//! answered 3000 so that the MMSC sends it again, as MMSCs do. A
//! message from a phone has each media part stored as media (recognised by
//! its bytes, like an upload; other parts are left out) and goes through
//! [`crate::inbound`] with their smart URLs as its `images`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use subtle::ConstantTimeEq;

use super::envelope::{self, Deliver, DeliveryReport, Request, Status, Version};
use super::mime::Part;
use super::{Mm7Endpoint, apply, report_step};
use crate::app::App;
use crate::domain::phone::PhoneNumber;
use crate::inbound::InboundMessage;
use crate::media::sniff::sniff;
use crate::store::media::NewMedia;

/// The largest request taken: an MMS, with room for base64.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// The endpoint's routes, to merge into the API's router.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/mm7/{carrier_id}", post(endpoint))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

async fn endpoint(
    State(app): State<Arc<App>>,
    Path(carrier_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(config) = carrier_id
        .parse::<i64>()
        .ok()
        .and_then(|id| app.mm7.endpoint(id))
        .cloned()
    else {
        return (
            StatusCode::NOT_FOUND,
            "no [[mm7]] entry names this carrier id\n",
        )
            .into_response();
    };
    if !authorized(&config, &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"mm7\"")],
            "MM7 requests need HTTP Basic credentials: the inbound_username and inbound_password of this carrier's [[mm7]] entry\n",
        )
            .into_response();
    }
    let version = config.version();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/xml");
    let request = match envelope::parse_request(content_type, &body) {
        Ok(request) => request,
        Err(error) => {
            tracing::info!(%error, carrier_id = config.carrier_id, "unreadable MM7 request");
            // 4003: unsupported operation; 2007: message format corrupt.
            let code = match error {
                envelope::Mm7Error::Unsupported(_) => 4003,
                _ => 2007,
            };
            return fault(code, &format!("{error}"));
        }
    };
    let status = match &request {
        Request::DeliveryReport(report) => delivery_report(&app, &config, report).await,
        Request::Deliver(deliver) => deliver_message(&app, &config, deliver, &headers).await,
        Request::Submit(..) => Ok(Status {
            code: 4003,
            text: "Unsupported operation: submit to the MMSC, not to this endpoint".into(),
        }),
    };
    let status = status.unwrap_or_else(|error| {
        tracing::error!(error = %format!("{error:#}"), "handling an MM7 request failed");
        Status {
            code: 3000,
            text: "Server error: try again".into(),
        }
    });
    let answer = envelope::response(
        &version,
        request.response_name(),
        request.transaction_id(),
        &status,
        None,
    );
    xml(StatusCode::OK, answer)
}

/// Constant-time check of the Basic credentials; none configured: refused.
fn authorized(config: &Mm7Endpoint, headers: &HeaderMap) -> bool {
    if config.inbound_username.is_empty() {
        return false;
    }
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
    else {
        return false;
    };
    let expected = format!("{}:{}", config.inbound_username, config.inbound_password);
    given.ct_eq(expected.as_bytes()).into()
}

/// A `DeliveryReportReq`: ends the transaction it names, and the id is
/// forgotten once final. An id we never gave out (or forgot) is answered
/// 2005 (message ID not found).
async fn delivery_report(
    app: &App,
    config: &Mm7Endpoint,
    report: &DeliveryReport,
) -> anyhow::Result<Status> {
    let Some(transaction_id) = app
        .store
        .mm7_transaction(config.carrier_id, &report.message_id)
        .await?
    else {
        // A report may overtake the recording of its submission's answer:
        // while submissions are in flight, ask for it again later.
        if app.mm7.busy() {
            return Ok(Status {
                code: 3000,
                text: format!(
                    "Message ID {} not known yet: send the report again",
                    report.message_id
                ),
            });
        }
        return Ok(Status {
            code: 2005,
            text: format!("Message ID {} not found", report.message_id),
        });
    };
    // The submission's own recording may move the stage (`mm7` to
    // `await`) between the read and the write: then read again.
    let mut recorded = false;
    for _ in 0..5 {
        let dues = app.store.smpp_dues(&[transaction_id]).await?;
        let steps: Vec<_> = dues
            .iter()
            .filter_map(|due| report_step(due, report))
            .collect();
        if steps.is_empty() || apply(app, steps).await? > 0 {
            recorded = true;
            break;
        }
    }
    if !recorded {
        return Ok(Status {
            code: 3000,
            text: "The report could not be recorded yet: send it again".into(),
        });
    }
    if report.outcome() != super::envelope::MmStatus::Pending {
        app.store
            .mm7_forget(config.carrier_id, &report.message_id)
            .await?;
    }
    Ok(Status::success())
}

/// A `DeliverReq`: its media stored, then routed like any message from a phone.
async fn deliver_message(
    app: &App,
    config: &Mm7Endpoint,
    deliver: &Deliver,
    headers: &HeaderMap,
) -> anyhow::Result<Status> {
    let Ok(from) = PhoneNumber::parse(&format!("+{}", deliver.sender), app.region)
        .or_else(|_| PhoneNumber::parse(&deliver.sender, app.region))
    else {
        return Ok(Status {
            code: 2002,
            text: format!(
                "Address error: sender {:?} is not a phone number",
                deliver.sender
            ),
        });
    };
    let base_url = base_url(app, headers);
    let mut images = Vec::new();
    for part in &deliver.parts {
        if let Some(url) = store_part(app, from.digits(), part, &base_url).await? {
            images.push(url);
        }
    }
    let message = InboundMessage {
        from,
        to: deliver.recipient.clone(),
        text: deliver.text(),
        subject: deliver.subject.clone(),
        images,
    };
    let table = app.carrier_table();
    let received = crate::inbound::receive(&app.store, &app.config, &table, message).await?;
    if received.webhooks > 0 {
        app.webhook_wake.notify_one();
    }
    if received.reply_message_id.is_some() {
        app.delivery_wake.notify_one();
    }
    tracing::debug!(carrier_id = config.carrier_id, event = %received.event, "MM7 message received");
    Ok(Status::success())
}

/// Stores one part as media of no client, sent by `sender` (so that
/// `moms admin forget` finds it); `None` for text and unsupported formats.
pub async fn store_part(
    app: &App,
    sender: &str,
    part: &Part,
    base_url: &str,
) -> anyhow::Result<Option<String>> {
    if part.media_type().starts_with("text/") || part.media_type().ends_with("smil") {
        return Ok(None);
    }
    let name = crate::media::storage::name_from_file(part.content_location());
    store_bytes(app, sender, &part.body, &name, base_url).await
}

/// Stores `bytes` as media of no client, sent by `sender`, when they are
/// an accepted format (`None` otherwise); returns the smart URL.
pub async fn store_bytes(
    app: &App,
    sender: &str,
    bytes: &[u8],
    name: &str,
    base_url: &str,
) -> anyhow::Result<Option<String>> {
    let Some(sniffed) = sniff(bytes) else {
        return Ok(None);
    };
    let sha256 = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(bytes))
    };
    let row = NewMedia {
        client_id: None,
        name,
        kind: sniffed.kind.as_str(),
        mime: sniffed.mime,
        original_name: name,
        size: bytes.len() as i64,
        sha256: &sha256,
        base_url,
        sender: Some(sender),
    };
    let media = app
        .store
        .insert_media(&row, async |id| {
            let path = crate::media::storage::media_path(&app.config, id);
            tokio::fs::write(path, bytes).await
        })
        .await?;
    Ok(Some(media.smart_url()))
}

/// `public_url`, else `http://` and the address moms listens on (for
/// media stored outside any request).
pub fn configured_base_url(app: &App) -> String {
    let configured = app.config.public_url.trim_end_matches('/');
    if !configured.is_empty() {
        return configured.to_string();
    }
    format!("http://{}", app.config.listen)
}

/// `public_url`, else `http://` and the request's Host.
fn base_url(app: &App, headers: &HeaderMap) -> String {
    let configured = app.config.public_url.trim_end_matches('/');
    if !configured.is_empty() {
        return configured.to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// A SOAP fault for a request that cannot be taken (HTTP 500, as SOAP 1.1
/// says), with its MM7 status `code`.
fn fault(code: u32, reason: &str) -> Response {
    let version = Version::default();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><env:Envelope xmlns:env=\"{}\"><env:Body><env:Fault><faultcode>env:Client</faultcode><faultstring>{}</faultstring><detail><RSErrorRsp xmlns=\"{}\"><MM7Version>{}</MM7Version><Status><StatusCode>{code}</StatusCode><StatusText>{}</StatusText></Status></RSErrorRsp></detail></env:Fault></env:Body></env:Envelope>",
        envelope::SOAP_ENV,
        envelope::escape(reason),
        version.namespace(),
        version.mm7_version,
        envelope::escape(reason)
    );
    xml(StatusCode::INTERNAL_SERVER_ERROR, body)
}

fn xml(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}
