//! Transactions as stored (spec section 5.2): one row per message, its
//! history, and the facts a send checks before accepting (promotions, a
//! number's opt status).

use crate::store::dual;
use crate::with_db;
use sqlx::Row;

use super::Store;

/// A stored transaction, as `transaction.lookup` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub id: i64,
    pub hash: String,
    pub client_id: i64,
    pub campaign_id: i64,
    pub sender: String,
    pub from_name: String,
    pub recipient: String,
    pub to_input: String,
    pub to_name: String,
    pub kind: String,
    pub content_id: Option<i64>,
    /// HELD, QUEUED, SENT, COMPLETE or FAILED.
    pub status: String,
    /// The final code once COMPLETE (1) or FAILED (600–607).
    pub code: Option<i64>,
    pub carrier_id: Option<i64>,
    pub blast_id: Option<i64>,
}

/// One history event: unix milliseconds and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub at_ms: i64,
    pub event: String,
}

impl Store {
    /// A transaction by message_id, whoever owns it (callers check).
    pub async fn transaction(&self, id: i64) -> sqlx::Result<Option<Transaction>> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let row = sqlx::query(
                "SELECT id, hash, client_id, campaign_id, sender, from_name, recipient, to_input, to_name,
                 kind, content_id, status, code, carrier_id, blast_id FROM transactions WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?;
            row.as_ref().map(on::transaction_from_row).transpose()
        })
    }

    /// A transaction with its history, oldest event first, in one read
    /// (`transaction.lookup`'s: two reads cost two hand-overs to a reader).
    pub async fn transaction_with_history(
        &self,
        id: i64,
    ) -> sqlx::Result<Option<(Transaction, Vec<Event>)>> {
        self.check_faults()?;
        if let Some(reads) = &self.reads {
            return reads
                .transaction_with_history(id)
                .map_err(super::from_rusqlite);
        }
        with_db!(self, |pool, writer| {
            let rows = sqlx::query(
                "SELECT t.id, t.hash, t.client_id, t.campaign_id, t.sender, t.from_name, t.recipient,
                 t.to_input, t.to_name, t.kind, t.content_id, t.status, t.code, t.carrier_id,
                 t.blast_id, h.at_ms, h.event
                 FROM transactions t LEFT JOIN history h ON h.transaction_id = t.id
                 WHERE t.id = $1 ORDER BY h.at_ms, h.rowid",
            )
            .bind(id)
            .fetch_all(pool)
            .await?;
            let Some(first) = rows.first() else {
                return Ok(None);
            };
            let transaction = on::transaction_from_row(first)?;
            let mut events = Vec::with_capacity(rows.len());
            for row in &rows {
                if let Some(at_ms) = row.try_get::<Option<i64>, _>("at_ms")? {
                    events.push(Event {
                        at_ms,
                        event: row.try_get("event")?,
                    });
                }
            }
            Ok(Some((transaction, events)))
        })
    }

    /// A transaction's history, oldest first (insertion order breaks ties).
    pub async fn history(&self, transaction_id: i64) -> sqlx::Result<Vec<Event>> {
        with_db!(self, |pool, writer| {
            let rows: Vec<(i64, String)> = sqlx::query_as(
                "SELECT at_ms, event FROM history WHERE transaction_id = $1 ORDER BY at_ms, rowid",
            )
            .bind(transaction_id)
            .fetch_all(pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(at_ms, event)| Event { at_ms, event })
                .collect())
        })
    }

    /// A number's opt status for a campaign: 1 OPTEDIN, 0 GREY, -2
    /// OPTEDOUT; `None` when UNSEEN.
    /// On a SQLite file it is read in place ([`super::sqlite_reads`]);
    /// otherwise concurrent calls share one query ([`super::opt_reads`]).
    pub async fn opt_status_of(&self, number: &str, campaign_id: i64) -> sqlx::Result<Option<i64>> {
        self.check_faults()?;
        if let Some(reads) = &self.reads {
            return reads
                .opt_status(number, campaign_id)
                .map_err(super::from_rusqlite);
        }
        with_db!(self, |pool, writer| {
            if let Some(status) = self.opt_reads.status(number, campaign_id).await {
                return status;
            }
            sqlx::query_scalar(
                "SELECT status FROM opt_status WHERE number = $1 AND campaign_id = $2",
            )
            .bind(number)
            .bind(campaign_id)
            .fetch_optional(pool)
            .await
        })
    }

    /// Whether `code_key` (upper-case) names an approved promotion of the
    /// campaign that runs on `today` (`YYYY-MM-DD`) and is not used up.
    /// Using it up happens when the send is committed ([`super::sends`]).
    pub async fn promo_usable(
        &self,
        campaign_id: i64,
        code_key: &str,
        today: &str,
    ) -> sqlx::Result<bool> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let found: Option<i64> = sqlx::query_scalar(
                "SELECT CAST(1 AS BIGINT) FROM promos
                 WHERE campaign_id = $1 AND code_key = $2 AND status = 'approved'
                   AND (starts IS NULL OR starts = '' OR starts <= $3)
                   AND (ends IS NULL OR ends = '' OR ends >= $3)
                   AND (max_uses IS NULL OR uses < max_uses)",
            )
            .bind(campaign_id)
            .bind(code_key)
            .bind(today)
            .fetch_optional(pool)
            .await?;
            Ok(found.is_some())
        })
    }
}

dual! {
    pub(crate) fn transaction_from_row(row: &DbRow) -> sqlx::Result<Transaction> {
        Ok(Transaction {
            id: row.try_get("id")?,
            hash: row.try_get("hash")?,
            client_id: row.try_get("client_id")?,
            campaign_id: row.try_get("campaign_id")?,
            sender: row.try_get("sender")?,
            from_name: row.try_get("from_name")?,
            recipient: row.try_get("recipient")?,
            to_input: row.try_get("to_input")?,
            to_name: row.try_get("to_name")?,
            kind: row.try_get("kind")?,
            content_id: row.try_get("content_id")?,
            status: row.try_get("status")?,
            code: row.try_get("code")?,
            carrier_id: row.try_get("carrier_id")?,
            blast_id: row.try_get("blast_id")?,
        })
    }
}
