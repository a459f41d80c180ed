//! The delivery worker: claims due work from the store, hands messages to
//! their carrier's connector and records what comes back (spec section 7).
//!
//! Each step claims a batch of due deliveries, decides every outcome (no
//! I/O: connectors are handed their messages after the commit), then
//! records the whole batch: status, history, the next stage or the end,
//! and the end's callback and blast counts with it. On SQLite the claim,
//! the decisions and the records are one transaction. Messages of
//! carriers whose connector is `smpp` are handed to [`crate::smpp`], which
//! records their outcome itself (stage `smpp` while it holds them); those
//! of `mm7` carriers go to [`crate::mm7`] alike (stage `mm7`); a carrier
//! configured with another connector fails its messages with 601, saying so.

pub mod blast;
pub mod rate;
pub mod sandbox;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::api::envelope::{Reply, XmlNode};
use crate::api::error::Code;
use crate::app::App;
use crate::domain::carrier::{Carrier, CarrierTable};
use crate::domain::phone::PhoneNumber;
use crate::store::delivery::{Due, Step};
use crate::store::now_ms;
use crate::store::webhook::NewWebhook;

/// How long a claimed delivery stays with its worker before another may
/// take it again (only after a crash mid-step).
const LEASE_MS: i64 = 30_000;

/// How long the worker lets new sends gather after being woken for them.
const WAKE_GATHER: Duration = Duration::from_millis(5);

/// Runs until `stop` changes: a step, then a wait for new work (or the
/// poll interval, for receipts and expiries that come due by themselves).
pub async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let poll = Duration::from_millis(app.config.delivery.poll_millis.max(1));
    loop {
        let handled = match run_once(&app).await {
            Ok(handled) => handled,
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "delivery step failed");
                0
            }
        };
        if *stop.borrow() {
            return;
        }
        // A full batch means more may be due already.
        if handled > 0 && handled as i64 >= app.config.delivery.batch {
            continue;
        }
        tokio::select! {
            _ = app.delivery_wake.notified() => {
                // New sends come in a stream: waiting a moment lets the next
                // step take several commits' worth at once, rather than one
                // step (and its writes) per commit, competing with the sends
                // for the one writer.
                tokio::select! {
                    _ = tokio::time::sleep(WAKE_GATHER) => {}
                    _ = stop.changed() => return,
                }
            }
            _ = tokio::time::sleep(poll) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One step of the worker: handles every delivery due now and returns how
/// many it handled. Tests call this to drain the queue without sleeping.
pub async fn run_once(app: &Arc<App>) -> anyhow::Result<usize> {
    if app.smpp.backlogged() {
        // Woken when the binds have taken half of what they hold.
        return Ok(0);
    }
    let now = now_ms();
    let table = app.carrier_table();
    // Decided where the claim is made (on SQLite's thread, inside the
    // claim's transaction): deciding is brief and does no I/O.
    let deciding = (app.clone(), table.clone());
    let stepped = app
        .store
        .step_deliveries(
            now,
            LEASE_MS,
            app.config.delivery.batch.max(1),
            &app.smpp.served_elsewhere(),
            move |claimed| {
                let (app, table) = deciding;
                let mut hands = Vec::new();
                let steps = claimed
                    .iter()
                    .map(|due| decide(&app, &table, due, now, &mut hands))
                    .collect();
                (steps, hands)
            },
        )
        .await?;
    after_commit(app, &table, &stepped.applied);
    let moved: HashSet<i64> = stepped.applied.iter().map(|s| s.transaction_id()).collect();
    for hand in stepped.beside {
        hand.give(app, &moved);
    }
    Ok(stepped.claimed)
}

/// A message for a connector, given once the step that moves it to the
/// connector's stage is committed. Given before, the connector's report
/// could be written first, find the message still in its old stage, and
/// be dropped (the message then waits out the connector's lease).
enum Hand {
    Smpp(i64, crate::smpp::Job),
    Mm7(crate::mm7::Job),
}

impl Hand {
    /// Gives the message to its connector if its step was applied (a step
    /// not applied left the message to whoever moved it meanwhile).
    fn give(self, app: &App, moved: &HashSet<i64>) {
        match self {
            Hand::Smpp(carrier_id, job) if moved.contains(&job.transaction_id) => {
                app.smpp.hand(carrier_id, job);
            }
            Hand::Mm7(job) if moved.contains(&job.transaction_id) => {
                app.mm7.hand(job);
            }
            _ => {}
        }
    }
}

/// What is told to others once a step is committed.
pub(crate) fn after_commit(app: &App, table: &CarrierTable, applied: &[Step]) {
    let mut webhooks = false;
    let mut blasts = false;
    for step in applied {
        if let Step::Finish {
            webhook,
            blast_id,
            bar,
            ..
        } = step
        {
            webhooks |= webhook.is_some();
            blasts |= blast_id.is_some();
            if let Some((number, carrier_id)) = bar {
                table.bar(&PhoneNumber::from_e164_digits(number), *carrier_id);
            }
        }
    }
    if webhooks {
        app.webhook_wake.notify_one();
    }
    if blasts {
        app.blast_wake.notify_one();
    }
}

/// The outcome for one claimed delivery.
fn decide(app: &App, table: &CarrierTable, due: &Due, now: i64, hands: &mut Vec<Hand>) -> Step {
    match due.stage.as_str() {
        "submit" => match app
            .rates
            .take(due.client_id, due.campaign_id, Instant::now())
        {
            Ok(()) => submit(app, table, due, now, hands),
            // Over a rate limit: back in the queue until its slot, nothing recorded.
            Err(wait) => Step::wait(due, "submit", now + wait.as_millis() as i64 + 1),
        },
        "receipt" => receipt(due),
        "smpp" | "mm7" => lease_ended(app, table, due, now, hands),
        "held" => fail(
            due,
            Code::ServerFailed,
            "opt-in not confirmed before the validity period ended",
            None,
        ),
        "await" => fail(
            due,
            Code::ServerFailed,
            "no delivery receipt before the validity period ended",
            None,
        ),
        other => fail(
            due,
            Code::ServerFailed,
            &format!("unknown delivery stage {other:?}"),
            None,
        ),
    }
}

/// Hands a queued message to its carrier's connector.
fn submit(app: &App, table: &CarrierTable, due: &Due, now: i64, hands: &mut Vec<Hand>) -> Step {
    if now >= due.expires_ms {
        return fail(
            due,
            Code::ServerFailed,
            "the validity period ended before submission",
            None,
        );
    }
    let number = PhoneNumber::from_e164_digits(&due.recipient);
    let carrier = match due.carrier_id {
        Some(id) => table.carrier(id),
        None => table.resolve(&number),
    };
    let Some(carrier) = carrier else {
        return fail(
            due,
            Code::ServerFailed,
            "the carrier is no longer configured",
            None,
        );
    };
    if carrier.connector == "smpp" {
        return to_smpp(app, &carrier, due, now, hands);
    }
    if carrier.connector == "mm7" {
        return to_mm7(app, &carrier, due, now, hands);
    }
    if !carrier.is_sandbox() {
        let reason = format!(
            "carrier {} uses connector {:?}, which this build does not include",
            carrier.name, carrier.connector
        );
        return fail(due, Code::ServerFailed, &reason, None);
    }
    let sent = if due.kind == "mms" {
        "MMS Sent"
    } else {
        "SMS Sent"
    };
    let (stage, due_ms) = match sandbox::submit(&number, now, app.config.sandbox.receipt_millis) {
        sandbox::Accepted::ReceiptAt(at) => ("receipt", at),
        sandbox::Accepted::NeverAcknowledged => ("await", due.expires_ms),
    };
    Step::Advance {
        transaction_id: due.transaction_id,
        from_stage: due.stage.clone(),
        status: Some("SENT"),
        events: vec![sent.to_string()],
        stage,
        due_ms,
    }
}

/// Hands a message to the SMPP connector, which records what becomes of it.
/// How long a message waits for the node holding its carrier's bind.
const NOT_SERVED_WAIT_MS: i64 = 1_000;

fn to_smpp(app: &App, carrier: &Carrier, due: &Due, now: i64, hands: &mut Vec<Hand>) -> Step {
    let job = crate::smpp::Job {
        transaction_id: due.transaction_id,
        attempts: due.attempts,
        expires_ms: due.expires_ms,
        sender: due.sender.clone(),
        recipient: due.recipient.clone(),
        body: due.body.clone(),
    };
    if !app.smpp.configured(carrier.id) {
        let reason = format!(
            "carrier {} uses connector \"smpp\", but no [[smpp]] bind serves it",
            carrier.name
        );
        return fail(due, Code::ServerFailed, &reason, None);
    }
    if !app.smpp.serves(carrier.id) {
        // Another node holds this carrier's binds (claims leave such
        // messages alone; this one was claimed as its carrier changed, or
        // while this node's lease was being taken): it waits for the holder.
        return Step::wait(due, "submit", now + NOT_SERVED_WAIT_MS);
    }
    // The messages this claim hands the carrier count too: held only
    // once the claim commits, they would let one claim overfill it.
    let handing = || {
        hands
            .iter()
            .filter(|hand| matches!(hand, Hand::Smpp(id, _) if *id == carrier.id))
            .count()
    };
    if app.smpp.full_while_down(carrier.id, handing) {
        // Every bind is down and the connector holds its fill: the message
        // waits here, not in memory, so an outage with a large backlog
        // does not move the backlog into the process. The wait doubles
        // with each claim (the claim counts it), so a short drop costs a
        // second and a long outage a claim a minute per message.
        let wait = doubled_ms(DOWN_FIRST_WAIT_MS, due.attempts, DOWN_MAX_WAIT_MS);
        return Step::wait(due, "submit", now + wait);
    }
    hands.push(Hand::Smpp(carrier.id, job));
    Step::wait(due, "smpp", now + crate::smpp::LEASE_MS)
}

/// How long a message waits for a carrier whose binds are all down: 1 s,
/// doubling with each claim, up to a minute.
const DOWN_FIRST_WAIT_MS: i64 = 1_000;
const DOWN_MAX_WAIT_MS: i64 = 60_000;

/// Hands a message to the MM7 connector, which records what becomes of it.
fn to_mm7(app: &App, carrier: &Carrier, due: &Due, now: i64, hands: &mut Vec<Hand>) -> Step {
    let job = crate::mm7::Job {
        transaction_id: due.transaction_id,
        carrier_id: carrier.id,
    };
    if !app.mm7.serves(carrier.id) {
        let reason = format!(
            "carrier {} uses connector \"mm7\", but no [[mm7]] entry serves it",
            carrier.name
        );
        return fail(due, Code::ServerFailed, &reason, None);
    }
    hands.push(Hand::Mm7(job));
    Step::wait(due, "mm7", now + crate::mm7::LEASE_MS)
}

/// A message has been with a connector (`smpp` or `mm7`, its stage) for a
/// whole lease: still held (a bind is down, a peer slow) it stays; lost
/// (the process restarted) it is handed again (over SMPP only its
/// unaccepted segments are sent).
fn lease_ended(
    app: &App,
    table: &CarrierTable,
    due: &Due,
    now: i64,
    hands: &mut Vec<Hand>,
) -> Step {
    let (stage, lease_ms, held, peer) = if due.stage == "mm7" {
        let held = app.mm7.holds(due.transaction_id);
        ("mm7", crate::mm7::LEASE_MS, held, "MMSC")
    } else {
        let held = app.smpp.holds(due.transaction_id);
        ("smpp", crate::smpp::LEASE_MS, held, "SMSC")
    };
    if now >= due.expires_ms + lease_ms {
        let reason =
            format!("the {peer} did not take the message before the validity period ended");
        return fail(due, Code::ServerFailed, &reason, None);
    }
    if held {
        return Step::wait(due, stage, now + lease_ms);
    }
    submit(app, table, due, now, hands)
}

/// `first_ms` for the first attempt, doubled with each one after it, at
/// most `max_ms`.
fn doubled_ms(first_ms: i64, attempts: i64, max_ms: i64) -> i64 {
    first_ms
        .saturating_mul(1 << attempts.clamp(1, 20).saturating_sub(1))
        .min(max_ms)
}

/// Back to the worker's queue after a temporary error: an exponential
/// back-off from `first_ms` (doubling per attempt, at most `max_ms`) with
/// jitter, no later than the end of the validity period (when the worker
/// fails it 601).
pub(crate) fn retry_after_backoff(due: &Due, now: i64, first_ms: i64, max_ms: i64) -> Step {
    let delay = doubled_ms(first_ms, due.attempts, max_ms);
    let jitter = rand::random_range(0..=delay / 2);
    Step::Advance {
        transaction_id: due.transaction_id,
        from_stage: due.stage.clone(),
        status: None,
        events: vec!["Retry Scheduled".to_string()],
        stage: "submit",
        due_ms: (now + delay / 2 + jitter).min(due.expires_ms),
    }
}

/// Ends a transaction as COMPLETE with these history events.
pub(crate) fn complete(due: &Due, events: Vec<String>) -> Step {
    Step::Finish {
        transaction_id: due.transaction_id,
        from_stage: due.stage.clone(),
        status: "COMPLETE",
        code: 1,
        events,
        webhook: callback(due, Code::Success, "Transaction Complete"),
        blast_id: due.blast_id,
        bar: None,
    }
}

/// The sandbox's receipt for a message it accepted.
fn receipt(due: &Due) -> Step {
    let number = PhoneNumber::from_e164_digits(&due.recipient);
    match sandbox::receipt(&number) {
        sandbox::Receipt::Delivered => Step::Finish {
            transaction_id: due.transaction_id,
            from_stage: due.stage.clone(),
            status: "COMPLETE",
            code: 1,
            events: vec![
                "Delivery Confirmed".to_string(),
                "Transaction Complete".to_string(),
            ],
            webhook: callback(due, Code::Success, "Transaction Complete"),
            blast_id: due.blast_id,
            bar: None,
        },
        sandbox::Receipt::Undeliverable => {
            fail(due, Code::CarrierFailed, "carrier reported UNDELIV", None)
        }
        sandbox::Receipt::Barred => {
            let bar = due.carrier_id.map(|id| (due.recipient.clone(), id));
            fail(
                due,
                Code::Blacklisted,
                "carrier reported the number barred",
                bar,
            )
        }
    }
}

/// Ends a transaction as FAILED with `code`.
pub(crate) fn fail(due: &Due, code: Code, reason: &str, bar: Option<(String, i64)>) -> Step {
    Step::Finish {
        transaction_id: due.transaction_id,
        from_stage: due.stage.clone(),
        status: "FAILED",
        code: i64::from(code.number()),
        events: vec![format!(
            "Transaction Terminated ({}): {reason}",
            code.number()
        )],
        webhook: callback(due, code, &format!("Transaction terminated: {reason}")),
        blast_id: due.blast_id,
        bar,
    }
}

/// The transaction-end callback of spec section 6.2, when the send gave a
/// `callback`: always XML, `udp_*` values echoed.
fn callback(due: &Due, code: Code, message: &str) -> Option<NewWebhook> {
    if due.callback.is_empty() {
        return None;
    }
    let mut reply = Reply::success(message);
    reply.code = code;
    reply = reply
        .xml(XmlNode::new("message_id").text(due.transaction_id))
        .xml(XmlNode::new("hash").text(&due.hash))
        .xml(XmlNode::new("campaign_id").text(due.campaign_id))
        .xml(XmlNode::new("to").cdata(due.recipient.clone()));
    let udp: Vec<(String, String)> = serde_json::from_str(&due.udp).unwrap_or_default();
    for (name, value) in udp {
        reply = reply.xml(XmlNode::new("udp").attr("name", name).cdata(value));
    }
    Some(NewWebhook {
        client_id: due.client_id,
        url: due.callback.clone(),
        content_type: "application/xml",
        body: reply.to_xml(),
    })
}
