//! Delivery work as stored: the `deliveries` queue and the writes that move
//! a transaction along (spec section 7).
//!
//! The worker claims a batch of due rows in one statement, works on them
//! without holding any lock, then records every outcome of the batch in one
//! SQL transaction. A claim pushes the rows' due time one lease ahead, so a
//! worker that dies mid-step leaves its work to be claimed again later.

use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use super::webhook::{NewWebhook, enqueue_webhook};
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
    pub kind: String,
    pub carrier_id: Option<i64>,
    pub callback: String,
    pub udp: String,
    pub blast_id: Option<i64>,
}

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
    fn transaction_id(&self) -> i64 {
        match self {
            Step::Advance { transaction_id, .. } | Step::Finish { transaction_id, .. } => {
                *transaction_id
            }
        }
    }

    fn events(&self) -> &[String] {
        match self {
            Step::Advance { events, .. } | Step::Finish { events, .. } => events,
        }
    }
}

fn due_from_row(row: &sqlx::sqlite::SqliteRow) -> sqlx::Result<Due> {
    Ok(Due {
        transaction_id: row.try_get("transaction_id")?,
        stage: row.try_get("stage")?,
        expires_ms: row.try_get("expires_ms")?,
        attempts: row.try_get("attempts")?,
        hash: row.try_get("hash")?,
        client_id: row.try_get("client_id")?,
        campaign_id: row.try_get("campaign_id")?,
        recipient: row.try_get("recipient")?,
        kind: row.try_get("kind")?,
        carrier_id: row.try_get("carrier_id")?,
        callback: row.try_get("callback")?,
        udp: row.try_get("udp")?,
        blast_id: row.try_get("blast_id")?,
    })
}

impl Store {
    /// Claims up to `limit` deliveries due at `now_ms`, oldest first, by
    /// moving their due time `lease_ms` ahead.
    pub async fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> sqlx::Result<Vec<Due>> {
        let mut tx = self.writer.begin().await?;
        // The UPDATE comes first so this transaction holds the write lock
        // from its first statement on.
        let ids: Vec<i64> = sqlx::query_scalar(
            "UPDATE deliveries SET due_ms = $1 + $2, attempts = attempts + 1
             WHERE transaction_id IN (
                 SELECT transaction_id FROM deliveries WHERE due_ms <= $1 ORDER BY due_ms LIMIT $3)
             RETURNING transaction_id",
        )
        .bind(now_ms)
        .bind(lease_ms)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        if ids.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let mut select: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT d.transaction_id, d.stage, d.expires_ms, d.attempts, t.hash, t.client_id,
             t.campaign_id, t.recipient, t.kind, t.carrier_id, t.callback, t.udp, t.blast_id
             FROM deliveries d JOIN transactions t ON t.id = d.transaction_id
             WHERE d.transaction_id IN (",
        );
        let mut list = select.separated(", ");
        for id in &ids {
            list.push_bind(*id);
        }
        select.push(") ORDER BY d.transaction_id");
        let rows = select.build().fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.iter().map(due_from_row).collect()
    }

    /// Records a worker step's outcomes in one SQL transaction. Returns the
    /// steps that were applied (a delivery whose stage changed since it
    /// was claimed is left alone).
    pub async fn record_steps<'a>(&self, steps: &'a [Step]) -> sqlx::Result<Vec<&'a Step>> {
        let now_ms = now_ms();
        let mut tx = self.writer.begin().await?;
        let mut applied = Vec::with_capacity(steps.len());
        for step in steps {
            if record_step(&mut tx, step, now_ms).await? {
                applied.push(step);
            }
        }
        let events: Vec<(i64, &str)> = applied
            .iter()
            .flat_map(|s| s.events().iter().map(|e| (s.transaction_id(), e.as_str())))
            .collect();
        for chunk in events.chunks(1000) {
            let mut insert: QueryBuilder<Sqlite> =
                QueryBuilder::new("INSERT INTO history (transaction_id, at_ms, event) ");
            insert.push_values(chunk, |mut b, (id, event)| {
                b.push_bind(*id).push_bind(now_ms).push_bind(*event);
            });
            insert.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(applied)
    }

    /// Queues the messages held for a number's double opt-in of a campaign
    /// (the number answered Y). Returns how many; the caller wakes the worker.
    pub async fn release_held(&self, number: &str, campaign_id: i64) -> sqlx::Result<u64> {
        let mut tx = self.writer.begin().await?;
        let released = super::user::release_held(&mut tx, number, campaign_id).await?;
        tx.commit().await?;
        Ok(released)
    }
}

/// Writes one step; false when its delivery is no longer in the claimed stage.
async fn record_step(tx: &mut SqliteConnection, step: &Step, now_ms: i64) -> sqlx::Result<bool> {
    match step {
        Step::Advance {
            transaction_id,
            from_stage,
            status,
            stage,
            due_ms,
            ..
        } => {
            let moved = sqlx::query(
                "UPDATE deliveries SET stage = $1, due_ms = $2 WHERE transaction_id = $3 AND stage = $4",
            )
            .bind(*stage)
            .bind(due_ms)
            .bind(transaction_id)
            .bind(from_stage)
            .execute(&mut *tx)
            .await?;
            if moved.rows_affected() == 0 {
                return Ok(false);
            }
            if let Some(status) = status {
                set_status(tx, *transaction_id, status, None, now_ms).await?;
            }
        }
        Step::Finish {
            transaction_id,
            from_stage,
            status,
            code,
            webhook,
            blast_id,
            bar,
            ..
        } => {
            let removed =
                sqlx::query("DELETE FROM deliveries WHERE transaction_id = $1 AND stage = $2")
                    .bind(transaction_id)
                    .bind(from_stage)
                    .execute(&mut *tx)
                    .await?;
            if removed.rows_affected() == 0 {
                return Ok(false);
            }
            set_status(tx, *transaction_id, status, Some(*code), now_ms).await?;
            if let Some(hook) = webhook {
                enqueue_webhook(tx, hook).await?;
            }
            if let Some(blast_id) = blast_id {
                let count = if *code == 1 {
                    "UPDATE blasts SET sent = sent + 1 WHERE id = $1"
                } else {
                    "UPDATE blasts SET failed = failed + 1 WHERE id = $1"
                };
                sqlx::query(count).bind(blast_id).execute(&mut *tx).await?;
            }
            if let Some((number, carrier_id)) = bar {
                sqlx::query(
                    "INSERT INTO blacklist (number, carrier_id, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                )
                .bind(number)
                .bind(carrier_id)
                .bind(now_ms / 1000)
                .execute(&mut *tx)
                .await?;
            }
        }
    }
    Ok(true)
}

async fn set_status(
    tx: &mut SqliteConnection,
    transaction_id: i64,
    status: &str,
    code: Option<i64>,
    now_ms: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE transactions SET status = $1, code = COALESCE($2, code), updated_at = $3 WHERE id = $4",
    )
    .bind(status)
    .bind(code)
    .bind(now_ms / 1000)
    .bind(transaction_id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
