//! Keywords as stored (spec section 5.4): one row per (short code, keyword),
//! pointing at the campaign it routes to. The primary key makes a keyword
//! unique per short code, so "is it taken?" and "take it" are one statement
//! (`ON CONFLICT DO NOTHING`) and two clients racing for a word cannot both win.

use crate::store::dual;
use crate::with_db;
use sqlx::Row;

use super::Store;

/// A keyword row as `keyword.list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeywordRow {
    pub shortcode: String,
    /// Upper-case.
    pub keyword: String,
    pub campaign_id: i64,
    pub master: bool,
}

/// What `keyword.remove` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    Removed,
    /// The campaign's master keyword: it goes with `campaign.update` only.
    IsMaster,
    /// No such keyword of this campaign on that short code.
    NotFound,
}

impl Store {
    /// The keywords of a client's live campaigns (or of one of them): each
    /// campaign's master first, then its extra keywords in the order they
    /// were added; newest campaigns first, `limit` rows at most.
    pub async fn keywords(
        &self,
        client_id: i64,
        campaign_id: Option<i64>,
        limit: i64,
    ) -> sqlx::Result<Vec<KeywordRow>> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let rows = sqlx::query(
                "SELECT k.shortcode, k.keyword, k.campaign_id, k.master
                 FROM keywords k JOIN campaigns c ON c.id = k.campaign_id
                 WHERE c.client_id = $1 AND c.destroyed_at IS NULL
                   AND ($2 IS NULL OR c.id = $2)
                 ORDER BY c.id DESC, k.master DESC, k.rowid
                 LIMIT $3",
            )
            .bind(client_id)
            .bind(campaign_id)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(KeywordRow {
                        shortcode: row.try_get("shortcode")?,
                        keyword: row.try_get("keyword")?,
                        campaign_id: row.try_get("campaign_id")?,
                        master: row.try_get::<i64, _>("master")? != 0,
                    })
                })
                .collect()
        })
    }

    /// The id of the campaign holding a keyword on a short code, if any.
    pub async fn keyword_holder(
        &self,
        shortcode: &str,
        keyword: &str,
    ) -> sqlx::Result<Option<i64>> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let mut conn = pool.acquire().await?;
            on::keyword_owner(&mut conn, shortcode, keyword).await
        })
    }

    /// Registers an extra keyword; false when the short code already has it.
    pub async fn add_keyword(
        &self,
        campaign_id: i64,
        shortcode: &str,
        keyword: &str,
    ) -> sqlx::Result<bool> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let done = sqlx::query(
                "INSERT INTO keywords (shortcode, keyword, campaign_id, master) VALUES ($1, $2, $3, 0)
                 ON CONFLICT (shortcode, keyword) DO NOTHING",
            )
            .bind(shortcode)
            .bind(keyword)
            .bind(campaign_id)
            .execute(writer)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Removes an extra keyword of this campaign; never the master.
    pub async fn remove_keyword(
        &self,
        campaign_id: i64,
        shortcode: &str,
        keyword: &str,
    ) -> sqlx::Result<Removal> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let master: Option<i64> = sqlx::query_scalar(
                "DELETE FROM keywords
                 WHERE shortcode = $1 AND keyword = $2 AND campaign_id = $3 AND master = 0
                 RETURNING master",
            )
            .bind(shortcode)
            .bind(keyword)
            .bind(campaign_id)
            .fetch_optional(writer)
            .await?;
            if master.is_some() {
                return Ok(Removal::Removed);
            }
            let is_master: Option<i64> = sqlx::query_scalar(
                "SELECT master FROM keywords WHERE shortcode = $1 AND keyword = $2 AND campaign_id = $3",
            )
            .bind(shortcode)
            .bind(keyword)
            .bind(campaign_id)
            .fetch_optional(pool)
            .await?;
            Ok(match is_master {
                Some(_) => Removal::IsMaster,
                None => Removal::NotFound,
            })
        })
    }
}

dual! {
    /// The campaign holding `keyword` on `shortcode`, inside a transaction.
    pub(crate) async fn keyword_owner(
        conn: &mut Conn,
        shortcode: &str,
        keyword: &str,
    ) -> sqlx::Result<Option<i64>> {
        sqlx::query_scalar("SELECT campaign_id FROM keywords WHERE shortcode = $1 AND keyword = $2")
            .bind(shortcode)
            .bind(keyword)
            .fetch_optional(&mut *conn)
            .await
    }

    /// Moves a campaign's master keyword to (`shortcode`, `keyword`), or drops it
    /// when `to` is `None`. An extra keyword of the same campaign is promoted.
    /// False when another campaign holds that keyword on that short code: the
    /// old master is already gone then, so the caller must roll back.
    pub(crate) async fn set_master(
        conn: &mut Conn,
        campaign_id: i64,
        to: Option<(&str, &str)>,
    ) -> sqlx::Result<bool> {
        sqlx::query("DELETE FROM keywords WHERE campaign_id = $1 AND master = 1")
            .bind(campaign_id)
            .execute(&mut *conn)
            .await?;
        let Some((shortcode, keyword)) = to else {
            return Ok(true);
        };
        let done = sqlx::query(
            "INSERT INTO keywords (shortcode, keyword, campaign_id, master) VALUES ($1, $2, $3, 1)
             ON CONFLICT (shortcode, keyword) DO UPDATE SET master = 1
             WHERE keywords.campaign_id = excluded.campaign_id",
        )
        .bind(shortcode)
        .bind(keyword)
        .bind(campaign_id)
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Releases every keyword of a campaign (it was destroyed).
    pub(crate) async fn release_keywords(
        conn: &mut Conn,
        campaign_id: i64,
    ) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM keywords WHERE campaign_id = $1")
            .bind(campaign_id)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}
