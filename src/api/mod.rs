//! The HTTP API of spec sections 1–5: decode a request, authenticate it, run
//! one method, write the envelope. No SQL and no carrier code here.
//!
//! [`method`] is the whole API surface on one screen.

pub mod auth;
pub mod blast;
pub mod campaign;
pub mod envelope;
pub mod error;
pub mod keyword;
pub mod limits;
pub mod list;
pub mod media;
pub mod params;
pub mod promo;
pub mod request;
pub mod system;
pub mod transaction;
pub mod user;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures_util::future::BoxFuture;

use crate::app::App;
use crate::store::client::Client;
use envelope::{Format, Reply};
use error::{ApiError, Code, Rejection};
use params::Params;

/// What a method has to work with.
pub struct Ctx {
    pub app: Arc<App>,
    pub client: Arc<Client>,
    pub params: Params,
    pub format: Format,
    /// `http://` (`https://` when serving TLS) plus the request's Host header:
    /// the default public base URL.
    pub base_url: String,
}

impl Ctx {
    /// The public base URL for smart URLs (spec section 5.6).
    pub fn public_url(&self) -> String {
        let configured = self.app.config.public_url.trim_end_matches('/');
        if configured.is_empty() {
            self.base_url.clone()
        } else {
            configured.to_string()
        }
    }
}

/// A method's answer: an envelope, or a raw body (`list.download` as CSV).
pub enum Answer {
    Reply(Reply),
    Raw(Response),
}

impl From<Reply> for Answer {
    fn from(reply: Reply) -> Answer {
        Answer::Reply(reply)
    }
}

pub type Outcome = Result<Answer, ApiError>;
type Handler = for<'a> fn(&'a Ctx) -> BoxFuture<'a, Outcome>;

/// Every `object.method` of spec section 5, under both prefixes.
pub fn method(name: &str) -> Option<(&'static str, Handler)> {
    let entry: (&'static str, Handler) = match name {
        "system.ping" => ("system.ping", |c| Box::pin(system::ping(c))),

        "transaction.send" => ("transaction.send", |c| Box::pin(transaction::send(c))),
        "transaction.lookup" => ("transaction.lookup", |c| Box::pin(transaction::lookup(c))),

        "user.getopt" => ("user.getopt", |c| Box::pin(user::getopt(c))),
        "user.setopt" => ("user.setopt", |c| Box::pin(user::setopt(c))),
        "user.info" => ("user.info", |c| Box::pin(user::info(c))),
        "user.lookup" => ("user.lookup", |c| Box::pin(user::lookup(c))),
        "user.uncache" => ("user.uncache", |c| Box::pin(user::uncache(c))),
        "user.transactions" => ("user.transactions", |c| Box::pin(user::transactions(c))),

        "keyword.list" => ("keyword.list", |c| Box::pin(keyword::list(c))),
        "keyword.check" => ("keyword.check", |c| Box::pin(keyword::check(c))),
        "keyword.add" => ("keyword.add", |c| Box::pin(keyword::add(c))),
        "keyword.remove" => ("keyword.remove", |c| Box::pin(keyword::remove(c))),

        "list.list" => ("list.list", |c| Box::pin(list::list(c))),
        "list.info" => ("list.info", |c| Box::pin(list::info(c))),
        "list.create" => ("list.create", |c| Box::pin(list::create(c))),
        "list.append" => ("list.append", |c| Box::pin(list::append(c))),
        "list.prune" => ("list.prune", |c| Box::pin(list::prune(c))),
        "list.empty" => ("list.empty", |c| Box::pin(list::empty(c))),
        "list.destroy" => ("list.destroy", |c| Box::pin(list::destroy(c))),
        "list.download" => ("list.download", |c| Box::pin(list::download(c))),
        "list.send" => ("list.send", |c| Box::pin(blast::send(c))),

        "media.upload" => ("media.upload", |c| Box::pin(media::upload(c))),
        "media.list" => ("media.list", |c| Box::pin(media::list(c))),
        "media.info" => ("media.info", |c| Box::pin(media::info(c))),
        "media.destroy" | "media.remove" => ("media.destroy", |c| Box::pin(media::destroy(c))),

        "campaign.create" => ("campaign.create", |c| Box::pin(campaign::create(c))),
        "campaign.info" => ("campaign.info", |c| Box::pin(campaign::info(c))),
        "campaign.list" => ("campaign.list", |c| Box::pin(campaign::list(c))),
        "campaign.update" => ("campaign.update", |c| Box::pin(campaign::update(c))),
        "campaign.destroy" => ("campaign.destroy", |c| Box::pin(campaign::destroy(c))),

        "promo.create" => ("promo.create", |c| Box::pin(promo::create(c))),
        "promo.list" => ("promo.list", |c| Box::pin(promo::list(c))),
        "promo.destroy" => ("promo.destroy", |c| Box::pin(promo::destroy(c))),
        _ => return None,
    };
    Some(entry)
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/moms/{method}", any(call))
        .route("/cm/{method}", any(call))
        .route("/oc/{token}", get(crate::media::serve::smart_url))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(crate::metrics::render))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        // Limits are ours (request.rs), per method; axum's 2 MB default would cut uploads.
        .layer(DefaultBodyLimit::disable())
        .with_state(app)
}

/// One API call, start to end.
async fn call(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    http_method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let found = method(&name);
    let label = found.map(|(n, _)| n).unwrap_or("unknown");
    let (format, result) = run(&app, peer, found, http_method, uri, &headers, body).await;
    let response = match result {
        Ok(Answer::Raw(response)) => {
            crate::metrics::request(label, 1, started);
            return response;
        }
        Ok(Answer::Reply(reply)) => render(&app, format, &reply, StatusCode::OK),
        Err(error) => {
            let (status, retry_after) = match error.rejection {
                Rejection::None if error.code == Code::Internal => {
                    (StatusCode::INTERNAL_SERVER_ERROR, None)
                }
                Rejection::None => (StatusCode::OK, None),
                _ if app.config.compat.legacy_http_status => (StatusCode::OK, None),
                Rejection::Credentials => (StatusCode::FORBIDDEN, None),
                Rejection::TooMany { retry_after } => {
                    (StatusCode::TOO_MANY_REQUESTS, Some(retry_after))
                }
            };
            let mut response = render(&app, format, &Reply::error(&error), status);
            if let Some(seconds) = match error.rejection {
                Rejection::TooMany { retry_after } => Some(retry_after),
                _ => retry_after,
            } {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            response
        }
    };
    let code = response_code(&response);
    crate::metrics::request(label, code, started);
    response
}

fn response_code(response: &Response) -> u16 {
    response
        .extensions()
        .get::<ReplyCode>()
        .map(|c| c.0)
        .unwrap_or(0)
}

#[derive(Clone, Copy)]
struct ReplyCode(u16);

/// Decodes, authenticates and runs; returns the format to answer in.
async fn run(
    app: &Arc<App>,
    peer: SocketAddr,
    found: Option<(&'static str, Handler)>,
    http_method: Method,
    uri: Uri,
    headers: &HeaderMap,
    body: Body,
) -> (Format, Outcome) {
    let mut params = Params::default();
    if let Some(query) = uri.query() {
        params.add_form(query.as_bytes());
    }
    let query_format = format_of(&params);
    let upload = found.map(|(n, _)| n) == Some("media.upload");
    if (http_method == Method::POST || http_method == Method::PUT)
        && let Err(error) = request::read_body(app, headers, body, upload, &mut params).await
    {
        return (query_format.unwrap_or(Format::Xml), Err(error));
    }
    if params.len() > app.config.limits.max_parameters {
        let detail = format!("more than {} parameters", app.config.limits.max_parameters);
        return (
            query_format.unwrap_or(Format::Xml),
            Err(ApiError::detail(Code::BadRequest, detail)),
        );
    }
    let Some(format) = format_of(&params) else {
        let detail = format!(
            "\"format\" must be xml or json, not {:?}",
            params.get("format").unwrap_or("")
        );
        return (Format::Xml, Err(ApiError::detail(Code::BadRequest, detail)));
    };
    let Some((name, handler)) = found else {
        return (
            reply_format(format),
            Err(ApiError::new(Code::UnknownRequest)),
        );
    };
    if format == Format::Csv && name != "list.download" {
        return (
            Format::Xml,
            Err(ApiError::detail(
                Code::BadRequest,
                "format=csv is for list.download only",
            )),
        );
    }
    let caller = auth::caller_ip(peer.ip(), headers, &app.trusted_proxies);
    let client = match auth::authenticate(app, &params, caller).await {
        Ok(client) => client,
        Err(error) => return (reply_format(format), Err(error)),
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("localhost");
    let ctx = Ctx {
        app: app.clone(),
        client,
        params,
        format,
        base_url: format!("{}://{host}", crate::tls::scheme(&app.config.tls)),
    };
    let outcome = handler(&ctx).await;
    (reply_format(format), outcome)
}

/// `format` as given; `None` when it names no format.
fn format_of(params: &Params) -> Option<Format> {
    Format::parse(params.get("format"))
}

/// CSV answers its errors in XML.
fn reply_format(format: Format) -> Format {
    if format == Format::Csv {
        Format::Xml
    } else {
        format
    }
}

fn render(app: &App, format: Format, reply: &Reply, status: StatusCode) -> Response {
    let (body, content_type) = match format {
        Format::Json => (
            reply.to_json(app.config.compat.legacy_json_error_code),
            "application/json",
        ),
        _ => (reply.to_xml(), "application/xml; charset=utf-8"),
    };
    let mut response = (status, [(header::CONTENT_TYPE, content_type)], body).into_response();
    response
        .extensions_mut()
        .insert(ReplyCode(reply.code.number()));
    response
}
