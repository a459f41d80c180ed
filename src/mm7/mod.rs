//! The `mm7` connector (spec section 7): MMS to an MMSC over MM7 (3GPP TS
//! 23.140: SOAP 1.1 over HTTP POST, `multipart/related` with the SOAP part
//! first and the content after, HTTP Basic auth, VASP and VAS ids).
//!
//! The delivery worker hands a message of a carrier whose connector is
//! `mm7` to [`Connector::hand`] (stage `mm7`) and goes on. [`run`] submits
//! each one (`MM7_submit.REQ`), an image over the carrier's size limit
//! scaled down first ([`crate::media::fit`]), and records the answer:
//!
//! - status 1xxx: `SENT` (history `MMS Sent`), stage `await` until the
//!   MMSC's delivery report ([`server`]): `Retrieved` or `Forwarded` is
//!   `COMPLETE`; `Expired`, `Rejected` or `Unrecognised` is `FAILED 600`.
//!   Without delivery reports (`delivery_report = false`) it is
//!   `COMPLETE` at once.
//! - status 3000, 3001 or 4006, HTTP 408, 429 or 5xx without an MM7
//!   status, and network errors or timeouts: retried with back-off
//!   (`Retry Scheduled`) until the validity period ends (then `601`).
//! - any other status or HTTP answer: `FAILED 600`, the status in the reason.
//! - media the carrier cannot take (audio or video over its limit, an image
//!   that cannot be fitted): `FAILED 607`.
//!
//! A message lost with the process is handed again when its `mm7` lease
//! ends.

pub mod envelope;
pub mod links;
pub mod mime;
pub mod server;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, watch};

use self::envelope::{Address, Submit, Version};
use self::mime::Part;
use crate::api::error::Code;
use crate::app::App;
use crate::delivery::{after_commit, complete, fail};
use crate::domain::carrier::Carrier;
use crate::store::delivery::{Due, Step};
use crate::store::now_ms;

/// How long the worker leaves a message with the connector before it
/// looks at it again (handed again only if the connector lost it).
pub const LEASE_MS: i64 = 120_000;
/// The first retry delay after a temporary error; doubles per attempt.
const FIRST_RETRY_MS: i64 = 1_000;
const MAX_RETRY_MS: i64 = 300_000;
/// Submissions in flight at once, over every MMSC.
const CONCURRENT: usize = 16;
/// Fitted images kept in memory, by (content_id, size limit): a blast sends
/// one image to many numbers, and fitting costs far more than keeping.
const FITTED_KEPT: usize = 32;

/// An image fitted to a limit, or why it cannot be.
type FittedImage = Result<Arc<(Vec<u8>, &'static str)>, String>;
/// One fitting, shared by whoever asks for it while it runs.
type FittingOnce = Arc<tokio::sync::OnceCell<FittedImage>>;

/// One `[[mm7]]` entry: the MMSC of a carrier whose connector is `mm7`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Mm7Endpoint {
    /// The carrier (as in the carrier table) whose messages go here.
    pub carrier_id: i64,
    /// The MMSC's MM7 URL.
    pub url: String,
    /// HTTP Basic credentials we present to the MMSC.
    pub username: String,
    pub password: String,
    pub vasp_id: String,
    pub vas_id: String,
    pub service_code: String,
    /// The schema version written (see [`envelope::VERSIONS`]).
    pub version: String,
    pub timeout_secs: u64,
    /// Ask for delivery reports.
    pub delivery_report: bool,
    /// HTTP Basic credentials the MMSC presents on `POST /mm7/<carrier_id>`;
    /// empty: that endpoint refuses every request.
    pub inbound_username: String,
    pub inbound_password: String,
}

impl Default for Mm7Endpoint {
    fn default() -> Mm7Endpoint {
        Mm7Endpoint {
            carrier_id: 0,
            url: String::new(),
            username: String::new(),
            password: String::new(),
            vasp_id: String::new(),
            vas_id: String::new(),
            service_code: String::new(),
            version: "REL-5-MM7-1-2".into(),
            timeout_secs: 30,
            delivery_report: true,
            inbound_username: String::new(),
            inbound_password: String::new(),
        }
    }
}

impl Mm7Endpoint {
    /// Values a typo would otherwise turn into failures at send time.
    pub fn check(&self) -> anyhow::Result<()> {
        Version::parse(&self.version).map_err(anyhow::Error::msg)?;
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            anyhow::bail!(
                "url = {:?}: give the MMSC's MM7 URL, e.g. \"https://mmsc.example.net/mm7\"",
                self.url
            );
        }
        if self.carrier_id < 1 {
            anyhow::bail!("carrier_id must name a carrier (a positive id)");
        }
        if self.timeout_secs == 0 {
            anyhow::bail!("timeout_secs must be at least 1");
        }
        Ok(())
    }

    pub fn version(&self) -> Version {
        Version::parse(&self.version).unwrap_or_default()
    }
}

/// A message handed to the connector.
#[derive(Debug, Clone, Copy)]
pub struct Job {
    pub transaction_id: i64,
    pub carrier_id: i64,
}

/// The connector's handle, held by [`App`].
pub struct Connector {
    endpoints: HashMap<i64, Mm7Endpoint>,
    jobs: mpsc::UnboundedSender<Job>,
    inbox: Mutex<Option<mpsc::UnboundedReceiver<Job>>>,
    /// Transactions handed and not recorded yet.
    held: Mutex<HashSet<i64>>,
    http: reqwest::Client,
    /// Images fitted lately; each is computed once, whoever asks first.
    fitted: Mutex<HashMap<(i64, usize), FittingOnce>>,
}

impl Connector {
    pub fn new(endpoints: &[Mm7Endpoint]) -> anyhow::Result<Connector> {
        let (jobs, inbox) = mpsc::unbounded_channel();
        // The MMSC is the operator's, often on a private network: no
        // address guard here, and no redirects (a SOAP POST must not move).
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Connector {
            endpoints: endpoints
                .iter()
                .map(|e| (e.carrier_id, e.clone()))
                .collect(),
            jobs,
            inbox: Mutex::new(Some(inbox)),
            held: Mutex::new(HashSet::new()),
            http,
            fitted: Mutex::new(HashMap::new()),
        })
    }

    /// The MMSC of a carrier.
    pub fn endpoint(&self, carrier_id: i64) -> Option<&Mm7Endpoint> {
        self.endpoints.get(&carrier_id)
    }

    /// Whether an `[[mm7]]` entry serves the carrier.
    pub fn serves(&self, carrier_id: i64) -> bool {
        self.endpoints.contains_key(&carrier_id)
    }

    /// Hands a message to its carrier's MMSC; false when no `[[mm7]]`
    /// entry names the carrier.
    pub fn hand(&self, job: Job) -> bool {
        if !self.endpoints.contains_key(&job.carrier_id) {
            return false;
        }
        self.held
            .lock()
            .expect("held lock")
            .insert(job.transaction_id);
        self.jobs.send(job).is_ok()
    }

    /// Whether a handed message is still with the connector.
    pub fn holds(&self, transaction_id: i64) -> bool {
        self.held
            .lock()
            .expect("held lock")
            .contains(&transaction_id)
    }

    /// Whether any submission is in flight.
    pub fn busy(&self) -> bool {
        !self.held.lock().expect("held lock").is_empty()
    }

    fn release(&self, transaction_id: i64) {
        self.held.lock().expect("held lock").remove(&transaction_id);
    }
}

/// Submits handed messages until `stop` changes, [`CONCURRENT`] at a time;
/// those in flight finish first.
pub async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let Some(mut inbox) = app.mm7.inbox.lock().expect("inbox lock").take() else {
        return;
    };
    let slots = Arc::new(Semaphore::new(CONCURRENT));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            job = inbox.recv() => {
                let Some(job) = job else { break };
                let Ok(slot) = slots.clone().acquire_owned().await else { break };
                let app = app.clone();
                tasks.spawn(async move {
                    let outcome = attempt(&app, job).await;
                    record(&app, job, outcome).await;
                    drop(slot);
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// What became of one submission.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// The MMSC took it; `message_id` names it in delivery reports.
    Accepted {
        message_id: String,
        reports: bool,
    },
    Temporary(String),
    Permanent(Code, String),
    /// No longer queued (ended meanwhile).
    Gone,
}

/// Loads, fits and submits one message.
async fn attempt(app: &App, job: Job) -> Outcome {
    match try_attempt(app, job).await {
        Ok(outcome) => outcome,
        Err(error) => Outcome::Temporary(format!("{error:#}")),
    }
}

/// Waits until the worker's hand-over (stage `mm7`) is committed: it hands
/// a message before it records doing so, and what the MMSC answers must
/// not be recorded before that. False when the message is no longer queued.
async fn handed_over(app: &App, transaction_id: i64) -> anyhow::Result<bool> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let dues = app.store.smpp_dues(&[transaction_id]).await?;
        match dues.first().map(|d| d.stage.as_str()) {
            Some("mm7") => return Ok(true),
            Some("submit") if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            _ => return Ok(false),
        }
    }
}

async fn try_attempt(app: &App, job: Job) -> anyhow::Result<Outcome> {
    if !handed_over(app, job.transaction_id).await? {
        return Ok(Outcome::Gone);
    }
    let Some(message) = app.store.mm7_message(job.transaction_id).await? else {
        return Ok(Outcome::Gone);
    };
    let Some(endpoint) = app.mm7.endpoint(job.carrier_id).cloned() else {
        return Ok(Outcome::Permanent(
            Code::ServerFailed,
            format!("no [[mm7]] entry serves carrier {}", job.carrier_id),
        ));
    };
    let carrier = app.carrier_table().carrier(job.carrier_id);
    let mut content = Vec::new();
    if !message.body.is_empty() {
        content.push(
            Part::new(
                "text/plain; charset=utf-8",
                message.body.clone().into_bytes(),
            )
            .header("Content-ID", "<text>"),
        );
    }
    if let Some(content_id) = message.content_id {
        match media_part(app, carrier.as_deref(), content_id).await? {
            Ok(part) => content.push(part),
            Err(reason) => return Ok(Outcome::Permanent(Code::InvalidContent, reason)),
        }
    }
    let version = endpoint.version();
    let submit = Submit {
        transaction_id: format!("moms-{}-{}", job.transaction_id, now_ms()),
        vasp_id: endpoint.vasp_id.clone(),
        vas_id: endpoint.vas_id.clone(),
        sender: Address::of_digits(&message.sender),
        recipient: Address::of_digits(&message.recipient),
        service_code: endpoint.service_code.clone(),
        subject: message.subject.clone(),
        delivery_report: endpoint.delivery_report,
        content_id: format!("content-{}@moms", job.transaction_id),
    };
    let (content_type, body) = envelope::submit_request(&version, &submit, &content);
    let mut request = app
        .mm7
        .http
        .post(&endpoint.url)
        .timeout(Duration::from_secs(endpoint.timeout_secs.max(1)))
        .header("Content-Type", content_type)
        .header("SOAPAction", "\"\"")
        .body(body);
    if !endpoint.username.is_empty() {
        request = request.basic_auth(&endpoint.username, Some(&endpoint.password));
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => {
            return Ok(Outcome::Temporary(format!(
                "the MMSC at {} did not answer: {error}",
                endpoint.url
            )));
        }
    };
    let http_status = response.status();
    let answer_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/xml")
        .to_string();
    let answer = match response.bytes().await {
        Ok(bytes) => bytes,
        Err(error) => {
            return Ok(Outcome::Temporary(format!(
                "the MMSC's answer broke off: {error}"
            )));
        }
    };
    Ok(classify(
        http_status.as_u16(),
        envelope::parse_submit_response(&answer_type, &answer),
        endpoint.delivery_report,
    ))
}

/// The outcome from the HTTP status and what its body said.
fn classify(
    http_status: u16,
    answer: Result<envelope::SubmitResponse, envelope::Mm7Error>,
    reports: bool,
) -> Outcome {
    match answer {
        Ok(answer) if answer.status.is_success() => Outcome::Accepted {
            reports: reports && !answer.message_id.is_empty(),
            message_id: answer.message_id,
        },
        Ok(answer) => {
            let reason = format!(
                "MMSC refused the message: status {} {}",
                answer.status.code, answer.status.text
            );
            if answer.status.is_temporary() {
                Outcome::Temporary(reason)
            } else {
                Outcome::Permanent(Code::CarrierFailed, reason)
            }
        }
        Err(error) => {
            let reason =
                format!("MMSC answered HTTP {http_status} without an MM7 status ({error})");
            if matches!(http_status, 408 | 429) || http_status >= 500 {
                Outcome::Temporary(reason)
            } else {
                Outcome::Permanent(Code::CarrierFailed, reason)
            }
        }
    }
}

/// The media part of a message, fitted to the carrier's size limit; the
/// inner `Err` says why the carrier cannot take it (607).
async fn media_part(
    app: &App,
    carrier: Option<&Carrier>,
    content_id: i64,
) -> anyhow::Result<Result<Part, String>> {
    let Some(media) = app.store.media(content_id).await? else {
        return Ok(Err(format!("media {content_id} no longer exists")));
    };
    if media.destroyed {
        return Ok(Err(format!("media {content_id} was deleted")));
    }
    let path = crate::media::storage::media_path(&app.config, media.id);
    let bytes = tokio::fs::read(&path).await?;
    let limit = carrier.and_then(Carrier::mms_limit).unwrap_or(0) as usize;
    let (bytes, mime) = if limit > 0 && bytes.len() > limit {
        if media.kind != "image" {
            return Ok(Err(format!(
                "the {} is {} bytes, over the {limit} bytes the carrier takes in an MMS; audio and video are not shortened or re-encoded",
                media.kind,
                bytes.len()
            )));
        }
        match fitted_image(app, media.id, limit, bytes).await? {
            Ok(fitted) => (fitted.0.clone(), fitted.1.to_string()),
            Err(reason) => return Ok(Err(reason)),
        }
    } else {
        (bytes, media.mime.clone())
    };
    Ok(Ok(Part::new(&mime, bytes)
        .header("Content-ID", &format!("<media-{}>", media.id))
        .header("Content-Location", &location(&media.filename))))
}

/// `original` fitted to `limit`, computed once per (content_id, limit)
/// while it stays among the [`FITTED_KEPT`] kept.
async fn fitted_image(
    app: &App,
    content_id: i64,
    limit: usize,
    original: Vec<u8>,
) -> anyhow::Result<FittedImage> {
    let cell = {
        let mut kept = app.mm7.fitted.lock().expect("fitted lock");
        if kept.len() >= FITTED_KEPT && !kept.contains_key(&(content_id, limit)) {
            // Crude, but blasts send one image at a time.
            kept.clear();
        }
        kept.entry((content_id, limit)).or_default().clone()
    };
    let fitted = cell
        .get_or_try_init(|| async move {
            let fitted =
                tokio::task::spawn_blocking(move || crate::media::fit::fit_image(&original, limit))
                    .await?;
            anyhow::Ok(
                fitted
                    .map(|f| Arc::new((f.bytes, f.mime)))
                    .map_err(|e| e.to_string()),
            )
        })
        .await?;
    Ok(fitted.clone())
}

/// A Content-Location of plain characters.
fn location(filename: &str) -> String {
    let clean: String = filename
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(64)
        .collect();
    if clean.is_empty() {
        "media".into()
    } else {
        clean
    }
}

/// Writes what a submission came to, retrying the write a few times.
async fn record(app: &App, job: Job, outcome: Outcome) {
    let mut tries = 0;
    loop {
        match record_once(app, job, &outcome).await {
            Ok(()) => break,
            Err(error) if tries < 5 => {
                tries += 1;
                tracing::warn!(error = %format!("{error:#}"), "recording an MM7 submission failed, retrying");
                tokio::time::sleep(Duration::from_millis(200 * tries)).await;
            }
            Err(error) => {
                // The `mm7` lease ends and the worker hands it again.
                tracing::error!(error = %format!("{error:#}"), "recording an MM7 submission failed");
                break;
            }
        }
    }
    app.mm7.release(job.transaction_id);
}

async fn record_once(app: &App, job: Job, outcome: &Outcome) -> anyhow::Result<()> {
    let Some(due) = app
        .store
        .smpp_dues(&[job.transaction_id])
        .await?
        .into_iter()
        .next()
    else {
        return Ok(());
    };
    if due.stage != "mm7" {
        return Ok(());
    }
    let sent = sent_event(&due);
    let step = match outcome {
        Outcome::Gone => return Ok(()),
        Outcome::Accepted {
            message_id,
            reports,
        } => {
            if *reports {
                app.store
                    .mm7_submitted(job.carrier_id, message_id, job.transaction_id)
                    .await?;
                Step::Advance {
                    transaction_id: due.transaction_id,
                    from_stage: due.stage.clone(),
                    status: Some("SENT"),
                    events: vec![sent],
                    stage: "await",
                    due_ms: due.expires_ms,
                }
            } else {
                complete(&due, vec![sent, "Transaction Complete".to_string()])
            }
        }
        Outcome::Temporary(reason) => {
            tracing::info!(transaction_id = job.transaction_id, %reason, "MM7 submission will be retried");
            retry(&due, now_ms())
        }
        Outcome::Permanent(code, reason) => fail(&due, *code, reason, None),
    };
    apply(app, vec![step]).await?;
    Ok(())
}

/// `MMS Sent`, or `SMS Sent` for a text-only message.
fn sent_event(due: &Due) -> String {
    if due.kind == "mms" {
        "MMS Sent".into()
    } else {
        "SMS Sent".into()
    }
}

/// Records steps and tells the others; returns how many applied (a step
/// whose delivery left its stage meanwhile does not).
async fn apply(app: &App, steps: Vec<Step>) -> anyhow::Result<usize> {
    let table = app.carrier_table();
    let applied = app.store.record_steps(steps).await?;
    after_commit(app, &table, &applied);
    Ok(applied.len())
}

/// Back to the worker's queue after a back-off from 1000 ms (see
/// [`crate::delivery::retry_after_backoff`]).
fn retry(due: &Due, now: i64) -> Step {
    crate::delivery::retry_after_backoff(due, now, FIRST_RETRY_MS, MAX_RETRY_MS)
}

/// A delivery report's step for the transaction it names: complete on
/// `Retrieved`/`Forwarded`, 600 on `Expired`/`Rejected`/`Unrecognised`,
/// nothing on a report that is not final. A report that overtakes the
/// recording of its submission (stage still `mm7`) says `MMS Sent` too.
pub(crate) fn report_step(due: &Due, report: &envelope::DeliveryReport) -> Option<Step> {
    if due.stage != "await" && due.stage != "mm7" {
        return None;
    }
    let mut events = Vec::new();
    if due.stage == "mm7" {
        events.push(sent_event(due));
    }
    match report.outcome() {
        envelope::MmStatus::Delivered => {
            events.push("Delivery Confirmed".into());
            events.push("Transaction Complete".into());
            Some(complete(due, events))
        }
        envelope::MmStatus::Failed => Some(fail(
            due,
            Code::CarrierFailed,
            &format!("carrier reported {}", report.mm_status),
            None,
        )),
        envelope::MmStatus::Pending => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envelope::{Mm7Error, Status, SubmitResponse};

    fn answered(code: u32) -> Result<SubmitResponse, Mm7Error> {
        Ok(SubmitResponse {
            transaction_id: "t".into(),
            status: Status {
                code,
                text: "x".into(),
            },
            message_id: "m".into(),
        })
    }

    #[test]
    fn answers_are_classified() {
        assert_eq!(
            classify(200, answered(1000), true),
            Outcome::Accepted {
                message_id: "m".into(),
                reports: true
            }
        );
        assert!(matches!(
            classify(500, answered(3000), true),
            Outcome::Temporary(_)
        ));
        assert!(matches!(
            classify(500, answered(4006), true),
            Outcome::Temporary(_)
        ));
        assert!(matches!(
            classify(500, answered(2002), true),
            Outcome::Permanent(Code::CarrierFailed, _)
        ));
        let garbage = Err(Mm7Error::NotSoap);
        assert!(matches!(
            classify(503, garbage.clone(), true),
            Outcome::Temporary(_)
        ));
        assert!(matches!(
            classify(401, garbage, true),
            Outcome::Permanent(..)
        ));
    }

    #[test]
    fn endpoints_are_checked() {
        let good = Mm7Endpoint {
            carrier_id: 3,
            url: "http://mmsc.example/mm7".into(),
            ..Mm7Endpoint::default()
        };
        assert!(good.check().is_ok());
        let bad_version = Mm7Endpoint {
            version: "REL-9".into(),
            ..good.clone()
        };
        assert!(
            bad_version
                .check()
                .unwrap_err()
                .to_string()
                .contains("REL-5-MM7-1-2")
        );
        let bad_url = Mm7Endpoint {
            url: "mmsc.example".into(),
            ..good
        };
        assert!(bad_url.check().unwrap_err().to_string().contains("MM7 URL"));
    }
}
