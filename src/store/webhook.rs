//! Callbacks waiting to be posted (spec section 6), kept across restarts.
//! E-mail callbacks wait in the same table under a `mailto:` URL; the
//! callback sender and the mail sender each claim only their own rows.

use crate::store::dual;
use crate::with_db;
use sqlx::QueryBuilder;

use super::now_ms;

/// A callback to post.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub client_id: i64,
    pub url: String,
    /// `application/xml` or `application/json`.
    pub content_type: &'static str,
    pub body: String,
}

/// A callback claimed for posting, with its client's signing secret.
#[derive(Debug, Clone)]
pub struct DueWebhook {
    pub id: i64,
    pub url: String,
    pub content_type: String,
    pub body: String,
    pub attempts: i64,
    pub secret: String,
}

impl super::Store {
    /// Queues one callback in a commit of its own.
    pub async fn queue_webhook(&self, hook: &NewWebhook) -> sqlx::Result<()> {
        with_db!(self, |pool, writer| {
            let mut conn = writer.acquire().await?;
            on::enqueue_webhook(&mut conn, hook).await
        })
    }

    /// Claims up to `limit` callbacks due now, leasing them until `lease_ms`:
    /// the oldest pending one of each URL, so a receiver sees its callbacks
    /// in the order they were queued (a failing one holds back the later
    /// ones of its URL only, until it is delivered or given up).
    pub async fn claim_webhooks(
        &self,
        max_attempts: i64,
        lease_ms: i64,
        limit: i64,
    ) -> sqlx::Result<Vec<DueWebhook>> {
        self.claim_due(false, max_attempts, lease_ms, limit).await
    }

    /// Claims up to `limit` e-mail callbacks (`mailto:` rows) due now.
    pub async fn claim_mails(
        &self,
        max_attempts: i64,
        lease_ms: i64,
        limit: i64,
    ) -> sqlx::Result<Vec<DueWebhook>> {
        self.claim_due(true, max_attempts, lease_ms, limit).await
    }

    /// E-mail callbacks still to be tried.
    pub async fn queued_mails(&self, max_attempts: i64) -> sqlx::Result<i64> {
        with_db!(self, |pool, writer| {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM webhooks WHERE url LIKE 'mailto:%' AND attempts < $1",
            )
            .bind(max_attempts)
            .fetch_one(pool)
            .await
        })
    }

    async fn claim_due(
        &self,
        mail: bool,
        max_attempts: i64,
        lease_ms: i64,
        limit: i64,
    ) -> sqlx::Result<Vec<DueWebhook>> {
        with_db!(self, |pool, writer| {
            // Callbacks: every due row before the first of its URL that is still
            // pending but not due (backing off, or leased to a post in flight),
            // in id order; the caller posts a URL's rows one after another and
            // stops at the first failure, so order per URL holds. Finding the
            // blockers reads only rows not due, which stay few, rather than
            // every earlier row of the URL for every candidate. Mails keep one
            // row per address at a time.
            let sql = if mail {
                "UPDATE webhooks SET due_ms = $1
                 WHERE id IN (SELECT id FROM webhooks w WHERE due_ms <= $2 AND attempts < $3
                              AND (url LIKE 'mailto:%') = $5
                              -- In order per URL: nothing while an earlier one is pending.
                              AND NOT EXISTS (SELECT 1 FROM webhooks e
                                              WHERE e.url = w.url AND e.id < w.id AND e.attempts < $3)
                              ORDER BY due_ms, id LIMIT $4)
                 RETURNING id, url, content_type, body, attempts,
                           COALESCE((SELECT callback_secret FROM clients WHERE clients.id = webhooks.client_id), '') AS secret"
            } else {
                "WITH blocked AS (SELECT url, MIN(id) AS first FROM webhooks
                                  WHERE due_ms > $2 AND attempts < $3 GROUP BY url)
                 UPDATE webhooks SET due_ms = $1
                 WHERE id IN (SELECT w.id FROM webhooks w LEFT JOIN blocked b ON b.url = w.url
                              WHERE w.due_ms <= $2 AND w.attempts < $3
                              AND (w.url LIKE 'mailto:%') = $5
                              AND (b.first IS NULL OR w.id < b.first)
                              ORDER BY w.id LIMIT $4)
                 RETURNING id, url, content_type, body, attempts,
                           COALESCE((SELECT callback_secret FROM clients WHERE clients.id = webhooks.client_id), '') AS secret"
            };
            let query = sqlx::query_as(sql)
                .bind(lease_ms)
                .bind(now_ms())
                .bind(max_attempts)
                .bind(limit)
                .bind(mail);
            // Nodes sharing PostgreSQL claim in turns: a node claiming beside
            // another would not see the other's leased rows as blockers, and
            // could take a URL's later callbacks while its earlier ones are
            // in flight. On SQLite the one statement is its own turn.
            let mut rows: Vec<(i64, String, String, String, i64, String)> = if PG {
                let mut tx = on::begin_exclusive(writer, super::Exclusive::Callbacks).await?;
                let rows = query.fetch_all(&mut *tx).await?;
                tx.commit().await?;
                rows
            } else {
                query.fetch_all(writer).await?
            };
            // RETURNING gives no order; posts go in queue order.
            rows.sort_unstable_by_key(|row| row.0);
            Ok(rows
                .into_iter()
                .map(
                    |(id, url, content_type, body, attempts, secret)| DueWebhook {
                        id,
                        url,
                        content_type,
                        body,
                        attempts,
                        secret,
                    },
                )
                .collect())
        })
    }

    pub async fn webhook_delivered(&self, id: i64) -> sqlx::Result<()> {
        self.webhooks_delivered(&[id]).await
    }

    /// Removes delivered callbacks, one statement for many.
    pub async fn webhooks_delivered(&self, ids: &[i64]) -> sqlx::Result<()> {
        with_db!(self, |pool, writer| {
            for chunk in ids.chunks(500) {
                let mut delete: QueryBuilder<Db> =
                    QueryBuilder::new("DELETE FROM webhooks WHERE id IN (");
                let mut list = delete.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                delete.push(")");
                delete.build().persistent(false).execute(writer).await?;
            }
            Ok(())
        })
    }

    /// Gives claimed callbacks back untried (an earlier one to their URL
    /// failed): due again, behind it.
    pub async fn webhooks_released(&self, ids: &[i64]) -> sqlx::Result<()> {
        with_db!(self, |pool, writer| {
            let now = now_ms();
            for chunk in ids.chunks(500) {
                let mut update: QueryBuilder<Db> =
                    QueryBuilder::new("UPDATE webhooks SET due_ms = ");
                update.push_bind(now);
                update.push(" WHERE id IN (");
                let mut list = update.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                update.push(")");
                update.build().persistent(false).execute(writer).await?;
            }
            Ok(())
        })
    }

    /// Records a failed try; a row at the last attempt stays for inspection.
    pub async fn webhook_failed(
        &self,
        id: i64,
        attempts: i64,
        due_ms: i64,
        error: &str,
    ) -> sqlx::Result<()> {
        with_db!(self, |pool, writer| {
            sqlx::query(
                "UPDATE webhooks SET attempts = $1, due_ms = $2, last_error = $3 WHERE id = $4",
            )
            .bind(attempts)
            .bind(due_ms)
            .bind(error)
            .bind(id)
            .execute(writer)
            .await?;
            Ok(())
        })
    }
}

dual! {
    /// Queues a callback inside the caller's transaction, so it is stored
    /// together with the change it reports.
    pub(crate) async fn enqueue_webhook(conn: &mut Conn, hook: &NewWebhook) -> sqlx::Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO webhooks (client_id, url, content_type, body, due_ms, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(hook.client_id)
        .bind(&hook.url)
        .bind(hook.content_type)
        .bind(&hook.body)
        .bind(now)
        .bind(now / 1000)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Queues several callbacks inside the caller's transaction in as few
    /// statements as SQLite's bound-value limit allows (6 values a row).
    pub(crate) async fn enqueue_webhooks(
        conn: &mut Conn,
        hooks: &[&NewWebhook],
    ) -> sqlx::Result<()> {
        let now = now_ms();
        for chunk in hooks.chunks(5_000) {
            let mut insert: QueryBuilder<Db> = QueryBuilder::new(
                "INSERT INTO webhooks (client_id, url, content_type, body, due_ms, created_at) ",
            );
            insert.push_values(chunk, |mut b, hook| {
                b.push_bind(hook.client_id)
                    .push_bind(hook.url.as_str())
                    .push_bind(hook.content_type)
                    .push_bind(hook.body.as_str())
                    .push_bind(now)
                    .push_bind(now / 1000);
            });
            // Its text changes with the row count: not worth a cached statement.
            insert.build().persistent(false).execute(&mut *conn).await?;
        }
        Ok(())
    }
}
