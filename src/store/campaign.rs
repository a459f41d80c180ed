//! Campaigns (spec section 5.7): a client's sending settings.

use sqlx::Row;

use super::Store;

/// A campaign's settings, in the order of `campaign.create`'s parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Campaign {
    pub id: i64,
    pub client_id: i64,
    pub name: String,
    /// `sms` or `mms`.
    pub kind: String,
    /// The default sender (`from`); empty when none.
    pub sender: String,
    /// The master keyword, upper-case; empty when none.
    pub keyword: String,
    pub callback_url: String,
    /// `xml` or `json`.
    pub callback_format: String,
    /// `none`, `single` or `double`.
    pub opt_in: String,
    pub require_names: bool,
    pub help_message: String,
    pub stop_message: String,
    pub destroyed: bool,
}

pub(crate) fn campaign_from_row(row: &sqlx::sqlite::SqliteRow) -> sqlx::Result<Campaign> {
    Ok(Campaign {
        id: row.try_get("id")?,
        client_id: row.try_get("client_id")?,
        name: row.try_get("name")?,
        kind: row.try_get("type")?,
        sender: row.try_get("sender")?,
        keyword: row.try_get("keyword")?,
        callback_url: row.try_get("callback_url")?,
        callback_format: row.try_get("callback_format")?,
        opt_in: row.try_get("opt_in")?,
        require_names: row.try_get::<i64, _>("require_names")? != 0,
        help_message: row.try_get("help_message")?,
        stop_message: row.try_get("stop_message")?,
        destroyed: row.try_get::<Option<i64>, _>("destroyed_at")?.is_some(),
    })
}

impl Store {
    /// A campaign by id, destroyed or not (callers decide what that means).
    pub async fn campaign(&self, id: i64) -> sqlx::Result<Option<Campaign>> {
        self.check_faults()?;
        let row = sqlx::query("SELECT * FROM campaigns WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(campaign_from_row).transpose()
    }
}

impl Store {
    /// Creates a campaign with its master keyword on `shortcode` (when both
    /// are given). The caller has validated every setting.
    pub async fn create_campaign(
        &self,
        c: &Campaign,
        shortcode: Option<&str>,
    ) -> sqlx::Result<i64> {
        self.check_faults()?;
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO campaigns (id, client_id, name, type, sender, keyword, callback_url, callback_format,
             opt_in, require_names, help_message, stop_message, created_at)
             VALUES ((SELECT MAX(COALESCE(MAX(id) + 1, 20001), 20001) FROM campaigns),
                     $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             RETURNING id",
        )
        .bind(c.client_id)
        .bind(&c.name)
        .bind(&c.kind)
        .bind(&c.sender)
        .bind(&c.keyword)
        .bind(&c.callback_url)
        .bind(&c.callback_format)
        .bind(&c.opt_in)
        .bind(c.require_names as i64)
        .bind(&c.help_message)
        .bind(&c.stop_message)
        .bind(super::now())
        .fetch_one(&mut *tx)
        .await?;
        if let (false, Some(shortcode)) = (c.keyword.is_empty(), shortcode) {
            sqlx::query("INSERT INTO keywords (shortcode, keyword, campaign_id, master) VALUES ($1, $2, $3, 1)")
                .bind(shortcode)
                .bind(&c.keyword)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(id)
    }
}
