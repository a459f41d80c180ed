//! Promotions as stored.

use super::Store;

impl Store {
    /// Approves a pending promotion; false when there is none with that code.
    pub async fn approve_promo(&self, campaign_id: i64, code: &str) -> sqlx::Result<bool> {
        let done = sqlx::query(
            "UPDATE promos SET status = 'approved' WHERE campaign_id = $1 AND code_key = $2",
        )
        .bind(campaign_id)
        .bind(code.to_ascii_uppercase())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
