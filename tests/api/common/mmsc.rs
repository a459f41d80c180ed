//! A fake MMSC speaking MM7 over real HTTP: records every `SubmitReq` it
//! receives and checks its SOAP and MIME structure on its own terms
//! (problems are collected for the test to assert on), answers with a
//! `SubmitRsp` carrying a fresh MessageID (or the failure it was told to
//! give), and posts `DeliveryReportReq` and `DeliverReq` to moms.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use moms::mm7::envelope::{self, Address, Request, Status, Submit, Version};
use moms::mm7::mime::{self, ContentType, Part};

/// What the MMSC answers to the next submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// MM7 status 1000 with a MessageID.
    Accept,
    /// An MM7 status in a SOAP fault (HTTP 500).
    Status(u32),
    /// A bare HTTP status without a SOAP body.
    Http(u16),
    /// No answer for this many milliseconds, then an acceptance (too late
    /// for a client that gave up).
    Stall(u64),
}

/// One submission as received.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub headers: HeaderMap,
    pub submit: Submit,
    /// The content parts, nested multiparts opened.
    pub parts: Vec<Part>,
    /// The MessageID given in the answer (empty when refused).
    pub message_id: String,
    /// What the structure check found wrong; empty when all is well.
    pub problems: Vec<String>,
}

#[derive(Default)]
struct Inner {
    received: Vec<Submitted>,
    answers: VecDeque<Answer>,
    next_id: u64,
    /// Report every accepted message at once: (moms base URL, carrier id,
    /// MMStatus), resent until moms answers 1000, as MMSCs do.
    auto_report: Option<(String, i64, String)>,
}

#[derive(Clone)]
pub struct Mmsc {
    /// The MM7 URL to configure: `http://127.0.0.1:<port>/mm7`.
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    http: reqwest::Client,
}

/// Credentials moms presents to the MMSC, and those the MMSC presents to moms.
pub const OUT_USER: &str = "vasp-user";
pub const OUT_PASSWORD: &str = "vasp-secret";
pub const IN_USER: &str = "mmsc-user";
pub const IN_PASSWORD: &str = "mmsc-secret";

impl Mmsc {
    pub async fn start() -> Mmsc {
        // reqwest's rustls needs a provider before its first client.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/mm7", post(receive))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mm7", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Mmsc {
            url,
            inner,
            http: reqwest::Client::new(),
        }
    }

    /// The `[[mm7]]` entry for `carrier_id` pointing here.
    pub fn endpoint(&self, carrier_id: i64) -> moms::mm7::Mm7Endpoint {
        moms::mm7::Mm7Endpoint {
            carrier_id,
            url: self.url.clone(),
            username: OUT_USER.into(),
            password: OUT_PASSWORD.into(),
            vasp_id: "moms-vasp".into(),
            vas_id: "moms-vas".into(),
            service_code: "svc-1".into(),
            inbound_username: IN_USER.into(),
            inbound_password: IN_PASSWORD.into(),
            ..moms::mm7::Mm7Endpoint::default()
        }
    }

    /// From now on, reports every accepted message to moms right after
    /// answering it.
    pub fn auto_report(&self, moms_base: &str, carrier_id: i64, mm_status: &str) {
        self.inner.lock().unwrap().auto_report =
            Some((moms_base.to_string(), carrier_id, mm_status.to_string()));
    }

    /// Answers the next submissions with these, in order (then accepts).
    pub fn answer_next(&self, answers: &[Answer]) {
        self.inner.lock().unwrap().answers.extend(answers);
    }

    pub fn received(&self) -> Vec<Submitted> {
        self.inner.lock().unwrap().received.clone()
    }

    /// Waits until `n` submissions arrived (panics after 10 s).
    pub async fn wait_for(&self, n: usize) -> Vec<Submitted> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let received = self.received();
            if received.len() >= n {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "the MMSC got {} submissions, not {n}: {:?}",
                received.len(),
                received
                    .iter()
                    .map(|r| &r.submit.transaction_id)
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Posts a `DeliveryReportReq` to moms; returns the HTTP status and body.
    pub async fn report(
        &self,
        moms_base: &str,
        carrier_id: i64,
        message_id: &str,
        recipient: &str,
        mm_status: &str,
    ) -> (u16, String) {
        let xml = envelope::delivery_report_envelope(
            &Version::default(),
            "report-1",
            message_id,
            &Address::Number(recipient.into()),
            mm_status,
        );
        // As MMSCs do, a report answered 3000 (moms has not recorded the
        // submission's answer yet) is sent again.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let (status, body) = self
                .post(
                    moms_base,
                    carrier_id,
                    "text/xml; charset=utf-8",
                    xml.clone().into_bytes(),
                    Some((IN_USER, IN_PASSWORD)),
                )
                .await;
            if !body.contains("<StatusCode>3000</StatusCode>")
                || std::time::Instant::now() >= deadline
            {
                return (status, body);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Posts a `DeliverReq` from `from` to `to` with a text part and, when
    /// given, one media part (in `multipart/mixed` inside `multipart/related`).
    pub async fn deliver(
        &self,
        moms_base: &str,
        carrier_id: i64,
        (from, to): (&str, &str),
        subject: &str,
        text: &str,
        media: Option<(&str, Vec<u8>)>,
    ) -> (u16, String) {
        let version = Version::parse("REL-6-MM7-1-4").unwrap();
        let soap = envelope::deliver_envelope(
            &version,
            "deliver-1",
            &Address::Number(from.into()),
            &Address::ShortCode(to.into()),
            subject,
            "content-1",
        );
        let mut content = vec![Part::new(
            "text/plain; charset=utf-8",
            text.as_bytes().to_vec(),
        )];
        if let Some((mime_type, bytes)) = media {
            content.push(Part::new(mime_type, bytes).header("Content-Location", "photo.img"));
        }
        let inner = mime::new_boundary();
        let outer = mime::new_boundary();
        let parts = vec![
            Part::new("text/xml; charset=utf-8", soap.into_bytes())
                .header("Content-ID", "<soap-part>"),
            Part::new(
                &format!("multipart/mixed; boundary=\"{inner}\""),
                mime::write_multipart(&inner, &content),
            )
            .header("Content-ID", "<content-1>"),
        ];
        let content_type = format!(
            "multipart/related; boundary=\"{outer}\"; type=\"text/xml\"; start=\"<soap-part>\""
        );
        self.post(
            moms_base,
            carrier_id,
            &content_type,
            mime::write_multipart(&outer, &parts),
            Some((IN_USER, IN_PASSWORD)),
        )
        .await
    }

    /// Posts raw bytes to moms's MM7 endpoint.
    pub async fn post(
        &self,
        moms_base: &str,
        carrier_id: i64,
        content_type: &str,
        body: Vec<u8>,
        credentials: Option<(&str, &str)>,
    ) -> (u16, String) {
        let mut request = self
            .http
            .post(format!("{moms_base}/mm7/{carrier_id}"))
            .header("content-type", content_type)
            .header("SOAPAction", "\"\"")
            .body(body);
        if let Some((user, password)) = credentials {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.expect("moms answers");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut problems = structure_problems(&headers, &content_type, &body);
    let (submit, parts) = match envelope::parse_request(&content_type, &body) {
        Ok(Request::Submit(submit, parts)) => (submit, parts),
        Ok(other) => {
            problems.push(format!("not a SubmitReq: {other:?}"));
            return StatusCode::BAD_REQUEST.into_response();
        }
        Err(error) => {
            problems.push(format!("unreadable: {error}"));
            return StatusCode::BAD_REQUEST.into_response();
        }
    };
    let next = inner.lock().unwrap().answers.pop_front();
    if let Some(Answer::Stall(ms)) = next {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut inner = inner.lock().unwrap();
    let answer = next.unwrap_or(Answer::Accept);
    let version = Version::default();
    let (status, message_id, body) = match answer {
        Answer::Accept | Answer::Stall(_) => {
            inner.next_id += 1;
            let id = format!("mmsc-{}", inner.next_id);
            let xml = envelope::response(
                &version,
                "SubmitRsp",
                &submit.transaction_id,
                &Status::success(),
                Some(&id),
            );
            (StatusCode::OK, id, xml)
        }
        Answer::Status(code) => {
            let xml = format!(
                "<?xml version=\"1.0\"?><env:Envelope xmlns:env=\"http://schemas.xmlsoap.org/soap/envelope/\"><env:Body><env:Fault><faultcode>env:Server</faultcode><faultstring>refused</faultstring><detail><RSErrorRsp xmlns=\"{}\"><MM7Version>5.3.0</MM7Version><Status><StatusCode>{code}</StatusCode><StatusText>Refused for the test</StatusText></Status></RSErrorRsp></detail></env:Fault></env:Body></env:Envelope>",
                version.namespace()
            );
            (StatusCode::INTERNAL_SERVER_ERROR, String::new(), xml)
        }
        Answer::Http(code) => (
            StatusCode::from_u16(code).unwrap(),
            String::new(),
            "unavailable".to_string(),
        ),
    };
    if let (Some((base, carrier, mm_status)), false) =
        (inner.auto_report.clone(), message_id.is_empty())
    {
        let recipient = submit.recipient.value().to_string();
        let message_id = message_id.clone();
        tokio::spawn(async move {
            let xml = |id: &str| {
                envelope::delivery_report_envelope(
                    &Version::default(),
                    "auto",
                    id,
                    &Address::Number(recipient.clone()),
                    &mm_status,
                )
            };
            for _ in 0..200 {
                let answer = reqwest::Client::new()
                    .post(format!("{base}/mm7/{carrier}"))
                    .basic_auth(IN_USER, Some(IN_PASSWORD))
                    .header("content-type", "text/xml")
                    .body(xml(&message_id))
                    .send()
                    .await;
                if let Ok(answer) = answer
                    && answer
                        .text()
                        .await
                        .is_ok_and(|t| t.contains("<StatusCode>1000</StatusCode>"))
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }
    inner.received.push(Submitted {
        headers,
        submit,
        parts,
        message_id,
        problems,
    });
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

/// TS 23.140 section 8.4 and SOAP 1.1 as an MMSC checks them: Basic
/// credentials, a SOAPAction header, `multipart/related` of type
/// `text/xml` whose `start` names the first part, that part a SOAP
/// envelope, and the envelope's `Content href` naming the second part.
fn structure_problems(headers: &HeaderMap, content_type: &str, body: &[u8]) -> Vec<String> {
    let mut problems = Vec::new();
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{OUT_USER}:{OUT_PASSWORD}"))
    );
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(expected.as_str())
    {
        problems.push("no or wrong Basic credentials".into());
    }
    if !headers.contains_key("soapaction") {
        problems.push("no SOAPAction header".into());
    }
    let ct = ContentType::parse(content_type);
    if ct.media_type != "multipart/related" {
        problems.push(format!(
            "Content-Type {content_type:?} is not multipart/related"
        ));
        return problems;
    }
    if ct.param("type") != Some("text/xml") {
        problems.push("multipart/related without type=\"text/xml\"".into());
    }
    let parts = match mime::parse_multipart(content_type, body) {
        Ok(parts) => parts,
        Err(error) => {
            problems.push(format!("MIME: {error}"));
            return problems;
        }
    };
    if parts.len() != 2 {
        problems.push(format!("{} parts, not SOAP + content", parts.len()));
    }
    let soap = &parts[0];
    if soap.media_type() != "text/xml" {
        problems.push(format!("first part is {}, not text/xml", soap.media_type()));
    }
    let start = ct.param("start").map(mime::strip_angles);
    if start.is_none() || start != soap.content_id() {
        problems.push("start does not name the first part".into());
    }
    let text = String::from_utf8_lossy(&soap.body);
    if !text.contains("http://schemas.xmlsoap.org/soap/envelope/") || !text.contains(":Envelope") {
        problems.push("the first part is not a SOAP 1.1 envelope".into());
    }
    if let Some(content) = parts.get(1) {
        let cid = content.content_id().unwrap_or_default();
        if !text.contains(&format!("href=\"cid:{cid}\"")) {
            problems.push(format!(
                "Content href does not name the content part {cid:?}"
            ));
        }
    }
    problems
}
