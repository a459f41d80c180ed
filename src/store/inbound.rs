//! Inbound messages (spec section 7): the stored message and the lookups
//! that route it to a campaign (keywords, conversations, short codes).

use crate::store::dual;
use crate::with_db;

use super::campaign::Campaign;
use super::{Store, now};

/// An inbound message as stored.
#[derive(Debug, Clone)]
pub struct NewInbound<'a> {
    pub sender: &'a str,
    pub shortcode: &'a str,
    pub body: &'a str,
    pub subject: &'a str,
    pub campaign_id: Option<i64>,
    pub carrier_id: Option<i64>,
}

impl Store {
    /// The live campaign a keyword (upper-case) names on a short code.
    pub async fn keyword_campaign(
        &self,
        shortcode: &str,
        keyword: &str,
    ) -> sqlx::Result<Option<Campaign>> {
        with_db!(self, |pool, writer| {
            let row = sqlx::query(
                "SELECT c.* FROM keywords k JOIN campaigns c ON c.id = k.campaign_id
                 WHERE k.shortcode = $1 AND k.keyword = $2 AND c.destroyed_at IS NULL",
            )
            .bind(shortcode)
            .bind(keyword)
            .fetch_optional(pool)
            .await?;
            row.as_ref().map(on::campaign_from_row).transpose()
        })
    }

    /// The live campaign that last messaged `number` from `shortcode`.
    pub async fn conversation_campaign(
        &self,
        shortcode: &str,
        number: &str,
    ) -> sqlx::Result<Option<Campaign>> {
        with_db!(self, |pool, writer| {
            let row = sqlx::query(
                "SELECT c.* FROM conversations v JOIN campaigns c ON c.id = v.campaign_id
                 WHERE v.shortcode = $1 AND v.number = $2 AND c.destroyed_at IS NULL",
            )
            .bind(shortcode)
            .bind(number)
            .fetch_optional(pool)
            .await?;
            row.as_ref().map(on::campaign_from_row).transpose()
        })
    }

    /// Every live campaign that uses a short code: as its sender, or with a
    /// keyword on it.
    pub async fn shortcode_campaigns(&self, shortcode: &str) -> sqlx::Result<Vec<Campaign>> {
        with_db!(self, |pool, writer| {
            let rows = sqlx::query(
                "SELECT * FROM campaigns WHERE destroyed_at IS NULL
                   AND (sender = $1 OR id IN (SELECT campaign_id FROM keywords WHERE shortcode = $1))
                 ORDER BY id",
            )
            .bind(shortcode)
            .fetch_all(pool)
            .await?;
            rows.iter().map(on::campaign_from_row).collect()
        })
    }
}

dual! {
    /// Stores an inbound message inside the caller's transaction; returns its id.
    pub(crate) async fn insert_inbound(conn: &mut Conn, m: &NewInbound<'_>) -> sqlx::Result<i64> {
        sqlx::query_scalar(
            "INSERT INTO inbound (sender, shortcode, body, subject, campaign_id, carrier_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(m.sender)
        .bind(m.shortcode)
        .bind(m.body)
        .bind(m.subject)
        .bind(m.campaign_id)
        .bind(m.carrier_id)
        .bind(now())
        .fetch_one(&mut *conn)
        .await
    }
}
