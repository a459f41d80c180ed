//! What the MM7 connector keeps (spec section 7): the message to submit,
//! and the MMSC's id of each submitted message, which its delivery
//! reports name.

use crate::with_db;
use sqlx::Row;

use super::Store;

/// A queued MMS as the MM7 connector submits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mm7Message {
    pub sender: String,
    pub recipient: String,
    pub body: String,
    pub subject: String,
    pub content_id: Option<i64>,
}

impl Store {
    /// The message of a transaction still queued for delivery.
    pub async fn mm7_message(&self, transaction_id: i64) -> sqlx::Result<Option<Mm7Message>> {
        with_db!(self, |pool, writer| {
            let row = sqlx::query(
                "SELECT t.sender, t.recipient, COALESCE(t.body, '') AS body, t.subject, t.content_id
                 FROM transactions t JOIN deliveries d ON d.transaction_id = t.id WHERE t.id = $1",
            )
            .bind(transaction_id)
            .fetch_optional(pool)
            .await?;
            row.map(|row| {
                Ok(Mm7Message {
                    sender: row.try_get("sender")?,
                    recipient: row.try_get("recipient")?,
                    body: row.try_get("body")?,
                    subject: row.try_get("subject")?,
                    content_id: row.try_get("content_id")?,
                })
            })
            .transpose()
        })
    }

    /// Remembers the MMSC's id of a submitted message.
    pub async fn mm7_submitted(
        &self,
        carrier_id: i64,
        message_id: &str,
        transaction_id: i64,
    ) -> sqlx::Result<()> {
        with_db!(self, |pool, writer| {
            sqlx::query(
                "INSERT INTO mm7_messages (message_id, carrier_id, transaction_id) VALUES ($1, $2, $3)
                 ON CONFLICT (carrier_id, message_id) DO UPDATE SET transaction_id = excluded.transaction_id",
            )
            .bind(message_id)
            .bind(carrier_id)
            .bind(transaction_id)
            .execute(writer)
            .await?;
            Ok(())
        })
    }

    /// Forgets an id whose final report was recorded: nothing names it again.
    pub async fn mm7_forget(&self, carrier_id: i64, message_id: &str) -> sqlx::Result<()> {
        with_db!(self, |pool, writer| {
            sqlx::query("DELETE FROM mm7_messages WHERE carrier_id = $1 AND message_id = $2")
                .bind(carrier_id)
                .bind(message_id)
                .execute(writer)
                .await?;
            Ok(())
        })
    }

    /// The transaction the MMSC's `message_id` names on this carrier.
    pub async fn mm7_transaction(
        &self,
        carrier_id: i64,
        message_id: &str,
    ) -> sqlx::Result<Option<i64>> {
        with_db!(self, |pool, writer| {
            sqlx::query_scalar(
                "SELECT transaction_id FROM mm7_messages WHERE carrier_id = $1 AND message_id = $2",
            )
            .bind(carrier_id)
            .bind(message_id)
            .fetch_optional(pool)
            .await
        })
    }
}
