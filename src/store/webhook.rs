//! Callbacks waiting to be posted (spec section 6), kept across restarts.

use sqlx::SqliteConnection;

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

/// Queues a callback inside the caller's transaction, so it is stored
/// together with the change it reports.
pub async fn enqueue_webhook(conn: &mut SqliteConnection, hook: &NewWebhook) -> sqlx::Result<()> {
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
