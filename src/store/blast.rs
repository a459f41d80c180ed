//! Blasts (spec section 5.5, `list.send`): one row per send to a list,
//! holding the composed message, the cursor of members queued so far and
//! the counts the blast-end callback reports (spec section 6.3).
//!
//! A blast moves `queueing` (members become transactions, a page per
//! commit) → `sending` (every member is queued or skipped; the delivery
//! worker counts `sent` and `failed`) → `done` (every transaction ended;
//! the callback is queued in the same commit).

use crate::store::dual;
use crate::with_db;
use sqlx::Row;

use super::sends::{NewTransaction, ROWS_PER_STATEMENT, random_hash};
use super::sqlite_thread::commit_blast_page;
use super::webhook::NewWebhook;
use super::{Store, now, now_ms};

/// A blast to create.
#[derive(Debug, Clone)]
pub struct NewBlast {
    pub client_id: i64,
    pub list_id: i64,
    pub campaign_id: i64,
    /// JSON of the composed send.
    pub request: String,
    /// A URL, an e-mail address, or empty.
    pub callback: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blast {
    pub id: i64,
    pub client_id: i64,
    pub list_id: i64,
    pub campaign_id: i64,
    pub request: String,
    pub callback: String,
    /// Members when queueing ended (queued + skipped).
    pub total: i64,
    pub queued: i64,
    pub skipped: i64,
    pub sent: i64,
    pub failed: i64,
    /// The last member handled; members are taken in number order.
    pub cursor: String,
    /// `queueing`, `sending` or `done`.
    pub state: String,
}

/// One page of a blast's members, checked and ready to commit.
#[derive(Debug, Clone, Default)]
pub struct BlastPage {
    pub blast_id: i64,
    /// The cursor the page was read after, and the page's last member.
    pub from: String,
    pub to: String,
    /// The members' transactions.
    pub sends: Vec<NewTransaction>,
    /// Opt-in prompts of members held for a double opt-in: not the blast's
    /// messages, but committed with them.
    pub prompts: Vec<NewTransaction>,
    /// Members the checks skipped.
    pub skipped: i64,
}

impl Store {
    /// Stores a new blast and marks its list used, in one commit.
    pub async fn create_blast(&self, blast: &NewBlast) -> sqlx::Result<i64> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let mut tx = writer.begin().await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO blasts (client_id, list_id, campaign_id, request, callback, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(blast.client_id)
            .bind(blast.list_id)
            .bind(blast.campaign_id)
            .bind(&blast.request)
            .bind(&blast.callback)
            .bind(now())
            .fetch_one(&mut *tx)
            .await?;
            on::mark_list_used(&mut tx, blast.list_id).await?;
            tx.commit().await?;
            Ok(id)
        })
    }

    pub async fn blast(&self, id: i64) -> sqlx::Result<Option<Blast>> {
        with_db!(self, |pool, writer| {
            let row = sqlx::query("SELECT * FROM blasts WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(on::blast_from_row).transpose()
        })
    }

    /// Blasts not done yet, oldest first.
    pub async fn active_blasts(&self) -> sqlx::Result<Vec<Blast>> {
        with_db!(self, |pool, writer| {
            let rows = sqlx::query("SELECT * FROM blasts WHERE state <> 'done' ORDER BY id")
                .fetch_all(pool)
                .await?;
            rows.iter().map(on::blast_from_row).collect()
        })
    }

    /// Up to `limit` members of a list after `after`, in number order, each
    /// with its opt status for the campaign (`None`: UNSEEN), in one read.
    pub async fn blast_members(
        &self,
        list_id: i64,
        campaign_id: i64,
        after: &str,
        limit: i64,
    ) -> sqlx::Result<Vec<(String, Option<i64>)>> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            sqlx::query_as(
                "SELECT m.number, o.status FROM list_members m
                 LEFT JOIN opt_status o ON o.number = m.number AND o.campaign_id = $2
                 WHERE m.list_id = $1 AND m.number > $3 ORDER BY m.number LIMIT $4",
            )
            .bind(list_id)
            .bind(campaign_id)
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await
        })
    }

    /// Commits a page: its transactions, its prompts and the cursor's move
    /// with the counts, all in one commit, so a crash leaves the whole page
    /// or none of it and no member is sent twice. Returns how many members
    /// were refused because their promotion ran out; `None` when another
    /// worker moved the cursor first (then nothing is written).
    pub async fn queue_blast_page(&self, page: BlastPage) -> sqlx::Result<Option<i64>> {
        self.check_faults()?;
        if self.has_thread() {
            return self
                .write_on_thread_checked(move |connection| commit_blast_page(connection, &page))
                .await;
        }
        with_db!(self, |pool, writer| {
            let (now, now_ms) = (now(), now_ms());
            let mut tx = writer.begin().await?;
            let count = (page.sends.len() + page.prompts.len()) as i64;
            let mut ids = on::new_ids(&mut tx, count, None).await?.into_iter();
            let mut refused = 0;
            let mut rows = Vec::with_capacity(count as usize);
            for send in &page.sends {
                if let Some((campaign_id, code)) = &send.promo
                    && !on::use_promo(&mut tx, *campaign_id, code).await?
                {
                    refused += 1;
                    continue;
                }
                rows.push((ids.next().unwrap_or_default(), random_hash(), send));
            }
            for prompt in &page.prompts {
                rows.push((ids.next().unwrap_or_default(), random_hash(), prompt));
            }
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                on::insert_rows(&mut tx, chunk, now, now_ms).await?;
            }
            let queued = page.sends.len() as i64 - refused;
            let moved = sqlx::query(
                "UPDATE blasts SET cursor = $3, queued = queued + $4, skipped = skipped + $5
                 WHERE id = $1 AND cursor = $2 AND state = 'queueing'",
            )
            .bind(page.blast_id)
            .bind(&page.from)
            .bind(&page.to)
            .bind(queued)
            .bind(page.skipped + refused)
            .execute(&mut *tx)
            .await?;
            if moved.rows_affected() != 1 {
                // Dropping the transaction rolls the page back.
                return Ok(None);
            }
            if !rows.is_empty() {
                on::notify_nodes(&mut tx, crate::cluster::DELIVERIES).await?;
            }
            tx.commit().await?;
            Ok(Some(refused))
        })
    }

    /// Every member was handled: the total is fixed and sending begins.
    pub async fn blast_all_queued(&self, id: i64) -> sqlx::Result<()> {
        with_db!(self, |pool, writer| {
            sqlx::query(
                "UPDATE blasts SET state = 'sending', total = queued + skipped
                 WHERE id = $1 AND state = 'queueing'",
            )
            .bind(id)
            .execute(writer)
            .await?;
            Ok(())
        })
    }

    /// Marks a blast done once every queued transaction has ended, queueing
    /// its callback in the same commit; false while some are still under way.
    pub async fn finish_blast(&self, id: i64, webhook: Option<&NewWebhook>) -> sqlx::Result<bool> {
        with_db!(self, |pool, writer| {
            let mut tx = writer.begin().await?;
            let done = sqlx::query(
                "UPDATE blasts SET state = 'done'
                 WHERE id = $1 AND state = 'sending' AND sent + failed >= queued",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            if let Some(hook) = webhook {
                on::enqueue_webhook(&mut tx, hook).await?;
            }
            tx.commit().await?;
            Ok(true)
        })
    }
}

dual! {
    pub(crate) fn blast_from_row(row: &DbRow) -> sqlx::Result<Blast> {
        Ok(Blast {
            id: row.try_get("id")?,
            client_id: row.try_get("client_id")?,
            list_id: row.try_get("list_id")?,
            campaign_id: row.try_get("campaign_id")?,
            request: row.try_get("request")?,
            callback: row.try_get("callback")?,
            total: row.try_get("total")?,
            queued: row.try_get("queued")?,
            skipped: row.try_get("skipped")?,
            sent: row.try_get("sent")?,
            failed: row.try_get("failed")?,
            cursor: row.try_get("cursor")?,
            state: row.try_get("state")?,
        })
    }
}
