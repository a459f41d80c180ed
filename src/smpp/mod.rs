//! The `smpp` connector (spec section 7): SMS to an SMSC over SMPP 3.4 or
//! 5.0, receipts and messages from phones back.
//!
//! The delivery worker hands a message of a carrier whose connector is
//! `smpp` to [`Connector::hand`] (moving it to the `smpp` stage) and goes
//! on; it never waits for the SMSC. Each `[[smpp]]` bind holds `binds`
//! connections ([`session`]) that take jobs from their carrier's queue and
//! submit every segment not accepted yet. What comes back goes to one
//! recorder task, which writes it to the store in batches and moves the
//! transaction on with the worker's own steps:
//!
//! - every segment accepted: `SENT` (history `SMS Sent`), stage `await`;
//!   `COMPLETE` once every segment's receipt says delivered (at once when
//!   no receipts are asked for); `FAILED 600` on a final receipt that is
//!   not delivered (UNDELIV, REJECTD, EXPIRED, …). A receipt that comes
//!   before the id it names was recorded is kept in the store and applied
//!   when the id is.
//! - command status 0x0000000B (invalid destination address): the SMSC
//!   refuses the number itself, taken as barred: `FAILED 604`, and the
//!   number joins the carrier's blacklist.
//! - 0x00000058 (throttled) and 0x00000014 (message queue full): the
//!   connection halves its rate for a while, and the message is retried.
//! - 0x00000008 (system error), 0x00000045 (submit failed), 0x00000064,
//!   response timeouts and connections lost with the submit unanswered:
//!   retried with back-off and jitter (history `Retry Scheduled`) until the
//!   validity period ends, then `FAILED 601`.
//! - any other status is permanent: `FAILED 600` at once, the status in
//!   the reason.
//!
//! A retry sends only the segments the SMSC has not accepted, so nothing it
//! acknowledged is submitted twice. A job lost with the process is found
//! again by the worker when its `smpp` lease ends.

pub mod client;
pub mod pdu;
pub mod receipt;
pub mod session;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::api::error::Code;
use crate::app::App;
use crate::cluster::Lease;
use crate::config::SmppBind;
use crate::delivery::{after_commit, fail};
use crate::store::delivery::{Due, Step};
use crate::store::now_ms;
use crate::store::smpp::{AcceptedSegment, ReceiptRow, SegmentState};

/// How long the worker leaves a message with the connector before it
/// looks at it again (it is handed again only if the connector lost it).
pub const LEASE_MS: i64 = 60_000;
/// The first retry delay after a temporary error; doubles per attempt.
const FIRST_RETRY_MS: i64 = 500;
const MAX_RETRY_MS: i64 = 300_000;
/// Reports the recorder writes in one commit at most.
const BATCH: usize = 512;

/// A message handed to a bind.
#[derive(Debug, Clone)]
pub struct Job {
    pub transaction_id: i64,
    /// Times the worker claimed it (spaces the retries out). On the first,
    /// no segment can have been accepted yet.
    pub attempts: i64,
    pub expires_ms: i64,
    pub sender: String,
    pub recipient: String,
    pub body: String,
}

/// Why a segment (or a whole job) was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Throttled or queue full (the status): retry, slower.
    Throttled(u32),
    /// Retry later.
    Temporary(String),
    /// The SMSC refused the number: 604 and barred.
    Barred(u32),
    /// Refused for good: 600.
    Permanent(String),
    /// The validity period ended before submission: 601.
    Expired,
    /// The transaction is no longer queued (ended meanwhile).
    Gone,
}

impl Failure {
    /// Classifies a `submit_sm` error (see the module doc): an answer by
    /// its status; no answer (timeout, connection lost) is temporary.
    pub fn of(error: &client::Error) -> Failure {
        match error {
            client::Error::Status(status) => Failure::of_status(*status),
            client::Error::Invalid(_) => Failure::Permanent(error.to_string()),
            other => Failure::Temporary(other.to_string()),
        }
    }

    pub fn of_status(status: u32) -> Failure {
        match status {
            0x58 | 0x14 => Failure::Throttled(status),
            0x08 | 0x45 | 0x64 => {
                Failure::Temporary(format!("SMSC answered command status 0x{status:08X}"))
            }
            0x0B => Failure::Barred(status),
            _ => Failure::Permanent(format!(
                "SMSC refused the message: command status 0x{status:08X}"
            )),
        }
    }
}

/// One segment's answer: `Ok(Some(id))` accepted now, `Ok(None)` accepted
/// before.
#[derive(Debug, Clone)]
pub struct SegmentResult {
    pub segment: i64,
    pub total: i64,
    pub outcome: Result<Option<String>, Failure>,
}

/// What a connection tells the recorder.
#[derive(Debug)]
pub enum Report {
    /// A job is over: every segment answered, or the job failed whole.
    Done {
        job: Job,
        results: Result<Vec<SegmentResult>, Failure>,
        /// Receipts were asked for.
        receipts: bool,
    },
    /// A final receipt, answered to the SMSC once it is written.
    Receipt {
        receipt: receipt::Receipt,
        answer: Answer,
    },
}

/// The answer a `deliver_sm` is owed: success once what it carried is
/// stored, an error otherwise (the SMSC then delivers it again). Given by
/// whoever stores it, so no task waits per receipt: a flood of receipts
/// while the store is busy queues as reports, not as waiting tasks.
/// Dropped without being given, it answers with an error.
pub struct Answer {
    owed: Option<(client::Client, u32)>,
}

impl Answer {
    pub(crate) fn new(client: client::Client, sequence: u32) -> Answer {
        Answer {
            owed: Some((client, sequence)),
        }
    }

    /// Answers success when `stored`, an error otherwise.
    pub fn give(mut self, stored: bool) {
        self.send(stored);
    }

    fn send(&mut self, stored: bool) {
        let Some((client, sequence)) = self.owed.take() else {
            return;
        };
        let status = if stored {
            rusmpp::CommandStatus::EsmeRok
        } else {
            rusmpp::CommandStatus::EsmeRsyserr
        };
        session::answer_deliver_sm(&client, sequence, status);
    }
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer")
            .field(
                "sequence",
                &self.owed.as_ref().map(|(_, sequence)| sequence),
            )
            .finish()
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        self.send(false);
    }
}

/// The connector's handle, held by [`App`].
pub struct Connector {
    binds: Vec<SmppBind>,
    queues: HashMap<i64, mpsc::UnboundedSender<Job>>,
    receivers: Mutex<HashMap<i64, session::Queue>>,
    /// Transactions handed and not reported yet.
    held: Mutex<Held>,
    /// Per carrier, how many of its connections are bound right now.
    bound: Mutex<HashMap<i64, usize>>,
    /// Per carrier, how many of its connections this node holds the lease
    /// of (see [`crate::cluster`]).
    serving: Mutex<HashMap<i64, usize>>,
}

impl Connector {
    /// One job queue per carrier that has a bind.
    pub fn new(binds: &[SmppBind]) -> Connector {
        let mut queues = HashMap::new();
        let mut receivers = HashMap::new();
        for bind in binds {
            if queues.contains_key(&bind.carrier_id) {
                continue;
            }
            let (tx, rx) = mpsc::unbounded_channel();
            queues.insert(bind.carrier_id, tx);
            receivers.insert(bind.carrier_id, Arc::new(tokio::sync::Mutex::new(rx)));
        }
        Connector {
            binds: binds.to_vec(),
            queues,
            receivers: Mutex::new(receivers),
            held: Mutex::new(Held::default()),
            bound: Mutex::new(HashMap::new()),
            serving: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `[[smpp]]` binds are configured for the carrier.
    pub fn configured(&self, carrier_id: i64) -> bool {
        self.queues.contains_key(&carrier_id)
    }

    /// Whether this node holds a connection of the carrier: only then are
    /// its messages handed here (another node holds them otherwise).
    pub fn serves(&self, carrier_id: i64) -> bool {
        self.serving
            .lock()
            .expect("serving lock")
            .get(&carrier_id)
            .is_some_and(|n| *n > 0)
    }

    /// The carriers with binds configured whose connections are all held by
    /// other nodes: this node's claims leave their messages alone.
    pub fn served_elsewhere(&self) -> Vec<i64> {
        let serving = self.serving.lock().expect("serving lock");
        let mut carriers: Vec<i64> = self
            .queues
            .keys()
            .filter(|carrier| serving.get(carrier).is_none_or(|n| *n == 0))
            .copied()
            .collect();
        carriers.sort_unstable();
        carriers
    }

    /// A connection of `carrier_id` took (`true`) or gave up its lease.
    pub(crate) fn set_serving(&self, carrier_id: i64, held: bool) {
        count_connection(&self.serving, carrier_id, held);
    }

    /// Hands a message to its carrier's binds; false when none is configured.
    pub fn hand(&self, carrier_id: i64, job: Job) -> bool {
        let Some(queue) = self.queues.get(&carrier_id) else {
            return false;
        };
        let mut held = self.held.lock().expect("held lock");
        if held
            .carrier_of
            .insert(job.transaction_id, carrier_id)
            .is_none()
        {
            *held.per_carrier.entry(carrier_id).or_default() += 1;
        }
        drop(held);
        queue.send(job).is_ok()
    }

    /// Whether a handed message is still with the connector.
    pub fn holds(&self, transaction_id: i64) -> bool {
        self.held
            .lock()
            .expect("held lock")
            .carrier_of
            .contains_key(&transaction_id)
    }

    /// Whether a bound carrier holds [`HELD_MAX`] messages already: the
    /// delivery worker then claims nothing until it has taken half of them
    /// (see [`Connector::release`]). Without that, a backlog of a million
    /// messages would all be claimed and queued in memory here, and
    /// claimed again each time their lease ended before their turn came.
    /// A carrier whose binds are all down does not hold the others back.
    pub fn backlogged(&self) -> bool {
        let held = self.held.lock().expect("held lock");
        let bound = self.bound.lock().expect("bound lock");
        held.per_carrier.iter().any(|(carrier, count)| {
            *count >= HELD_MAX && bound.get(carrier).is_some_and(|n| *n > 0)
        })
    }

    /// Whether every bind of `carrier_id` is down while it holds
    /// [`HELD_MAX`] messages already, counting the `handing` ones a claim
    /// has decided to hand it but not handed yet: its further messages
    /// then wait in the store rather than in memory. (Such a carrier does
    /// not pause the worker, see [`Connector::backlogged`]: the other
    /// carriers go on.) `handing` is only asked of a carrier that is down.
    pub fn full_while_down(&self, carrier_id: i64, handing: impl FnOnce() -> usize) -> bool {
        // Asked of every message handed: a bound carrier answers without
        // the lock that every hand-over and report takes.
        let up = self
            .bound
            .lock()
            .expect("bound lock")
            .get(&carrier_id)
            .is_some_and(|n| *n > 0);
        if up {
            return false;
        }
        let held = self
            .held
            .lock()
            .expect("held lock")
            .per_carrier
            .get(&carrier_id)
            .map_or(0, |n| *n);
        held + handing() >= HELD_MAX
    }

    /// A connection of `carrier_id` bound (`true`) or lost its bind.
    pub(crate) fn set_bound(&self, carrier_id: i64, up: bool) {
        count_connection(&self.bound, carrier_id, up);
    }

    /// The message's outcome is known. True when this took its carrier
    /// down to half of [`HELD_MAX`]: the delivery worker may claim again.
    fn release(&self, transaction_id: i64) -> bool {
        let mut held = self.held.lock().expect("held lock");
        let Some(carrier) = held.carrier_of.remove(&transaction_id) else {
            return false;
        };
        let count = held.per_carrier.entry(carrier).or_default();
        *count = count.saturating_sub(1);
        *count == HELD_MAX / 2
    }
}

/// One more (`up`) or one fewer connection of a carrier in `counts`.
fn count_connection(counts: &Mutex<HashMap<i64, usize>>, carrier_id: i64, up: bool) {
    let mut counts = counts.lock().expect("connection counts lock");
    let count = counts.entry(carrier_id).or_default();
    if up {
        *count += 1;
    } else {
        *count = count.saturating_sub(1);
    }
}

/// The most messages one carrier's binds hold (queued here or in their
/// windows) before the delivery worker pauses: a few claim batches, about
/// a second of a fast bind.
pub const HELD_MAX: usize = 5_000;

/// Handed messages, and how many per carrier.
#[derive(Default)]
struct Held {
    carrier_of: HashMap<i64, i64>,
    per_carrier: HashMap<i64, usize>,
}

/// Runs every configured connection and the recorder until `stop` changes;
/// the connections unbind before this returns.
pub async fn run(app: Arc<App>, stop: watch::Receiver<bool>) {
    let binds = app.smpp.binds.clone();
    if binds.is_empty() {
        return;
    }
    let queues = std::mem::take(&mut *app.smpp.receivers.lock().expect("receivers lock"));
    let (reports, inbox) = mpsc::unbounded_channel();
    let mut tasks = tokio::task::JoinSet::new();
    // Each connection is one node's at a time, by a lease named after its
    // carrier and its number among that carrier's connections.
    let mut numbered: HashMap<i64, usize> = HashMap::new();
    for bind in binds {
        let Some(queue) = queues.get(&bind.carrier_id).cloned() else {
            continue;
        };
        for _ in 0..bind.binds.max(1) {
            let number = numbered.entry(bind.carrier_id).or_default();
            let lease = Lease::new(app.clone(), format!("smpp:{}:{number}", bind.carrier_id));
            *number += 1;
            tasks.spawn(session::run(
                app.clone(),
                bind.clone(),
                lease,
                queue.clone(),
                reports.clone(),
                stop.clone(),
            ));
        }
    }
    drop(reports);
    // A crash between storing a receipt and ending its transaction leaves
    // the transaction waiting for a receipt it already has: end those first.
    match app.store.smpp_receipted_waiting().await {
        Ok(ids) => {
            if let Err(error) = settle(&app, Vec::new(), Vec::new(), HashMap::new(), ids).await {
                tracing::warn!(error = %format!("{error:#}"), "settling receipted messages failed");
            }
        }
        Err(error) => tracing::warn!(%error, "cannot read receipted messages"),
    }
    let recorder = tokio::spawn(record(app.clone(), inbox));
    while tasks.join_next().await.is_some() {}
    // Every sender is gone once the connections are: the recorder drains
    // what is left and ends.
    let _ = recorder.await;
}

/// Writes what the connections report, in batches.
async fn record(app: Arc<App>, mut inbox: mpsc::UnboundedReceiver<Report>) {
    let mut batch = Vec::with_capacity(BATCH);
    while inbox.recv_many(&mut batch, BATCH).await > 0 {
        let pending = std::mem::take(&mut batch);
        // Released before the outcome is written: once it is, the worker
        // may hand the message again at once (a retry due now), and must
        // find it not held. Should the write fail, the `smpp` lease ends and
        // the worker hands it again, finding it not held either.
        for report in &pending {
            if let Report::Done { job, .. } = report
                && app.smpp.release(job.transaction_id)
            {
                app.delivery_wake.notify_one();
            }
        }
        let mut tries = 0;
        let stored = loop {
            match record_batch(&app, &pending).await {
                Ok(()) => break true,
                Err(error) if tries < 5 => {
                    tries += 1;
                    tracing::warn!(error = %format!("{error:#}"), "recording SMPP results failed, retrying");
                    tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                }
                Err(error) => {
                    tracing::error!(error = %format!("{error:#}"), "recording SMPP results failed");
                    break false;
                }
            }
        };
        answer_receipts(pending, stored);
    }
}

/// Tells the connections whether their receipts are stored: they answer
/// the SMSC with success, or with an error so that it delivers them again.
fn answer_receipts(reports: Vec<Report>, ok: bool) {
    for report in reports {
        if let Report::Receipt { answer, .. } = report {
            answer.give(ok);
        }
    }
}

async fn record_batch(app: &App, reports: &[Report]) -> anyhow::Result<()> {
    let mut accepted = Vec::new();
    let mut receipts = Vec::new();
    let mut done = HashMap::new();
    for report in reports {
        match report {
            Report::Done {
                job,
                results,
                receipts,
            } => {
                for result in results.iter().flatten() {
                    if let Ok(Some(id)) = &result.outcome {
                        accepted.push(AcceptedSegment {
                            transaction_id: job.transaction_id,
                            segment: result.segment,
                            total: result.total,
                            message_id: receipt::normalise_id(id),
                        });
                    }
                }
                done.insert(job.transaction_id, (results.clone(), *receipts));
            }
            Report::Receipt { receipt, .. } => receipts.push(ReceiptRow {
                key: receipt.message_id.clone(),
                candidates: receipt::candidates(&receipt.message_id),
                stat: receipt.stat.clone(),
                delivered: receipt.outcome == receipt::Outcome::Delivered,
                err: receipt.err.clone(),
            }),
        }
    }
    settle(app, accepted, receipts, done, Vec::new()).await
}

/// How a job's submission went, and whether it asked for receipts.
type Submitted = (Result<Vec<SegmentResult>, Failure>, bool);

/// Records the segments and receipts, and moves on each transaction they
/// touched, each in `done` and each of `also` from what its segments now
/// say (those in `done` also from how their submission went): one commit
/// on SQLite.
async fn settle(
    app: &App,
    accepted: Vec<AcceptedSegment>,
    receipts: Vec<ReceiptRow>,
    done: HashMap<i64, Submitted>,
    mut also: Vec<i64>,
) -> anyhow::Result<()> {
    let now = now_ms();
    also.extend(done.keys());
    let applied = app
        .store
        .smpp_settle(accepted, receipts, also, move |due, segments| {
            match done.get(&due.transaction_id) {
                Some((results, receipts)) if due.stage == "smpp" => {
                    Some(after_submit(due, results, *receipts, segments, now))
                }
                _ => conclude(due, segments, true),
            }
        })
        .await?;
    if !applied.is_empty() {
        after_commit(app, &app.carrier_table(), &applied);
    }
    Ok(())
}

/// The step after a job's segments were answered.
fn after_submit(
    due: &Due,
    results: &Result<Vec<SegmentResult>, Failure>,
    receipts: bool,
    segments: &[SegmentState],
    now: i64,
) -> Step {
    let failures: Vec<&Failure> = match results {
        Err(failure) => vec![failure],
        Ok(results) => results
            .iter()
            .filter_map(|r| r.outcome.as_ref().err())
            .collect(),
    };
    if let Some(Failure::Barred(status)) = failures.iter().find(|f| matches!(f, Failure::Barred(_)))
    {
        let bar = due.carrier_id.map(|id| (due.recipient.clone(), id));
        let reason = format!("SMSC refused the number as barred: command status 0x{status:08X}");
        return fail(due, Code::Blacklisted, &reason, bar);
    }
    if let Some(Failure::Permanent(reason)) =
        failures.iter().find(|f| matches!(f, Failure::Permanent(_)))
    {
        return fail(due, Code::CarrierFailed, reason, None);
    }
    if failures.contains(&&Failure::Expired) {
        return fail(
            due,
            Code::ServerFailed,
            "the validity period ended before submission",
            None,
        );
    }
    if failures
        .iter()
        .any(|f| matches!(f, Failure::Throttled(_) | Failure::Temporary(_)))
    {
        return retry(due, now);
    }
    if failures.contains(&&Failure::Gone) {
        // Ended meanwhile: leave it (the step will not apply).
        return retry(due, now);
    }
    conclude(due, segments, receipts).unwrap_or_else(|| retry(due, now))
}

/// Back to the worker's queue after a back-off from 500 ms (see
/// [`crate::delivery::retry_after_backoff`]).
fn retry(due: &Due, now: i64) -> Step {
    crate::delivery::retry_after_backoff(due, now, FIRST_RETRY_MS, MAX_RETRY_MS)
}

/// The transaction's step from its segments, if any is due: failed on a
/// failed receipt, complete when all are delivered (or all accepted and
/// no receipts are asked for), sent when all are accepted.
fn conclude(due: &Due, segments: &[SegmentState], receipts: bool) -> Option<Step> {
    let total = segments.first().map_or(0, |s| s.total);
    let accepted = segments.iter().filter(|s| s.accepted).count() as i64;
    let sent_now = due.stage == "smpp" || due.stage == "submit";
    if total == 0 || (sent_now && accepted < total) {
        return None;
    }
    if let Some(failed) = segments.iter().find(|s| s.delivered == Some(false)) {
        let reason = format!("carrier reported {}", failed.receipt);
        return Some(fail(due, Code::CarrierFailed, &reason, None));
    }
    let delivered = segments
        .iter()
        .filter(|s| s.delivered == Some(true))
        .count() as i64;
    let mut events = Vec::new();
    if sent_now {
        events.push("SMS Sent".to_string());
    }
    if delivered == total || !receipts {
        if receipts {
            events.push("Delivery Confirmed".to_string());
        }
        events.push("Transaction Complete".to_string());
        return Some(crate::delivery::complete(due, events));
    }
    if !sent_now {
        return None;
    }
    Some(Step::Advance {
        transaction_id: due.transaction_id,
        from_stage: due.stage.clone(),
        status: Some("SENT"),
        events,
        stage: "await",
        due_ms: due.expires_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(transaction_id: i64) -> Job {
        Job {
            transaction_id,
            attempts: 1,
            expires_ms: 0,
            sender: "21534".into(),
            recipient: "13105550100".into(),
            body: "hello".into(),
        }
    }

    #[test]
    fn a_bound_carrier_holding_its_most_pauses_claims_until_half_is_taken() {
        let bind = |carrier_id| SmppBind {
            carrier_id,
            ..SmppBind::default()
        };
        let connector = Connector::new(&[bind(2), bind(3)]);
        let (bound, down) = (2, 3);
        connector.set_bound(bound, true);
        for id in 0..HELD_MAX as i64 - 1 {
            assert!(connector.hand(bound, job(id)));
        }
        // A message handed again (after its lease) is not counted twice.
        assert!(connector.hand(bound, job(0)));
        assert!(!connector.backlogged());
        assert!(connector.hand(bound, job(HELD_MAX as i64)));
        assert!(connector.backlogged());

        let mut woke = Vec::new();
        for id in 1..=HELD_MAX as i64 / 2 {
            if connector.release(id) {
                woke.push(id);
            }
        }
        assert_eq!(woke, [HELD_MAX as i64 / 2], "one wake, at half");
        assert!(!connector.backlogged());
        assert!(!connector.holds(1));
        assert!(connector.holds(0));

        // Messages of a carrier whose binds are down hold nobody back;
        // once it holds its fill, its further messages wait in the store.
        assert!(!connector.full_while_down(down, || 0));
        assert!(
            connector.full_while_down(down, || HELD_MAX),
            "what a claim is handing it counts"
        );
        for id in 0..HELD_MAX as i64 {
            connector.hand(down, job(1_000_000 + id));
        }
        assert!(!connector.backlogged());
        assert!(connector.full_while_down(down, || 0));
        assert!(
            !connector.full_while_down(bound, || 0),
            "bound, it takes them"
        );
        connector.set_bound(down, true);
        assert!(connector.backlogged());
        assert!(!connector.full_while_down(down, || 0));
    }
}
