//! The delivery worker's and the SMPP recorder's steps
//! ([`super::Store::record_steps`]) on the hot paths' SQLite thread, and
//! the reads and claims that lead to them.
//!
//! Through sqlx a batch of steps is eight statements, each handed to the
//! connection's worker thread and back, and each parsed anew (the texts
//! change with the row count). Here the whole batch is one hand-over, and
//! the statements of every step are prepared once and run per row (the
//! rare ones, a bar and a blast's count, are looked up when needed). The rules are those
//! of the sqlx path: a step applies only while its delivery is still in
//! the stage it was claimed in, and only an applied step writes a status,
//! history, a callback, a blast count or a bar.
//!
//! [`apply`] runs inside a transaction its caller holds, so a worker's
//! claim or the recorder's SMPP results commit together with the steps
//! they lead to: one writer turn and one commit instead of two.

use std::collections::{BTreeMap, HashSet};
use std::sync::LazyLock;

use rusqlite::{
    Connection, OptionalExtension, Transaction, TransactionBehavior, named_params, params,
};

use super::delivery::{DUE_COLUMNS, Due, SQLITE_CLAIMABLE, Step};
use super::sqlite_thread::{HISTORY, Table, int, text};

const MOVE_STAGE: &str =
    "UPDATE deliveries SET stage = ?3, due_ms = ?4 WHERE transaction_id = ?1 AND stage = ?2";
/// A stage move of a delivery claimed in the same transaction, counting
/// the claim's attempt (see [`claim`]).
const MOVE_CLAIMED: &str = "UPDATE deliveries SET stage = ?3, due_ms = ?4, attempts = attempts + 1
    WHERE transaction_id = ?1 AND stage = ?2";
const FINISH: &str = "DELETE FROM deliveries WHERE transaction_id = ?1 AND stage = ?2";
const SET_STATUS: &str = "UPDATE transactions SET status = ?2, code = COALESCE(?3, code),
    updated_at = ?4 WHERE id = ?1";
const INSERT_WEBHOOK: &str =
    "INSERT INTO webhooks (client_id, url, content_type, body, due_ms, created_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
const COUNT_BLAST: &str = "UPDATE blasts SET sent = sent + ?2, failed = failed + ?3 WHERE id = ?1";
const BAR: &str = "INSERT INTO blacklist (number, carrier_id, created_at) VALUES (?1, ?2, ?3)
    ON CONFLICT DO NOTHING";

/// Applies `steps` (one per transaction) in one transaction; returns the
/// transactions whose step applied.
pub fn record(
    connection: &mut Connection,
    steps: &[Step],
    now_ms: i64,
) -> rusqlite::Result<HashSet<i64>> {
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let applied = apply(&tx, steps, now_ms, Claimed::Before)?;
    tx.commit()?;
    Ok(applied)
}

/// When the deliveries of steps were claimed.
#[derive(Clone, Copy)]
pub enum Claimed {
    /// Claimed (and their attempt counted) in an earlier commit.
    Before,
    /// Claimed by [`claim`] in the same transaction: a stage move counts
    /// the attempt.
    Now,
}

/// Applies `steps` (one per transaction) within `tx`; returns the
/// transactions whose step applied.
pub fn apply(
    tx: &Transaction<'_>,
    steps: &[Step],
    now_ms: i64,
    claimed: Claimed,
) -> rusqlite::Result<HashSet<i64>> {
    let mut applied = HashSet::with_capacity(steps.len());
    let mut blasts: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    {
        let mut move_stage = tx.prepare_cached(match claimed {
            Claimed::Before => MOVE_STAGE,
            Claimed::Now => MOVE_CLAIMED,
        })?;
        let mut finish = tx.prepare_cached(FINISH)?;
        let mut set_status = tx.prepare_cached(SET_STATUS)?;
        // The steps' events go in multi-row statements, as a send's do.
        let mut history = Table::new(tx, &HISTORY);
        let mut webhooks = tx.prepare_cached(INSERT_WEBHOOK)?;
        for step in steps {
            let id = step.transaction_id();
            let (moved, status, code) = match step {
                Step::Advance {
                    from_stage,
                    stage,
                    due_ms,
                    status,
                    ..
                } => (
                    move_stage.execute(params![id, from_stage, stage, due_ms])?,
                    *status,
                    None,
                ),
                Step::Finish {
                    from_stage,
                    status,
                    code,
                    ..
                } => (
                    finish.execute(params![id, from_stage])?,
                    Some(*status),
                    Some(*code),
                ),
            };
            if moved == 0 {
                continue;
            }
            applied.insert(id);
            if let Some(status) = status {
                set_status.execute(params![id, status, code, now_ms / 1000])?;
            }
            for event in step.events() {
                history.add([int(id), int(now_ms), text(event)])?;
            }
            let Step::Finish {
                code,
                webhook,
                blast_id,
                bar,
                ..
            } = step
            else {
                continue;
            };
            if let Some(hook) = webhook {
                webhooks.execute(params![
                    hook.client_id,
                    hook.url,
                    hook.content_type,
                    hook.body,
                    now_ms,
                    now_ms / 1000
                ])?;
            }
            if let Some(blast_id) = blast_id {
                let (sent, failed) = blasts.entry(*blast_id).or_default();
                *if *code == 1 { sent } else { failed } += 1;
            }
            if let Some((number, carrier_id)) = bar {
                tx.prepare_cached(BAR)?
                    .execute(params![number, carrier_id, now_ms / 1000])?;
            }
        }
        history.finish()?;
        for (blast_id, (sent, failed)) in blasts {
            tx.prepare_cached(COUNT_BLAST)?
                .execute(params![blast_id, sent, failed])?;
        }
    }
    Ok(applied)
}

/// The text of [`due`], made once: it is run once a message per step.
static DUE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT d.stage, d.expires_ms, d.attempts, {DUE_COLUMNS}
         FROM deliveries d JOIN transactions t ON t.id = d.transaction_id
         WHERE d.transaction_id = ?1"
    )
});

/// The delivery of a transaction, if still queued, as the worker would
/// claim it (without claiming it).
pub fn due(tx: &Transaction<'_>, transaction_id: i64) -> rusqlite::Result<Option<Due>> {
    tx.prepare_cached(&DUE)?
        .query_row(params![transaction_id], |row| {
            Ok(Due {
                stage: row.get(0)?,
                expires_ms: row.get(1)?,
                attempts: row.get(2)?,
                transaction_id: row.get(3)?,
                hash: row.get(4)?,
                client_id: row.get(5)?,
                campaign_id: row.get(6)?,
                recipient: row.get(7)?,
                sender: row.get(8)?,
                body: row.get(9)?,
                kind: row.get(10)?,
                carrier_id: row.get(11)?,
                callback: row.get(12)?,
                udp: row.get(13)?,
                blast_id: row.get(14)?,
            })
        })
        .optional()
}

/// Claims up to `limit` deliveries due at `now_ms` within `tx`, chosen as
/// [`super::Store::claim_deliveries`] does on SQLite, in id order, each
/// with the attempt it starts counted.
///
/// Nothing is written: the steps of the same transaction move every
/// claimed delivery on ([`apply`] with [`Claimed::Now`] counts the
/// attempt), so the lease a claim of its own writes (the due time moved
/// ahead, the attempt counted) would be rewritten at once; skipping it
/// saves a row and two index entries rewritten per message. A delivery
/// given no step is left as it was, due.
pub fn claim(tx: &Transaction<'_>, now_ms: i64, limit: i64) -> rusqlite::Result<Vec<Due>> {
    let mut ids = tx
        .prepare_cached(SQLITE_CLAIMABLE)?
        .query_map(named_params! {"$1": now_ms, "$3": limit}, |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    ids.sort_unstable();
    let mut dues = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(mut due) = due(tx, id)? {
            due.attempts += 1;
            dues.push(due);
        }
    }
    Ok(dues)
}
