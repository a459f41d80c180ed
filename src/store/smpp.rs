//! What the SMSC said of messages sent over SMPP (spec section 7): the id
//! it gave each segment, each segment's receipt, and receipts that arrived
//! before the id they name was recorded (kept until it is, never dropped).

use crate::store::dual;
use crate::with_db;
use std::collections::{BTreeSet, HashMap};

use sqlx::{QueryBuilder, Row};

use super::delivery::{DUE_COLUMNS, Due, Step};
use super::{Store, now_ms};

/// A message to submit: its text and what was already accepted of it.
#[derive(Debug, Clone)]
pub struct SmppMessage {
    pub sender: String,
    pub recipient: String,
    pub body: String,
    /// Segments (1-based) the SMSC already accepted: never sent again.
    pub accepted: Vec<i64>,
}

/// A segment the SMSC accepted, with its id normalised.
#[derive(Debug, Clone)]
pub struct AcceptedSegment {
    pub transaction_id: i64,
    pub segment: i64,
    pub total: i64,
    pub message_id: String,
}

/// A final receipt to match: the id as written and every reading of it.
#[derive(Debug, Clone)]
pub struct ReceiptRow {
    pub key: String,
    pub candidates: Vec<String>,
    pub stat: String,
    pub delivered: bool,
    pub err: String,
}

/// One segment's state.
#[derive(Debug, Clone)]
pub struct SegmentState {
    pub segment: i64,
    pub total: i64,
    pub accepted: bool,
    /// `None` until a final receipt came.
    pub delivered: Option<bool>,
    pub receipt: String,
}

impl Store {
    /// The message of a transaction still queued for delivery.
    pub async fn smpp_message(&self, transaction_id: i64) -> sqlx::Result<Option<SmppMessage>> {
        with_db!(self, |pool, writer| {
            // One hand-over to the store's SQLite thread instead of two queries.
            if let Some(result) = self
                .read_on_thread(move |c| on_thread::message(c, transaction_id))
                .await
            {
                return super::flatten(result);
            }
            let row = sqlx::query(
                "SELECT t.sender, t.recipient, COALESCE(t.body, '') AS body FROM transactions t
                 JOIN deliveries d ON d.transaction_id = t.id WHERE t.id = $1",
            )
            .bind(transaction_id)
            .fetch_optional(pool)
            .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            let accepted: Vec<i64> = sqlx::query_scalar(
                "SELECT segment FROM smpp_segments
                 WHERE transaction_id = $1 AND message_id IS NOT NULL ORDER BY segment",
            )
            .bind(transaction_id)
            .fetch_all(pool)
            .await?;
            Ok(Some(SmppMessage {
                sender: row.try_get("sender")?,
                recipient: row.try_get("recipient")?,
                body: row.try_get("body")?,
                accepted,
            }))
        })
    }

    /// Records accepted segments and final receipts in one commit: a
    /// receipt whose id is not known yet is kept, and applied when the id
    /// is recorded. Returns the transactions whose segments changed.
    pub async fn smpp_record(
        &self,
        accepted: &[AcceptedSegment],
        receipts: &[ReceiptRow],
    ) -> sqlx::Result<BTreeSet<i64>> {
        with_db!(self, |pool, writer| {
            let now = now_ms();
            if self.has_thread() {
                let (accepted, receipts) = (accepted.to_vec(), receipts.to_vec());
                let result = self
                    .write_on_thread(move |c| on_thread::record(c, &accepted, &receipts, now))
                    .await;
                if let Some(result) = result {
                    return super::flatten(result);
                }
            }
            // Set-based: a handful of statements per batch whatever its size
            // (on PostgreSQL each statement is a round trip; one per segment
            // and receipt left the recorder seconds behind under load).
            let mut tx = writer.begin().await?;
            let touched = on::record_in_sets(&mut tx, accepted, receipts, now).await?;
            tx.commit().await?;
            Ok(touched)
        })
    }

    /// Records accepted segments and final receipts (as
    /// [`Store::smpp_record`]), then the steps they lead to: `decide` is
    /// given the delivery and the segments of every transaction they
    /// touched, and of each of `also` (those whose submission just ended),
    /// if still queued. Returns the steps that applied.
    ///
    /// On the hot paths' SQLite thread all of it is one transaction and one
    /// hand-over; elsewhere the segments commit first and the steps after
    /// them (a crash between the two is settled at the next start, see
    /// [`Store::smpp_receipted_waiting`]).
    pub async fn smpp_settle(
        &self,
        accepted: Vec<AcceptedSegment>,
        receipts: Vec<ReceiptRow>,
        also: Vec<i64>,
        mut decide: impl FnMut(&Due, &[SegmentState]) -> Option<Step> + Send + 'static,
    ) -> sqlx::Result<Vec<Step>> {
        let now = now_ms();
        if self.has_thread() {
            return self
                .write_on_thread_checked(move |c| {
                    on_thread::settle(c, &accepted, &receipts, also, now, &mut decide)
                })
                .await;
        }
        let mut ids = self.smpp_record(&accepted, &receipts).await?;
        ids.extend(also);
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = ids.into_iter().collect();
        let progress: HashMap<i64, Vec<SegmentState>> = self
            .smpp_progress(&ids)
            .await?
            .into_iter()
            .map(|(id, _, segments)| (id, segments))
            .collect();
        let steps: Vec<Step> = self
            .smpp_dues(&ids)
            .await?
            .iter()
            .filter_map(|due| {
                let segments = progress.get(&due.transaction_id);
                decide(due, segments.map_or(&[][..], Vec::as_slice))
            })
            .collect();
        if steps.is_empty() {
            return Ok(Vec::new());
        }
        self.record_steps(steps).await
    }

    /// Every segment known of these transactions, with the delivery stage
    /// each is in (`None` once it ended).
    pub async fn smpp_progress(
        &self,
        ids: &[i64],
    ) -> sqlx::Result<Vec<(i64, Option<String>, Vec<SegmentState>)>> {
        with_db!(self, |pool, writer| {
            let mut out: Vec<(i64, Option<String>, Vec<SegmentState>)> = Vec::new();
            for chunk in ids.chunks(500) {
                let mut select: QueryBuilder<Db> = QueryBuilder::new(
                    "SELECT s.transaction_id, d.stage, s.segment, s.total, s.message_id, s.receipt,
                     s.delivered FROM smpp_segments s
                     LEFT JOIN deliveries d ON d.transaction_id = s.transaction_id
                     WHERE s.transaction_id IN (",
                );
                let mut list = select.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                select.push(") ORDER BY s.transaction_id, s.segment");
                for row in select.build().fetch_all(pool).await? {
                    let id: i64 = row.try_get("transaction_id")?;
                    let state = SegmentState {
                        segment: row.try_get("segment")?,
                        total: row.try_get("total")?,
                        accepted: row.try_get::<Option<String>, _>("message_id")?.is_some(),
                        delivered: row.try_get::<Option<i64>, _>("delivered")?.map(|d| d == 1),
                        receipt: row.try_get("receipt")?,
                    };
                    match out.last_mut() {
                        Some((last, _, segments)) if *last == id => segments.push(state),
                        _ => out.push((id, row.try_get("stage")?, vec![state])),
                    }
                }
            }
            Ok(out)
        })
    }

    /// The delivery of each of these transactions that is still queued,
    /// as the worker would claim it (without claiming it).
    pub async fn smpp_dues(&self, ids: &[i64]) -> sqlx::Result<Vec<Due>> {
        with_db!(self, |pool, writer| {
            let mut dues = Vec::new();
            for chunk in ids.chunks(500) {
                let mut select: QueryBuilder<Db> = QueryBuilder::new(format!(
                    "SELECT d.stage, d.expires_ms, d.attempts, {DUE_COLUMNS}
                         FROM deliveries d JOIN transactions t ON t.id = d.transaction_id
                         WHERE d.transaction_id IN ("
                ));
                let mut list = select.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                select.push(")");
                for row in select.build().fetch_all(pool).await? {
                    dues.push(on::due_from_row(
                        &row,
                        row.try_get("stage")?,
                        row.try_get("expires_ms")?,
                        row.try_get("attempts")?,
                    )?);
                }
            }
            Ok(dues)
        })
    }

    /// Receipts still waiting for the id they name.
    /// Transactions still waiting for receipts that some of their segments
    /// already have (left by a crash between the two commits).
    pub async fn smpp_receipted_waiting(&self) -> sqlx::Result<Vec<i64>> {
        with_db!(self, |pool, writer| {
            sqlx::query_scalar(
                "SELECT DISTINCT s.transaction_id FROM smpp_segments s
                 JOIN deliveries d ON d.transaction_id = s.transaction_id
                 WHERE d.stage = 'await' AND s.delivered IS NOT NULL",
            )
            .fetch_all(pool)
            .await
        })
    }

    /// Drops receipts kept for an id no segment had, received before
    /// `before_ms`; returns how many ids were dropped.
    pub async fn drop_stale_receipts(&self, before_ms: i64) -> sqlx::Result<u64> {
        with_db!(self, |pool, writer| {
            let done = sqlx::query("DELETE FROM smpp_pending_receipts WHERE received_ms < $1")
                .bind(before_ms)
                .execute(writer)
                .await?;
            Ok(done.rows_affected())
        })
    }

    /// One chunk of the sweep of SMPP segments: reads the next `limit`
    /// segments in message order after message `after`, and forgets the
    /// segments of those messages that are finished and were accepted
    /// before `before_ms`. Past the validity period no receipt is owed to a
    /// finished message; kept, its segments would grow the table and its
    /// index of the SMSC's ids with every message ever sent. A late receipt
    /// for a forgotten id waits as an unmatched one and is dropped in turn.
    pub async fn prune_smpp_segments(
        &self,
        after: i64,
        before_ms: i64,
        limit: i64,
    ) -> sqlx::Result<Pruned> {
        with_db!(self, |pool, writer| {
            let mut tx = writer.begin().await?;
            let last: Option<i64> = sqlx::query_scalar(
                "SELECT MAX(transaction_id) FROM (SELECT transaction_id FROM smpp_segments
                 WHERE transaction_id > $1 ORDER BY transaction_id LIMIT $2) AS chunk",
            )
            .bind(after)
            .bind(limit)
            .fetch_one(&mut *tx)
            .await?;
            let Some(last) = last else {
                return Ok(Pruned {
                    removed: 0,
                    next: None,
                });
            };
            let removed = sqlx::query(
                "DELETE FROM smpp_segments WHERE transaction_id IN (
                     SELECT s.transaction_id FROM smpp_segments s
                     WHERE s.transaction_id > $1 AND s.transaction_id <= $2 AND s.accepted_ms < $3
                     AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.transaction_id = s.transaction_id))",
            )
            .bind(after)
            .bind(last)
            .bind(before_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            // Segments go in message order, which is nearly the order they
            // were accepted in: a chunk with nothing to forget is where the
            // recent ones begin.
            let next = (removed > 0).then_some(last);
            Ok(Pruned { removed, next })
        })
    }

    pub async fn smpp_pending_receipts(&self) -> sqlx::Result<i64> {
        with_db!(self, |pool, writer| {
            sqlx::query_scalar("SELECT COUNT(DISTINCT receipt_key) FROM smpp_pending_receipts")
                .fetch_one(pool)
                .await
        })
    }
}

/// What one chunk of [`Store::prune_smpp_segments`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Segments forgotten.
    pub removed: u64,
    /// The message to go on after; `None` when the sweep is done.
    pub next: Option<i64>,
}

/// The same reads and writes as above, on the store's SQLite thread
/// ([`super::sqlite_thread`]): every statement prepared once, the whole
/// batch one hand-over.
mod on_thread {
    use std::collections::BTreeSet;

    use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

    use super::{AcceptedSegment, Due, ReceiptRow, SegmentState, SmppMessage, Step};
    use crate::store::sqlite_steps;

    pub fn message(
        c: &mut Connection,
        transaction_id: i64,
    ) -> rusqlite::Result<Option<SmppMessage>> {
        let row = c
            .prepare_cached(
                "SELECT t.sender, t.recipient, COALESCE(t.body, '') FROM transactions t
                 JOIN deliveries d ON d.transaction_id = t.id WHERE t.id = ?1",
            )?
            .query_row(params![transaction_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .optional()?;
        let Some((sender, recipient, body)) = row else {
            return Ok(None);
        };
        let accepted = c
            .prepare_cached(
                "SELECT segment FROM smpp_segments
                 WHERE transaction_id = ?1 AND message_id IS NOT NULL ORDER BY segment",
            )?
            .query_map(params![transaction_id], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<i64>>>()?;
        Ok(Some(SmppMessage {
            sender,
            recipient,
            body,
            accepted,
        }))
    }

    pub fn record(
        c: &mut Connection,
        accepted: &[AcceptedSegment],
        receipts: &[ReceiptRow],
        now: i64,
    ) -> rusqlite::Result<BTreeSet<i64>> {
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let touched = record_in(&tx, accepted, receipts, now)?;
        tx.commit()?;
        Ok(touched)
    }

    /// See [`super::Store::smpp_settle`].
    pub fn settle(
        c: &mut Connection,
        accepted: &[AcceptedSegment],
        receipts: &[ReceiptRow],
        also: Vec<i64>,
        now: i64,
        decide: &mut dyn FnMut(&Due, &[SegmentState]) -> Option<Step>,
    ) -> rusqlite::Result<Vec<Step>> {
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut ids = record_in(&tx, accepted, receipts, now)?;
        ids.extend(also);
        let mut steps = Vec::new();
        for id in ids {
            let Some(due) = sqlite_steps::due(&tx, id)? else {
                continue;
            };
            steps.extend(decide(&due, &segments(&tx, id)?));
        }
        let moved = sqlite_steps::apply(&tx, &steps, now, sqlite_steps::Claimed::Before)?;
        tx.commit()?;
        steps.retain(|step| moved.contains(&step.transaction_id()));
        Ok(steps)
    }

    /// A transaction's segments, in order.
    fn segments(tx: &Transaction<'_>, transaction_id: i64) -> rusqlite::Result<Vec<SegmentState>> {
        tx.prepare_cached(
            "SELECT segment, total, message_id IS NOT NULL, delivered, receipt
             FROM smpp_segments WHERE transaction_id = ?1 ORDER BY segment",
        )?
        .query_map(params![transaction_id], |r| {
            Ok(SegmentState {
                segment: r.get(0)?,
                total: r.get(1)?,
                accepted: r.get(2)?,
                delivered: r.get::<_, Option<i64>>(3)?.map(|d| d == 1),
                receipt: r.get(4)?,
            })
        })?
        .collect()
    }

    fn record_in(
        tx: &Transaction<'_>,
        accepted: &[AcceptedSegment],
        receipts: &[ReceiptRow],
        now: i64,
    ) -> rusqlite::Result<BTreeSet<i64>> {
        let mut touched = BTreeSet::new();
        // A receipt before its id is rare: when none waits, the accepted
        // segments need no look-up each (that was 1.5 % of the CPU of a
        // message end to end). Receipts kept below come after them.
        let waiting = !accepted.is_empty()
            && tx
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM smpp_pending_receipts)")?
                .query_row([], |r| r.get::<_, bool>(0))?;
        for segment in accepted {
            tx.prepare_cached(
                "INSERT INTO smpp_segments (transaction_id, segment, total, message_id, accepted_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (transaction_id, segment)
                 DO UPDATE SET message_id = excluded.message_id, total = excluded.total,
                               accepted_ms = excluded.accepted_ms",
            )?
            .execute(params![
                segment.transaction_id,
                segment.segment,
                segment.total,
                segment.message_id,
                now
            ])?;
            touched.insert(segment.transaction_id);
            if waiting {
                apply_pending(tx, segment)?;
            }
        }
        for receipt in receipts {
            match find_segment(tx, &receipt.candidates)? {
                Some((transaction_id, segment)) => {
                    set_receipt(
                        tx,
                        transaction_id,
                        segment,
                        &receipt.stat,
                        receipt.delivered,
                    )?;
                    touched.insert(transaction_id);
                }
                None => {
                    for candidate in &receipt.candidates {
                        tx.prepare_cached(
                            "INSERT INTO smpp_pending_receipts
                             (candidate, receipt_key, stat, delivered, err, received_ms)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        )?
                        .execute(params![
                            candidate,
                            receipt.key,
                            receipt.stat,
                            i64::from(receipt.delivered),
                            receipt.err,
                            now
                        ])?;
                    }
                }
            }
        }
        Ok(touched)
    }

    /// As [`super::find_segment`]: only the id as written may name a
    /// segment that already has its receipt.
    fn find_segment(
        tx: &Transaction<'_>,
        candidates: &[String],
    ) -> rusqlite::Result<Option<(i64, i64)>> {
        let mut select = tx.prepare_cached(
            "SELECT transaction_id, segment FROM smpp_segments
             WHERE message_id = ?1 AND (?2 OR delivered IS NULL)
             ORDER BY accepted_ms DESC LIMIT 1",
        )?;
        for (index, candidate) in candidates.iter().enumerate() {
            let found = select
                .query_row(params![candidate, index == 0], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    fn set_receipt(
        tx: &Transaction<'_>,
        transaction_id: i64,
        segment: i64,
        stat: &str,
        delivered: bool,
    ) -> rusqlite::Result<()> {
        tx.prepare_cached(
            "UPDATE smpp_segments SET receipt = ?1, delivered = ?2
             WHERE transaction_id = ?3 AND segment = ?4",
        )?
        .execute(params![stat, i64::from(delivered), transaction_id, segment])?;
        Ok(())
    }

    /// Applies a receipt that came before this segment's id was recorded.
    fn apply_pending(tx: &Transaction<'_>, segment: &AcceptedSegment) -> rusqlite::Result<()> {
        let pending = tx
            .prepare_cached(
                "SELECT receipt_key, stat, delivered FROM smpp_pending_receipts
                 WHERE candidate = ?1 ORDER BY received_ms",
            )?
            .query_map(params![segment.message_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?))
            })?
            .collect::<rusqlite::Result<Vec<(String, String, i64)>>>()?;
        let Some((key, stat, delivered)) =
            super::waiting_for(&segment.message_id, pending.iter(), |(key, ..)| key)
        else {
            return Ok(());
        };
        set_receipt(
            tx,
            segment.transaction_id,
            segment.segment,
            stat,
            *delivered == 1,
        )?;
        tx.prepare_cached("DELETE FROM smpp_pending_receipts WHERE receipt_key = ?1")?
            .execute(params![key])?;
        Ok(())
    }
}

/// Of the receipts kept for `id` (oldest first), the one a segment
/// accepted with that id takes: one whose own id is `id` as written
/// before one that names it only in another reading. Otherwise two early
/// receipts whose ids are each other's hex and decimal readings ("410"
/// and "1040") would go to each other's message, oldest first.
fn waiting_for<'a, T>(
    id: &str,
    mut kept: impl Iterator<Item = &'a T> + Clone,
    key: impl Fn(&T) -> &String,
) -> Option<&'a T> {
    let oldest = kept.clone().next();
    kept.find(|r| crate::smpp::receipt::normalise_id(key(r)) == id)
        .or(oldest)
}

/// Rows per multi-row statement of the set-based recording: at most six
/// bound values a row, well under SQLite's limit of 32,766.
const ROWS_PER_STATEMENT: usize = 4_000;

dual! {

    /// What `smpp_record` writes, in a few set-based statements: the
    /// accepted segments, the receipts that waited for them, and the new
    /// receipts (matched to their segment, or kept as pending). Returns the
    /// transactions touched.
    pub(crate) async fn record_in_sets(
        tx: &mut Conn,
        accepted: &[AcceptedSegment],
        receipts: &[ReceiptRow],
        now: i64,
    ) -> sqlx::Result<BTreeSet<i64>> {
        let mut touched = BTreeSet::new();
        for chunk in accepted.chunks(ROWS_PER_STATEMENT) {
            let mut insert: QueryBuilder<Db> = QueryBuilder::new(
                "INSERT INTO smpp_segments (transaction_id, segment, total, message_id, accepted_ms) ",
            );
            insert.push_values(chunk, |mut b, s| {
                b.push_bind(s.transaction_id)
                    .push_bind(s.segment)
                    .push_bind(s.total)
                    .push_bind(&s.message_id)
                    .push_bind(now);
            });
            insert.push(
                " ON CONFLICT (transaction_id, segment)
                 DO UPDATE SET message_id = excluded.message_id, total = excluded.total,
                               accepted_ms = excluded.accepted_ms",
            );
            insert.build().persistent(false).execute(&mut *tx).await?;
        }
        touched.extend(accepted.iter().map(|s| s.transaction_id));

        // Receipts that came before their segment's id: each applies to the
        // first segment that names it, oldest receipt first.
        let ids: Vec<&str> = accepted.iter().map(|s| s.message_id.as_str()).collect();
        let mut waiting: HashMap<String, Vec<(String, String, i64)>> = HashMap::new();
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let mut select: QueryBuilder<Db> = QueryBuilder::new(
                "SELECT candidate, receipt_key, stat, delivered FROM smpp_pending_receipts WHERE candidate IN (",
            );
            let mut list = select.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            select.push(") ORDER BY received_ms");
            for row in select.build().persistent(false).fetch_all(&mut *tx).await? {
                waiting.entry(row.try_get(0)?).or_default().push((
                    row.try_get(1)?,
                    row.try_get(2)?,
                    row.try_get(3)?,
                ));
            }
        }
        let mut outcomes: Vec<(i64, i64, String, bool)> = Vec::new();
        let mut used_keys: Vec<String> = Vec::new();
        for segment in accepted {
            let first_unused = waiting.get(&segment.message_id).and_then(|found| {
                let unused = found.iter().filter(|(key, ..)| !used_keys.contains(key));
                super::waiting_for(&segment.message_id, unused, |(key, ..)| key)
            });
            if let Some((key, stat, delivered)) = first_unused {
                outcomes.push((segment.transaction_id, segment.segment, stat.clone(), *delivered == 1));
                used_keys.push(key.clone());
            }
        }

        // New receipts: the segments their ids may name, read at once, then
        // matched in order, each trying the readings of its id in turn. Only
        // the id as written may name a segment that has its final receipt
        // already (a repeated receipt): another reading would otherwise
        // take an old, finished segment whose id happens to be that reading
        // when a receipt comes before its own segment's id is recorded (it
        // then waits as pending). A receipt of this batch counts for the
        // ones after it.
        let candidates: Vec<&str> = receipts
            .iter()
            .flat_map(|r| r.candidates.iter().map(String::as_str))
            .collect();
        // By id: (transaction, segment, finished, accepted_ms).
        let mut segments: HashMap<String, Vec<(i64, i64, bool, i64)>> = HashMap::new();
        for chunk in candidates.chunks(ROWS_PER_STATEMENT) {
            let mut select: QueryBuilder<Db> = QueryBuilder::new(
                "SELECT message_id, transaction_id, segment, delivered IS NOT NULL, COALESCE(accepted_ms, 0)
                 FROM smpp_segments WHERE message_id IN (",
            );
            let mut list = select.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            select.push(")");
            for row in select.build().persistent(false).fetch_all(&mut *tx).await? {
                let finished: bool = row.try_get(3)?;
                segments.entry(row.try_get(0)?).or_default().push((
                    row.try_get(1)?,
                    row.try_get(2)?,
                    finished,
                    row.try_get(4)?,
                ));
            }
        }
        // Segments given their final receipt by this batch so far.
        let mut finished_now: std::collections::HashSet<(i64, i64)> =
            outcomes.iter().map(|(t, s, ..)| (*t, *s)).collect();
        let mut unmatched: Vec<&ReceiptRow> = Vec::new();
        for receipt in receipts {
            let found = receipt.candidates.iter().enumerate().find_map(|(index, id)| {
                segments
                    .get(id)?
                    .iter()
                    .filter(|(t, s, finished, _)| {
                        index == 0 || !(*finished || finished_now.contains(&(*t, *s)))
                    })
                    .max_by_key(|(.., accepted_ms)| *accepted_ms)
                    .map(|(t, s, ..)| (*t, *s))
            });
            match found {
                Some((transaction_id, segment)) => {
                    outcomes.push((transaction_id, segment, receipt.stat.clone(), receipt.delivered));
                    finished_now.insert((transaction_id, segment));
                    touched.insert(transaction_id);
                }
                None => unmatched.push(receipt),
            }
        }

        // The last outcome of a segment wins, as statements in order would.
        let mut last: HashMap<(i64, i64), usize> = HashMap::new();
        for (index, (t, s, ..)) in outcomes.iter().enumerate() {
            last.insert((*t, *s), index);
        }
        let finals: Vec<&(i64, i64, String, bool)> = outcomes
            .iter()
            .enumerate()
            .filter(|(index, (t, s, ..))| last.get(&(*t, *s)) == Some(index))
            .map(|(_, outcome)| outcome)
            .collect();
        for chunk in finals.chunks(ROWS_PER_STATEMENT) {
            let mut update: QueryBuilder<Db> =
                QueryBuilder::new("WITH v (transaction_id, segment, receipt, delivered) AS (");
            update.push_values(chunk, |mut b, (t, s, stat, delivered)| {
                b.push_bind(*t)
                    .push_bind(*s)
                    .push_bind(stat.as_str())
                    .push_bind(i64::from(*delivered));
            });
            update.push(
                ") UPDATE smpp_segments SET receipt = v.receipt, delivered = v.delivered FROM v
                 WHERE smpp_segments.transaction_id = v.transaction_id
                   AND smpp_segments.segment = v.segment",
            );
            update.build().persistent(false).execute(&mut *tx).await?;
        }
        for chunk in used_keys.chunks(ROWS_PER_STATEMENT) {
            let mut delete: QueryBuilder<Db> =
                QueryBuilder::new("DELETE FROM smpp_pending_receipts WHERE receipt_key IN (");
            let mut list = delete.separated(", ");
            for key in chunk {
                list.push_bind(key.as_str());
            }
            delete.push(")");
            delete.build().persistent(false).execute(&mut *tx).await?;
        }
        let pending: Vec<(&str, &ReceiptRow)> = unmatched
            .iter()
            .flat_map(|r| r.candidates.iter().map(move |c| (c.as_str(), *r)))
            .collect();
        for chunk in pending.chunks(ROWS_PER_STATEMENT) {
            let mut insert: QueryBuilder<Db> = QueryBuilder::new(
                "INSERT INTO smpp_pending_receipts (candidate, receipt_key, stat, delivered, err, received_ms) ",
            );
            insert.push_values(chunk, |mut b, (candidate, r)| {
                b.push_bind(*candidate)
                    .push_bind(r.key.as_str())
                    .push_bind(r.stat.as_str())
                    .push_bind(i64::from(r.delivered))
                    .push_bind(r.err.as_str())
                    .push_bind(now);
            });
            insert.build().persistent(false).execute(&mut *tx).await?;
        }
        Ok(touched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smpp::receipt::candidates;

    fn accepted(transaction_id: i64, id: &str) -> AcceptedSegment {
        AcceptedSegment {
            transaction_id,
            segment: 1,
            total: 1,
            message_id: id.into(),
        }
    }

    fn delivered(id: &str) -> ReceiptRow {
        ReceiptRow {
            key: id.into(),
            candidates: candidates(id),
            stat: "DELIVRD".into(),
            delivered: true,
            err: "000".into(),
        }
    }

    fn undelivered(id: &str) -> ReceiptRow {
        ReceiptRow {
            stat: "UNDELIV".into(),
            delivered: false,
            ..delivered(id)
        }
    }

    async fn receipt_of(store: &Store, transaction_id: i64) -> String {
        sqlx::query_scalar("SELECT receipt FROM smpp_segments WHERE transaction_id = $1")
            .bind(transaction_id)
            .fetch_one(crate::store::test_sqlite(store))
            .await
            .expect("segment")
    }

    #[tokio::test]
    async fn an_early_receipt_waits_for_its_own_id_rather_than_another_reading_of_it() {
        let (_dir, store) = crate::store::test_store().await;
        // An old message whose id is the hex reading of the decimal "129187".
        store
            .smpp_record(&[accepted(1, "1f8a3")], &[delivered("1F8A3")])
            .await
            .expect("old message");
        assert_eq!(receipt_of(&store, 1).await, "DELIVRD");
        // The receipt of a new message comes before its id is recorded.
        let touched = store
            .smpp_record(&[], &[delivered("129187")])
            .await
            .expect("early receipt");
        assert!(touched.is_empty(), "{touched:?}");
        assert_eq!(store.smpp_pending_receipts().await.expect("pending"), 1);
        // Its id arrives: the kept receipt is applied to it.
        let touched = store
            .smpp_record(&[accepted(2, "129187")], &[])
            .await
            .expect("new message");
        assert!(touched.contains(&2));
        assert_eq!(receipt_of(&store, 2).await, "DELIVRD");
        assert_eq!(store.smpp_pending_receipts().await.expect("pending"), 0);
    }

    /// Two early receipts whose ids are each other's hex and decimal
    /// readings, the older one undelivered, then both ids in one batch:
    /// each message gets the receipt that names it as written.
    async fn early_receipts_of_ids_that_read_as_each_other(
        record: impl AsyncFn(&Store, Vec<AcceptedSegment>, Vec<ReceiptRow>),
    ) {
        let (_dir, store) = crate::store::test_store().await;
        assert!(candidates("410").contains(&"1040".to_string()));
        assert!(candidates("1040").contains(&"410".to_string()));
        record(&store, vec![], vec![undelivered("1040")]).await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        record(&store, vec![], vec![delivered("410")]).await;
        assert_eq!(store.smpp_pending_receipts().await.expect("pending"), 2);
        record(
            &store,
            vec![accepted(1, "410"), accepted(2, "1040")],
            vec![],
        )
        .await;
        assert_eq!(receipt_of(&store, 1).await, "DELIVRD");
        assert_eq!(receipt_of(&store, 2).await, "UNDELIV");
        assert_eq!(store.smpp_pending_receipts().await.expect("pending"), 0);
    }

    #[tokio::test]
    async fn an_early_receipt_goes_to_the_id_it_names_as_written_before_another_reading() {
        // On the SQLite thread.
        early_receipts_of_ids_that_read_as_each_other(async |store, accepted, receipts| {
            store
                .smpp_record(&accepted, &receipts)
                .await
                .expect("record");
        })
        .await;
        // In sets, as on PostgreSQL.
        early_receipts_of_ids_that_read_as_each_other(async |store, accepted, receipts| {
            let mut tx = crate::store::test_sqlite(store)
                .begin()
                .await
                .expect("begin");
            sqlite::record_in_sets(&mut tx, &accepted, &receipts, super::super::now_ms())
                .await
                .expect("record");
            tx.commit().await.expect("commit");
        })
        .await;
    }

    #[tokio::test]
    async fn old_segments_of_finished_messages_are_forgotten_chunk_by_chunk() {
        let (_dir, store) = crate::store::test_store().await;
        let ids: Vec<AcceptedSegment> = (1..=7).map(|t| accepted(t, &format!("id{t}"))).collect();
        store.smpp_record(&ids, &[]).await.expect("segments");
        let cutoff = super::super::now_ms() + 1_000;
        let sqlite = crate::store::test_sqlite(&store);
        // Message 3 still awaits its receipt; 6 and 7 were accepted after the cutoff.
        sqlx::query(
            "INSERT INTO deliveries (transaction_id, stage, due_ms, expires_ms, client_id)
             VALUES (3, 'await', 0, 0, 1)",
        )
        .execute(sqlite)
        .await
        .expect("live delivery");
        sqlx::query("UPDATE smpp_segments SET accepted_ms = $1 WHERE transaction_id >= 6")
            .bind(cutoff + 5_000)
            .execute(sqlite)
            .await
            .expect("recent segments");
        let mut chunks = Vec::new();
        let mut after = 0;
        loop {
            let pruned = store
                .prune_smpp_segments(after, cutoff, 2)
                .await
                .expect("sweep");
            chunks.push(pruned);
            match pruned.next {
                Some(next) => after = next,
                None => break,
            }
        }
        let chunk = |removed, next| Pruned { removed, next };
        assert_eq!(
            chunks,
            [
                chunk(2, Some(2)),
                chunk(1, Some(4)),
                chunk(1, Some(6)),
                // Only recent segments: the sweep ends here.
                chunk(0, None),
            ]
        );
        let left: Vec<i64> =
            sqlx::query_scalar("SELECT transaction_id FROM smpp_segments ORDER BY transaction_id")
                .fetch_all(sqlite)
                .await
                .expect("left");
        assert_eq!(left, [3, 6, 7]);
        // A receipt for a forgotten id now waits as an unmatched one.
        store
            .smpp_record(&[], &[delivered("id1")])
            .await
            .expect("late receipt");
        assert_eq!(store.smpp_pending_receipts().await.expect("pending"), 1);
    }

    #[tokio::test]
    async fn receipts_that_never_found_their_message_are_dropped_after_the_cutoff() {
        let (_dir, store) = crate::store::test_store().await;
        store
            .smpp_record(&[], &[delivered("777001")])
            .await
            .expect("unknown id");
        assert_eq!(store.smpp_pending_receipts().await.expect("pending"), 1);
        let received = super::super::now_ms();
        // A cutoff before it keeps it; one after it drops every reading.
        assert_eq!(
            store
                .drop_stale_receipts(received - 60_000)
                .await
                .expect("sweep"),
            0
        );
        assert_eq!(store.smpp_pending_receipts().await.expect("pending"), 1);
        assert!(
            store
                .drop_stale_receipts(received + 1_000)
                .await
                .expect("sweep")
                >= 1
        );
        assert_eq!(store.smpp_pending_receipts().await.expect("pending"), 0);
    }
}
