//! Delivery work as stored: the `deliveries` queue and the writes that move
//! a transaction along (spec section 7).
//!
//! On a SQLite file the worker's step is one transaction on the hot paths'
//! thread: it claims a batch of due rows, decides every outcome and records
//! them, committing once ([`Store::step_deliveries`]). Elsewhere (PostgreSQL,
//! several nodes) the worker claims a batch in one statement, which pushes
//! the rows' due time one lease ahead so a node that dies mid-step leaves
//! its work to be claimed again later, then records every outcome of the
//! batch in one SQL transaction.
//!
//! The sqlx statements work on the whole batch (`VALUES` lists, `UPDATE …
//! FROM`, `RETURNING`): each statement is a hand-off to a connection (a
//! thread with SQLite, a round trip with PostgreSQL), and a few per batch
//! cost far less than a few per message.

use crate::store::dual;
use crate::with_db;
use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::{QueryBuilder, Row};

use super::sqlite_steps::{self, Claimed};
use super::webhook::NewWebhook;
use super::{Store, now_ms};

/// A claimed delivery with what the worker needs of its transaction.
#[derive(Debug, Clone)]
pub struct Due {
    pub transaction_id: i64,
    /// `submit`, `receipt`, `await` or `held`.
    pub stage: String,
    pub expires_ms: i64,
    pub attempts: i64,
    pub hash: String,
    pub client_id: i64,
    pub campaign_id: i64,
    pub recipient: String,
    /// The sender and the text, so a connector needs no read of its own
    /// to submit a first attempt.
    pub sender: String,
    pub body: String,
    pub kind: String,
    pub carrier_id: Option<i64>,
    pub callback: String,
    pub udp: String,
    pub blast_id: Option<i64>,
}

/// The columns of a transaction (table alias `t`) that [`due_from_row`]
/// reads.
pub(crate) const DUE_COLUMNS: &str =
    "t.id, t.hash, t.client_id, t.campaign_id, t.recipient, t.sender,
     COALESCE(t.body, '') AS body, t.kind, t.carrier_id, t.callback, t.udp, t.blast_id";

/// What one worker step decided for one delivery.
#[derive(Debug, Clone)]
pub enum Step {
    /// The delivery moves to another stage.
    Advance {
        transaction_id: i64,
        /// The stage it was claimed in: nothing is written if it changed meanwhile.
        from_stage: String,
        /// A new transaction status, if it changes.
        status: Option<&'static str>,
        events: Vec<String>,
        stage: &'static str,
        due_ms: i64,
    },
    /// The transaction ends: COMPLETE (code 1) or FAILED.
    Finish {
        transaction_id: i64,
        from_stage: String,
        status: &'static str,
        code: i64,
        events: Vec<String>,
        /// The spec section 6.2 callback, when the send asked for one.
        webhook: Option<NewWebhook>,
        /// Counted as sent (COMPLETE) or failed in this blast.
        blast_id: Option<i64>,
        /// A number to bar: (number, carrier id).
        bar: Option<(String, i64)>,
    },
}

impl Step {
    /// The delivery stays in `stage` until `due_ms`, leaving no trace in
    /// its history (a wait for a rate slot, or for the connector holding it).
    pub fn wait(due: &Due, stage: &'static str, due_ms: i64) -> Step {
        Step::Advance {
            transaction_id: due.transaction_id,
            from_stage: due.stage.clone(),
            status: None,
            events: Vec::new(),
            stage,
            due_ms,
        }
    }

    pub fn transaction_id(&self) -> i64 {
        match self {
            Step::Advance { transaction_id, .. } | Step::Finish { transaction_id, .. } => {
                *transaction_id
            }
        }
    }

    pub(super) fn events(&self) -> &[String] {
        match self {
            Step::Advance { events, .. } | Step::Finish { events, .. } => events,
        }
    }
}

/// The deliveries a claim takes, in the order it takes them (see
/// `claim_deliveries`); `$only` narrows the rows each lane offers. The
/// lanes are walked alike on both databases; each lane's oldest rows are
/// picked by a join on SQLite and by a LATERAL subquery on PostgreSQL,
/// whose planner runs the join's `IN` once per delivery and lane (a
/// second at a few thousand rows), where LATERAL reads each lane's index
/// once (milliseconds).
macro_rules! fair_claim {
    (sqlite, $only:literal) => {
        concat!(
            fair_claim!(lanes),
            r#"offered AS (
                 SELECT d.transaction_id, d.client_id, d.due_ms FROM lane JOIN deliveries d
                 ON d.transaction_id IN (
                     SELECT transaction_id FROM deliveries
                     WHERE client_id = lane.client_id AND due_ms <= $1 "#,
            $only,
            r#" ORDER BY due_ms LIMIT $3)
             )"#,
            fair_claim!(turns)
        )
    };
    (postgres, $only:literal) => {
        concat!(
            fair_claim!(lanes),
            r#"offered AS (
                 SELECT d.transaction_id, d.client_id, d.due_ms FROM lane CROSS JOIN LATERAL (
                     SELECT transaction_id, client_id, due_ms FROM deliveries
                     WHERE client_id = lane.client_id AND due_ms <= $1 "#,
            $only,
            r#" ORDER BY due_ms LIMIT $3) AS d
             )"#,
            fair_claim!(turns)
        )
    };
    (lanes) => {
        r#"WITH RECURSIVE lane(client_id) AS (
             SELECT MIN(client_id) FROM deliveries
             UNION ALL
             SELECT (SELECT MIN(client_id) FROM deliveries WHERE client_id > lane.client_id)
             FROM lane WHERE lane.client_id IS NOT NULL
         ),
         "#
    };
    (turns) => {
        r#"
         SELECT transaction_id FROM (
             SELECT transaction_id, due_ms,
                    ROW_NUMBER() OVER (PARTITION BY client_id ORDER BY due_ms) AS turn
             FROM offered) AS ranked
         ORDER BY turn, due_ms LIMIT $3"#
    };
}

/// The deliveries a claim on SQLite takes (one node: no rows are
/// another's): `$1` now, `$3` the limit.
pub(crate) const SQLITE_CLAIMABLE: &str = fair_claim!(sqlite, "");

/// What [`Store::step_deliveries`] did: how many deliveries it claimed,
/// the steps that applied, and what the decision gave beside its steps.
pub struct Stepped<X> {
    pub claimed: usize,
    pub applied: Vec<Step>,
    pub beside: X,
}

/// The steps whose transaction is in `moved`.
fn applied_only(steps: Vec<Step>, moved: &HashSet<i64>) -> Vec<Step> {
    steps
        .into_iter()
        .filter(|s| moved.contains(&s.transaction_id()))
        .collect()
}

impl Store {
    /// The worker's step: claims up to `limit` deliveries due at `now_ms`
    /// (as [`Store::claim_deliveries`]), has `decide` give each its step
    /// (in the order given), and records the steps (as
    /// [`Store::record_steps`]). `decide` returns something beside the
    /// steps, handed back with them (the messages for connectors).
    ///
    /// On the hot paths' SQLite thread the claim and the steps are one
    /// transaction and one hand-over: one writer turn and one commit a
    /// batch instead of two, no lease written (nothing else can take the
    /// rows meanwhile; see [`sqlite_steps::claim`]), and a crash before the
    /// commit leaves the deliveries as they were. Elsewhere the claim
    /// commits first (leasing the rows to this node for `lease_ms`) and the
    /// steps after it.
    pub async fn step_deliveries<X: Send + 'static>(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
        elsewhere: &[i64],
        decide: impl FnOnce(&[Due]) -> (Vec<Step>, X) + Send + 'static,
    ) -> sqlx::Result<Stepped<X>> {
        if self.has_thread() {
            return self
                .write_on_thread_checked(move |c| {
                    let tx =
                        c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                    let dues = sqlite_steps::claim(&tx, now_ms, limit)?;
                    let (steps, beside) = decide(&dues);
                    let moved = sqlite_steps::apply(&tx, &steps, now_ms, Claimed::Now)?;
                    tx.commit()?;
                    Ok(Stepped {
                        claimed: dues.len(),
                        applied: applied_only(steps, &moved),
                        beside,
                    })
                })
                .await;
        }
        let dues = self
            .claim_deliveries(now_ms, lease_ms, limit, elsewhere)
            .await?;
        let (steps, beside) = decide(&dues);
        let applied = if steps.is_empty() {
            Vec::new()
        } else {
            self.record_steps(steps).await?
        };
        Ok(Stepped {
            claimed: dues.len(),
            applied,
            beside,
        })
    }

    /// Claims up to `limit` deliveries due at `now_ms`, oldest first, by
    /// moving their due time `lease_ms` ahead.
    pub async fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
        elsewhere: &[i64],
    ) -> sqlx::Result<Vec<Due>> {
        with_db!(self, |pool, writer| {
            // One statement commits by itself: the rows are this worker's as
            // soon as it returns, without a BEGIN and COMMIT of their own.
            //
            // Fairness: each client's due work forms a lane (found by walking the
            // (client_id, due_ms) index one client at a time), each lane offers
            // its oldest rows, and the claim takes them in turns: every client's
            // first, then every client's second, … A blast of 100,000 messages
            // then delays another client's single message by one turn, not by
            // the whole blast; a lone client still gets the full batch.
            //
            // Several nodes on PostgreSQL claim side by side: the rows are
            // locked as they are taken and rows another node holds are
            // skipped, and a row another node claimed meanwhile fails the
            // repeated `due_ms <= $1` (its due time moved), so no delivery is
            // claimed by two nodes.
            //
            // A node leaves alone the messages of carriers whose binds other
            // nodes hold (`elsewhere`): the holder delivers them.
            macro_rules! claim_on_postgres {
                ($only:literal) => {
                    concat!(
                        "UPDATE deliveries SET due_ms = $1 + $2, attempts = attempts + 1
                         WHERE transaction_id IN (
                             SELECT transaction_id FROM deliveries
                             WHERE transaction_id IN (",
                        fair_claim!(postgres, $only),
                        ") AND due_ms <= $1 FOR UPDATE SKIP LOCKED)
                         AND due_ms <= $1
                         RETURNING transaction_id, stage, expires_ms, attempts"
                    )
                };
            }
            let sql = match (PG, elsewhere.is_empty()) {
                (false, _) => concat!(
                    "UPDATE deliveries SET due_ms = $1 + $2, attempts = attempts + 1
                     WHERE transaction_id IN (",
                    fair_claim!(sqlite, ""),
                    ") RETURNING transaction_id, stage, expires_ms, attempts"
                ),
                (true, true) => claim_on_postgres!(""),
                (true, false) => claim_on_postgres!(
                    "AND NOT EXISTS (SELECT 1 FROM transactions t
                                     WHERE t.id = deliveries.transaction_id
                                     AND t.carrier_id = ANY(string_to_array($4, ',')::BIGINT[]))"
                ),
            };
            let mut query = sqlx::query_as(sql).bind(now_ms).bind(lease_ms).bind(limit);
            if PG && !elsewhere.is_empty() {
                // As text: the same code binds for SQLite, which has no arrays.
                let ids: Vec<String> = elsewhere.iter().map(i64::to_string).collect();
                query = query.bind(ids.join(","));
            }
            let mut claimed: Vec<(i64, String, i64, i64)> = query.fetch_all(writer).await?;
            claimed.sort_by_key(|(id, ..)| *id);
            // What the worker needs of a transaction never changes once stored,
            // and it was committed with its delivery: a reader may fetch it,
            // which leaves the one writer free.
            let mut claims: HashMap<i64, (String, i64, i64)> = claimed
                .iter()
                .map(|(id, stage, expires_ms, attempts)| {
                    (*id, (stage.clone(), *expires_ms, *attempts))
                })
                .collect();
            let mut dues = Vec::with_capacity(claimed.len());
            for chunk in claimed.chunks(rows_per_statement(1)) {
                let mut select: QueryBuilder<Db> = QueryBuilder::new(format!(
                    "SELECT {DUE_COLUMNS} FROM transactions t WHERE t.id IN ("
                ));
                let mut list = select.separated(", ");
                for (id, ..) in chunk {
                    list.push_bind(*id);
                }
                select.push(")");
                let rows = on::once(&mut select).fetch_all(pool).await?;
                for row in &rows {
                    let Some((stage, expires_ms, attempts)) = claims.remove(&row.try_get("id")?)
                    else {
                        continue;
                    };
                    dues.push(on::due_from_row(row, stage, expires_ms, attempts)?);
                }
            }
            dues.sort_by_key(|due| due.transaction_id);
            Ok(dues)
        })
    }

    /// Records a worker step's outcomes in one SQL transaction. Returns the
    /// steps that were applied (a delivery whose stage changed since it
    /// was claimed is left alone). Steps are for distinct deliveries, as
    /// one claim gives them; a later step for a delivery already in the
    /// batch is not applied.
    ///
    /// With the hot paths' SQLite thread the batch is one hand-over to it
    /// ([`super::sqlite_steps`]), the steps moving there and back rather
    /// than being copied. Otherwise the statements are set-based, so a
    /// batch costs a handful of statements whatever its size: the stage
    /// moves and the ends (each learning which deliveries were still in
    /// their claimed stage), the statuses, the history, the blast counts
    /// and the callbacks. Only barring a number, which is rare, is a
    /// statement per step.
    pub async fn record_steps(&self, steps: Vec<Step>) -> sqlx::Result<Vec<Step>> {
        let now_ms = now_ms();
        let mut seen = HashSet::with_capacity(steps.len());
        let steps: Vec<Step> = steps
            .into_iter()
            .filter(|s| seen.insert(s.transaction_id()))
            .collect();
        if self.has_thread() {
            return self
                .write_on_thread_checked(move |c| {
                    let moved = sqlite_steps::record(c, &steps, now_ms)?;
                    Ok(applied_only(steps, &moved))
                })
                .await;
        }
        with_db!(self, |pool, writer| {
            let all: Vec<&Step> = steps.iter().collect();
            let mut tx = writer.begin().await?;
            let mut moved = on::move_stages(&mut tx, &all).await?;
            moved.extend(on::finish(&mut tx, &all).await?);
            let applied: Vec<&Step> = all
                .into_iter()
                .filter(|s| moved.contains(&s.transaction_id()))
                .collect();
            on::set_statuses(&mut tx, &applied, now_ms).await?;
            on::insert_history(&mut tx, &applied, now_ms).await?;
            on::count_blasts(&mut tx, &applied).await?;
            let hooks: Vec<&NewWebhook> = applied
                .iter()
                .filter_map(|s| match s {
                    Step::Finish { webhook, .. } => webhook.as_ref(),
                    Step::Advance { .. } => None,
                })
                .collect();
            on::enqueue_webhooks(&mut tx, &hooks).await?;
            for step in &applied {
                if let Step::Finish {
                    bar: Some((number, carrier_id)),
                    ..
                } = step
                {
                    on::bar(&mut tx, number, *carrier_id, now_ms).await?;
                }
            }
            tx.commit().await?;
            Ok(applied_only(steps, &moved))
        })
    }

    /// Queues the messages held for a number's double opt-in of a campaign
    /// (the number answered Y). Returns how many; the caller wakes the worker.
    pub async fn release_held(&self, number: &str, campaign_id: i64) -> sqlx::Result<u64> {
        with_db!(self, |pool, writer| {
            let mut tx = writer.begin().await?;
            let released = on::release_held(&mut tx, number, campaign_id).await?;
            if released > 0 {
                on::notify_nodes(&mut tx, crate::cluster::DELIVERIES).await?;
            }
            tx.commit().await?;
            Ok(released)
        })
    }
}

/// SQLite binds at most this many values in one statement.
const MAX_BINDS: usize = 32_766;

/// Rows per statement for a VALUES list of `binds` values a row.
fn rows_per_statement(binds: usize) -> usize {
    MAX_BINDS / binds
}

dual! {
    /// A delivery as claimed (`stage`, `expires_ms`, `attempts`) with its
    /// transaction's [`DUE_COLUMNS`].
    pub(crate) fn due_from_row(
        row: &DbRow,
        stage: String,
        expires_ms: i64,
        attempts: i64,
    ) -> sqlx::Result<Due> {
        Ok(Due {
            transaction_id: row.try_get("id")?,
            stage,
            expires_ms,
            attempts,
            hash: row.try_get("hash")?,
            client_id: row.try_get("client_id")?,
            campaign_id: row.try_get("campaign_id")?,
            recipient: row.try_get("recipient")?,
            sender: row.try_get("sender")?,
            body: row.try_get("body")?,
            kind: row.try_get("kind")?,
            carrier_id: row.try_get("carrier_id")?,
            callback: row.try_get("callback")?,
            udp: row.try_get("udp")?,
            blast_id: row.try_get("blast_id")?,
        })
    }

    /// Runs a statement whose text depends on the row count: such texts are
    /// many, so they are not kept in the connection's statement cache, where
    /// they would push out the statements that are run all the time.
    pub(crate) fn once(query: &mut QueryBuilder<Db>) -> sqlx::query::Query<'_, Db, <Db as sqlx::Database>::Arguments> {
        query.build().persistent(false)
    }

    /// Moves the advanced deliveries to their next stage; returns those that
    /// were still in the stage they were claimed in.
    pub(crate) async fn move_stages(tx: &mut Conn, steps: &[&Step]) -> sqlx::Result<HashSet<i64>> {
        let moves: Vec<(i64, &str, &str, i64)> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Advance {
                    transaction_id,
                    from_stage,
                    stage,
                    due_ms,
                    ..
                } => Some((*transaction_id, from_stage.as_str(), *stage, *due_ms)),
                Step::Finish { .. } => None,
            })
            .collect();
        let mut moved = HashSet::with_capacity(moves.len());
        for chunk in moves.chunks(rows_per_statement(4)) {
            let mut update: QueryBuilder<Db> =
                QueryBuilder::new("WITH s (id, from_stage, stage, due_ms) AS (");
            update.push_values(chunk, |mut b, (id, from_stage, stage, due_ms)| {
                b.push_bind(*id)
                    .push_bind(*from_stage)
                    .push_bind(*stage)
                    .push_bind(*due_ms);
            });
            update.push(
                ") UPDATE deliveries SET stage = s.stage, due_ms = s.due_ms FROM s
                 WHERE deliveries.transaction_id = s.id AND deliveries.stage = s.from_stage
                 RETURNING transaction_id",
            );
            let ids: Vec<i64> = on::once(&mut update)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|row| row.try_get(0))
                .collect::<sqlx::Result<_>>()?;
            moved.extend(ids);
        }
        Ok(moved)
    }

    /// Removes the deliveries of finished transactions; returns those that
    /// were still in the stage they were claimed in.
    pub(crate) async fn finish(tx: &mut Conn, steps: &[&Step]) -> sqlx::Result<HashSet<i64>> {
        let ends: Vec<(i64, &str)> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Finish {
                    transaction_id,
                    from_stage,
                    ..
                } => Some((*transaction_id, from_stage.as_str())),
                Step::Advance { .. } => None,
            })
            .collect();
        let mut removed = HashSet::with_capacity(ends.len());
        for chunk in ends.chunks(rows_per_statement(2)) {
            let mut delete: QueryBuilder<Db> = QueryBuilder::new("WITH s (id, from_stage) AS (");
            delete.push_values(chunk, |mut b, (id, from_stage)| {
                b.push_bind(*id).push_bind(*from_stage);
            });
            // The plain IN lets the key find each row; the pair IN alone
            // would scan the whole queue.
            delete.push(
                ") DELETE FROM deliveries WHERE transaction_id IN (SELECT id FROM s)
                 AND (transaction_id, stage) IN (SELECT id, from_stage FROM s)
                 RETURNING transaction_id",
            );
            let ids: Vec<i64> = on::once(&mut delete)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|row| row.try_get(0))
                .collect::<sqlx::Result<_>>()?;
            removed.extend(ids);
        }
        Ok(removed)
    }

    /// Sets the new statuses (and, for an end, the code) of applied steps.
    pub(crate) async fn set_statuses(
        tx: &mut Conn,
        applied: &[&Step],
        now_ms: i64,
    ) -> sqlx::Result<()> {
        let changes: Vec<(i64, &str, Option<i64>)> = applied
            .iter()
            .filter_map(|s| match s {
                Step::Advance {
                    transaction_id,
                    status,
                    ..
                } => status.map(|status| (*transaction_id, status, None)),
                Step::Finish {
                    transaction_id,
                    status,
                    code,
                    ..
                } => Some((*transaction_id, *status, Some(*code))),
            })
            .collect();
        for chunk in changes.chunks(rows_per_statement(3) - 1) {
            let mut update: QueryBuilder<Db> = QueryBuilder::new("WITH s (id, status, code) AS (");
            update.push_values(chunk, |mut b, (id, status, code)| {
                b.push_bind(*id).push_bind(*status).push_bind(*code);
            });
            update.push(
                ") UPDATE transactions SET status = s.status,
                 code = COALESCE(s.code, transactions.code), updated_at = ",
            );
            update.push_bind(now_ms / 1000);
            update.push(" FROM s WHERE transactions.id = s.id");
            on::once(&mut update).execute(&mut *tx).await?;
        }
        Ok(())
    }

    /// The history events of applied steps.
    pub(crate) async fn insert_history(
        tx: &mut Conn,
        applied: &[&Step],
        now_ms: i64,
    ) -> sqlx::Result<()> {
        let events: Vec<(i64, &str)> = applied
            .iter()
            .flat_map(|s| s.events().iter().map(|e| (s.transaction_id(), e.as_str())))
            .collect();
        for chunk in events.chunks(rows_per_statement(3)) {
            let mut insert: QueryBuilder<Db> =
                QueryBuilder::new("INSERT INTO history (transaction_id, at_ms, event) ");
            insert.push_values(chunk, |mut b, (id, event)| {
                b.push_bind(*id).push_bind(now_ms).push_bind(*event);
            });
            on::once(&mut insert).execute(&mut *tx).await?;
        }
        Ok(())
    }

    /// Counts the ends of blast messages, sent (COMPLETE) or failed, one row
    /// per blast.
    pub(crate) async fn count_blasts(tx: &mut Conn, applied: &[&Step]) -> sqlx::Result<()> {
        let mut counts: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        for step in applied {
            if let Step::Finish {
                blast_id: Some(blast_id),
                code,
                ..
            } = step
            {
                let (sent, failed) = counts.entry(*blast_id).or_default();
                if *code == 1 {
                    *sent += 1;
                } else {
                    *failed += 1;
                }
            }
        }
        let counts: Vec<(i64, (i64, i64))> = counts.into_iter().collect();
        for chunk in counts.chunks(rows_per_statement(3)) {
            let mut update: QueryBuilder<Db> = QueryBuilder::new("WITH s (id, sent, failed) AS (");
            update.push_values(chunk, |mut b, (id, (sent, failed))| {
                b.push_bind(*id).push_bind(*sent).push_bind(*failed);
            });
            update.push(
                ") UPDATE blasts SET sent = blasts.sent + s.sent, failed = blasts.failed + s.failed
                 FROM s WHERE blasts.id = s.id",
            );
            on::once(&mut update).execute(&mut *tx).await?;
        }
        Ok(())
    }

    /// Bars a number on its carrier from now on.
    pub(crate) async fn bar(
        tx: &mut Conn,
        number: &str,
        carrier_id: i64,
        now_ms: i64,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO blacklist (number, carrier_id, created_at) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(number)
        .bind(carrier_id)
        .bind(now_ms / 1000)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Queues transactions 1..=n, each due for submission with two history
    /// events, as an accepted send leaves them.
    async fn seed(store: &Store, n: i64) {
        let mut tx = crate::store::test_sqlite(store)
            .begin()
            .await
            .expect("begin");
        for sql in [
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1)
             INSERT INTO transactions (id, hash, client_id, campaign_id, sender, from_name, recipient,
                 to_input, to_name, kind, body, status, created_at, updated_at)
             SELECT i, 'abcd1234', 1, 1, '21534', '', '1310867' || printf('%04d', i % 10000), '', '',
                 'sms', 'hi', 'QUEUED', 0, 0 FROM n",
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1)
             INSERT INTO deliveries (transaction_id, stage, due_ms, expires_ms)
             SELECT i, 'submit', 0, 9000000000000 FROM n",
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1)
             INSERT INTO history (transaction_id, at_ms, event)
             SELECT i, 0, e FROM n, (SELECT 'Transaction Created' AS e UNION ALL SELECT 'Transaction Queued')",
        ] {
            sqlx::query(sql).bind(n).execute(&mut *tx).await.expect("seed");
        }
        tx.commit().await.expect("commit");
    }

    async fn blast(store: &Store) -> i64 {
        sqlx::query_scalar(
            "INSERT INTO blasts (client_id, list_id, campaign_id, request, created_at)
             VALUES (1, 1, 1, '{}', 0) RETURNING id",
        )
        .fetch_one(crate::store::test_sqlite(store))
        .await
        .expect("blast")
    }

    fn advance(id: i64, from_stage: &str, due_ms: i64) -> Step {
        Step::Advance {
            transaction_id: id,
            from_stage: from_stage.into(),
            status: Some("SENT"),
            events: vec!["SMS Sent".into()],
            stage: "receipt",
            due_ms,
        }
    }

    fn finish(id: i64, from_stage: &str, code: i64, blast_id: Option<i64>) -> Step {
        Step::Finish {
            transaction_id: id,
            from_stage: from_stage.into(),
            status: if code == 1 { "COMPLETE" } else { "FAILED" },
            code,
            events: vec![format!("Ended {code}")],
            webhook: None,
            blast_id,
            bar: None,
        }
    }

    async fn delivery(store: &Store, id: i64) -> Option<(String, i64)> {
        sqlx::query_as("SELECT stage, due_ms FROM deliveries WHERE transaction_id = $1")
            .bind(id)
            .fetch_optional(crate::store::test_sqlite(store))
            .await
            .expect("delivery")
    }

    async fn status(store: &Store, id: i64) -> (String, Option<i64>) {
        sqlx::query_as("SELECT status, code FROM transactions WHERE id = $1")
            .bind(id)
            .fetch_one(crate::store::test_sqlite(store))
            .await
            .expect("status")
    }

    async fn events(store: &Store, id: i64) -> Vec<String> {
        sqlx::query_scalar("SELECT event FROM history WHERE transaction_id = $1 ORDER BY rowid")
            .bind(id)
            .fetch_all(crate::store::test_sqlite(store))
            .await
            .expect("history")
    }

    async fn count(store: &Store, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(crate::store::test_sqlite(store))
            .await
            .expect("count")
    }

    #[tokio::test]
    async fn a_mixed_batch_is_applied_except_where_the_stage_changed() {
        let (_dir, store) = crate::store::test_store().await;
        a_mixed_batch(store).await;
    }

    /// A store without the SQLite thread: its writes go through sqlx, as
    /// on PostgreSQL.
    async fn store_through_sqlx() -> (tempfile::TempDir, Store) {
        let (dir, mut store) = crate::store::test_store().await;
        store.thread = None;
        (dir, store)
    }

    #[tokio::test]
    async fn a_mixed_batch_is_applied_alike_through_sqlx() {
        let (_dir, store) = store_through_sqlx().await;
        a_mixed_batch(store).await;
    }

    async fn a_mixed_batch(store: Store) {
        seed(&store, 8).await;
        let (first, second) = (blast(&store).await, blast(&store).await);
        let mut with_callback = finish(2, "submit", 1, Some(first));
        if let Step::Finish { webhook, .. } = &mut with_callback {
            *webhook = Some(NewWebhook {
                client_id: 1,
                url: "http://127.0.0.1:9/end".into(),
                content_type: "application/xml",
                body: "<response>2</response>".into(),
            });
        }
        let mut barred = finish(7, "submit", 604, None);
        if let Step::Finish { bar, .. } = &mut barred {
            *bar = Some(("13108670007".into(), 3));
        }
        let steps = vec![
            advance(1, "submit", 5_000),
            with_callback,
            finish(3, "submit", 600, Some(first)),
            finish(4, "submit", 1, Some(second)),
            // Claimed in another stage than the one the delivery is in now.
            advance(5, "held", 6_000),
            finish(6, "receipt", 1, Some(second)),
            barred,
            finish(8, "submit", 1, Some(second)),
        ];

        let applied = store.record_steps(steps).await.expect("recorded");

        let ids: Vec<i64> = applied.iter().map(|s| s.transaction_id()).collect();
        assert_eq!(ids, [1, 2, 3, 4, 7, 8]);
        assert_eq!(delivery(&store, 1).await, Some(("receipt".into(), 5_000)));
        for id in [2, 3, 4, 7, 8] {
            assert_eq!(delivery(&store, id).await, None, "delivery {id} ended");
        }
        for id in [5, 6] {
            assert_eq!(delivery(&store, id).await, Some(("submit".into(), 0)));
            assert_eq!(status(&store, id).await, ("QUEUED".into(), None));
            assert_eq!(events(&store, id).await.len(), 2);
        }
        assert_eq!(status(&store, 1).await, ("SENT".into(), None));
        assert_eq!(status(&store, 2).await, ("COMPLETE".into(), Some(1)));
        assert_eq!(status(&store, 3).await, ("FAILED".into(), Some(600)));
        assert_eq!(status(&store, 7).await, ("FAILED".into(), Some(604)));
        assert_eq!(
            events(&store, 1).await,
            ["Transaction Created", "Transaction Queued", "SMS Sent"]
        );
        assert_eq!(
            events(&store, 3).await.last().map(String::as_str),
            Some("Ended 600")
        );

        let counts: Vec<(i64, i64, i64)> =
            sqlx::query_as("SELECT id, sent, failed FROM blasts ORDER BY id")
                .fetch_all(crate::store::test_sqlite(&store))
                .await
                .expect("blasts");
        assert_eq!(counts, [(first, 1, 1), (second, 2, 0)]);

        let hooks: Vec<(String, String)> = sqlx::query_as("SELECT url, body FROM webhooks")
            .fetch_all(crate::store::test_sqlite(&store))
            .await
            .expect("webhooks");
        assert_eq!(
            hooks,
            [(
                "http://127.0.0.1:9/end".into(),
                "<response>2</response>".into()
            )]
        );
        assert_eq!(
            count(
                &store,
                "SELECT COUNT(*) FROM blacklist WHERE number = '13108670007' AND carrier_id = 3"
            )
            .await,
            1
        );
    }

    #[tokio::test]
    async fn a_step_claims_decides_and_records_on_the_thread() {
        let (_dir, store) = crate::store::test_store().await;
        a_step(store).await;
    }

    #[tokio::test]
    async fn a_step_claims_decides_and_records_alike_through_sqlx() {
        let (_dir, store) = store_through_sqlx().await;
        a_step(store).await;
    }

    /// Two steps of three over five due deliveries: each claims what is
    /// left, in id order, counts an attempt, and records what `decide`
    /// said; what `decide` gives beside its steps comes back.
    async fn a_step(store: Store) {
        seed(&store, 5).await;
        let step = |now: i64| {
            store.step_deliveries(now, 60_000, 3, &[], move |dues: &[Due]| {
                let steps = dues
                    .iter()
                    .map(|due| match due.transaction_id {
                        2 => finish(2, &due.stage, 1, None),
                        id => advance(id, &due.stage, now + 10_000),
                    })
                    .collect();
                let seen: Vec<(i64, i64)> = dues
                    .iter()
                    .map(|d| (d.transaction_id, d.attempts))
                    .collect();
                (steps, seen)
            })
        };
        let first = step(1_000).await.expect("first step");
        assert_eq!(first.claimed, 3);
        assert_eq!(first.beside, vec![(1, 1), (2, 1), (3, 1)]);
        let applied: Vec<i64> = first.applied.iter().map(Step::transaction_id).collect();
        assert_eq!(applied, vec![1, 2, 3]);
        assert_eq!(delivery(&store, 1).await, Some(("receipt".into(), 11_000)));
        assert_eq!(delivery(&store, 2).await, None);
        assert_eq!(status(&store, 2).await, ("COMPLETE".into(), Some(1)));
        assert_eq!(
            events(&store, 1).await.last().map(String::as_str),
            Some("SMS Sent")
        );
        let second = step(2_000).await.expect("second step");
        assert_eq!(second.beside, vec![(4, 1), (5, 1)]);
        assert_eq!(delivery(&store, 5).await, Some(("receipt".into(), 12_000)));
        // Nothing due now: an empty step.
        let third = step(3_000).await.expect("third step");
        assert_eq!((third.claimed, third.applied.len()), (0, 0));
        // Due again later, with a second attempt counted.
        let fourth = step(11_000).await.expect("fourth step");
        assert_eq!(fourth.beside, vec![(1, 2), (3, 2)]);
    }

    #[tokio::test]
    async fn the_claim_is_planned_once_not_at_every_step() {
        let (_dir, store) = crate::store::test_store().await;
        seed(&store, 4).await;
        for now in [1, 2, 3] {
            store
                .step_deliveries(now, 1, 1, &[], |dues: &[Due]| {
                    let steps = dues
                        .iter()
                        .map(|d| advance(d.transaction_id, &d.stage, 0))
                        .collect();
                    (steps, ())
                })
                .await
                .expect("step");
        }
        let reprepared = store
            .write_on_thread(|c| {
                c.prepare_cached(SQLITE_CLAIMABLE)
                    .map(|s| s.get_status(rusqlite::StatementStatus::RePrepare))
            })
            .await
            .expect("the store has its thread")
            .expect("on the thread")
            .expect("prepared");
        assert_eq!(reprepared, 0, "the claim was prepared anew at a step");
    }

    #[tokio::test]
    async fn a_second_step_for_the_same_delivery_is_not_applied() {
        let (_dir, store) = crate::store::test_store().await;
        seed(&store, 1).await;
        let steps = vec![advance(1, "submit", 5_000), finish(1, "submit", 1, None)];
        let applied = store.record_steps(steps).await.expect("recorded");
        assert_eq!(applied.len(), 1);
        assert!(matches!(applied[0], Step::Advance { .. }));
        assert_eq!(delivery(&store, 1).await, Some(("receipt".into(), 5_000)));
        assert_eq!(status(&store, 1).await, ("SENT".into(), None));
    }

    #[tokio::test]
    async fn batches_beyond_the_bound_value_limit_are_split() {
        let (_dir, store) = crate::store::test_store().await;
        // 9,000 moves (4 values a row) and 17,000 ends (2 a row) each
        // exceed what one statement can bind.
        seed(&store, 26_000).await;
        let blast_id = blast(&store).await;
        let steps: Vec<Step> = (1..=26_000)
            .map(|id| {
                if id <= 9_000 {
                    advance(id, "submit", 7_000)
                } else {
                    finish(id, "submit", 1, Some(blast_id))
                }
            })
            .collect();
        let applied = store.record_steps(steps).await.expect("recorded");
        assert_eq!(applied.len(), 26_000);
        assert_eq!(
            count(
                &store,
                "SELECT COUNT(*) FROM deliveries WHERE stage = 'receipt'"
            )
            .await,
            9_000
        );
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM deliveries").await,
            9_000
        );
        assert_eq!(
            count(
                &store,
                "SELECT COUNT(*) FROM transactions WHERE status = 'COMPLETE' AND code = 1"
            )
            .await,
            17_000
        );
        assert_eq!(
            count(
                &store,
                "SELECT COUNT(*) FROM transactions WHERE status = 'SENT'"
            )
            .await,
            9_000
        );
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM history").await,
            26_000 * 3
        );
        assert_eq!(count(&store, "SELECT sent FROM blasts").await, 17_000);
    }

    #[tokio::test]
    async fn claims_take_clients_in_turns() {
        let (_dir, store) = crate::store::test_store().await;
        seed(&store, 1000).await;
        // Transactions 1..=990 are one client's blast, due first; 991..=1000
        // belong to ten other clients, due later.
        sqlx::query("UPDATE deliveries SET client_id = 1, due_ms = transaction_id")
            .execute(crate::store::test_sqlite(&store))
            .await
            .unwrap();
        sqlx::query(
            "UPDATE deliveries SET client_id = transaction_id, due_ms = 5000 WHERE transaction_id > 990",
        )
        .execute(crate::store::test_sqlite(&store))
        .await
        .unwrap();
        let claimed = store
            .claim_deliveries(10_000, 60_000, 20, &[])
            .await
            .unwrap();
        let ids: Vec<i64> = claimed.iter().map(|d| d.transaction_id).collect();
        assert_eq!(ids.len(), 20);
        for single in 991..=1000 {
            assert!(
                ids.contains(&single),
                "client {single} waited behind the blast: {ids:?}"
            );
        }
        // The blast's oldest ten fill the rest, in order.
        assert_eq!(
            ids.iter()
                .filter(|id| **id <= 990)
                .copied()
                .collect::<Vec<_>>(),
            (1..=10).collect::<Vec<_>>()
        );
        // A lone client gets the whole batch.
        let next = store
            .claim_deliveries(10_000, 60_000, 20, &[])
            .await
            .unwrap();
        assert_eq!(
            next.iter().map(|d| d.transaction_id).collect::<Vec<_>>(),
            (11..=30).collect::<Vec<_>>()
        );
    }
}
