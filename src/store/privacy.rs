//! Privacy (spec section 9): forgetting a person, and retention of message
//! bodies, inbound texts, media and handsets. Transaction ids, statuses and
//! opt-out records always stay: an opted-out number must never be messaged
//! again, even once everything else about it is gone.

use crate::store::dual;
use crate::with_db;

use super::{Store, now};

/// What an erasure removed, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Erased {
    pub transactions: u64,
    pub inbound: u64,
    pub list_memberships: u64,
    pub media: Vec<i64>,
    pub handsets: u64,
}

impl Store {
    /// Erases what is kept about `number` (E.164 digits) but its opt-out
    /// records. Returns the content ids whose files the caller removes.
    pub async fn forget(&self, number: &str) -> sqlx::Result<Erased> {
        with_db!(self, |pool, writer| {
            let mut tx = writer.begin().await?;
            let mut erased = Erased {
                transactions: on::run(&mut tx, number, "UPDATE transactions SET body = NULL, subject = '', recipient = '', to_input = '', to_name = '', udp = '' WHERE recipient = $1").await?,
                inbound: on::run(&mut tx, number, "UPDATE inbound SET body = NULL, subject = '', sender = '' WHERE sender = $1").await?,
                list_memberships: on::run(&mut tx, number, "DELETE FROM list_members WHERE number = $1").await?,
                handsets: on::run(&mut tx, number, "DELETE FROM users WHERE number = $1").await?,
                media: Vec::new(),
            };
            on::run(
                &mut tx,
                number,
                "DELETE FROM conversations WHERE number = $1",
            )
            .await?;
            // Only the opt-outs stay: they are what keeps the number from being messaged.
            on::run(
                &mut tx,
                number,
                "DELETE FROM opt_status WHERE number = $1 AND status <> -2",
            )
            .await?;
            on::run(
                &mut tx,
                number,
                "UPDATE opt_status SET source = 'forgotten' WHERE number = $1",
            )
            .await?;
            erased.media = sqlx::query_scalar(
                "UPDATE media SET destroyed_at = $2, name = '', filename = '', sender = NULL
                 WHERE sender = $1 RETURNING id",
            )
            .bind(number)
            .bind(now())
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(erased)
        })
    }

    /// Removes what retention no longer allows: bodies and inbound texts of
    /// messages older than `before` (unix seconds), media stored before it,
    /// and handsets learned before it. Returns the content ids whose files
    /// the caller removes.
    pub async fn expire(&self, before: i64) -> sqlx::Result<Vec<i64>> {
        with_db!(self, |pool, writer| {
            let mut tx = writer.begin().await?;
            sqlx::query("UPDATE transactions SET body = NULL, subject = '' WHERE created_at < $1 AND body IS NOT NULL")
                .bind(before)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE inbound SET body = NULL, subject = '' WHERE created_at < $1 AND body IS NOT NULL")
                .bind(before)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE users SET handset_id = NULL WHERE updated_at < $1 AND handset_id IS NOT NULL",
            )
            .bind(before)
            .execute(&mut *tx)
            .await?;
            let media = sqlx::query_scalar(
                "UPDATE media SET destroyed_at = $2 WHERE created_at < $1 AND destroyed_at IS NULL RETURNING id",
            )
            .bind(before)
            .bind(now())
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(media)
        })
    }
}

dual! {
    pub(crate) async fn run(tx: &mut Conn, number: &str, sql: &'static str) -> sqlx::Result<u64> {
        Ok(sqlx::query(sql)
            .bind(number)
            .execute(&mut *tx)
            .await?
            .rows_affected())
    }
}
