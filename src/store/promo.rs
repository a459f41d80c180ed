//! Promotions as stored (spec section 5.8). `code` keeps the case it was
//! created with; `code_key` is upper-case, so a campaign cannot hold two
//! codes that differ only in case and sends match case-insensitively.

use crate::with_db;
use sqlx::Row;

use super::Store;

/// A promotion as promo.list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promo {
    pub code: String,
    /// `approved` or `pending`.
    pub status: String,
    pub uses: i64,
    pub max_uses: Option<i64>,
    /// `YYYY-MM-DD`.
    pub starts: Option<String>,
    pub ends: Option<String>,
}

impl Store {
    /// Creates a promotion; false when the campaign already has that code.
    pub async fn create_promo(&self, campaign_id: i64, promo: &Promo) -> sqlx::Result<bool> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let done = sqlx::query(
                "INSERT INTO promos (campaign_id, code, code_key, status, uses, max_uses, starts, ends, created_at)
                 VALUES ($1, $2, $3, $4, 0, $5, $6, $7, $8)
                 ON CONFLICT (campaign_id, code_key) DO NOTHING",
            )
            .bind(campaign_id)
            .bind(&promo.code)
            .bind(promo.code.to_ascii_uppercase())
            .bind(&promo.status)
            .bind(promo.max_uses)
            .bind(&promo.starts)
            .bind(&promo.ends)
            .bind(super::now())
            .execute(writer)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// A campaign's promotions, newest first, `limit` at most.
    pub async fn promos(&self, campaign_id: i64, limit: i64) -> sqlx::Result<Vec<Promo>> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let rows = sqlx::query(
                "SELECT code, status, uses, max_uses, starts, ends FROM promos
                 WHERE campaign_id = $1 ORDER BY created_at DESC, rowid DESC LIMIT $2",
            )
            .bind(campaign_id)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(Promo {
                        code: row.try_get("code")?,
                        status: row.try_get("status")?,
                        uses: row.try_get("uses")?,
                        max_uses: row.try_get("max_uses")?,
                        starts: row.try_get("starts")?,
                        ends: row.try_get("ends")?,
                    })
                })
                .collect()
        })
    }

    /// Removes a promotion, matched case-insensitively; false when there is none.
    pub async fn destroy_promo(&self, campaign_id: i64, code: &str) -> sqlx::Result<bool> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let done = sqlx::query("DELETE FROM promos WHERE campaign_id = $1 AND code_key = $2")
                .bind(campaign_id)
                .bind(code.to_ascii_uppercase())
                .execute(writer)
                .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Approves a pending promotion; false when there is none with that code.
    pub async fn approve_promo(&self, campaign_id: i64, code: &str) -> sqlx::Result<bool> {
        with_db!(self, |pool, writer| {
            let done = sqlx::query(
                "UPDATE promos SET status = 'approved' WHERE campaign_id = $1 AND code_key = $2",
            )
            .bind(campaign_id)
            .bind(code.to_ascii_uppercase())
            .execute(writer)
            .await?;
            Ok(done.rows_affected() > 0)
        })
    }
}
