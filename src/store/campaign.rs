//! Campaigns (spec section 5.7): a client's sending settings.

use crate::store::dual;
use crate::with_db;
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
    /// What an MMS for a carrier that cannot carry one becomes: `fail`
    /// (607, the default) or `sms` (the text and the media's smart URL).
    pub mms_fallback: String,
    pub destroyed: bool,
}

impl Store {
    /// A campaign by id, destroyed or not (callers decide what that means).
    pub async fn campaign(&self, id: i64) -> sqlx::Result<Option<Campaign>> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let row = sqlx::query("SELECT * FROM campaigns WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(on::campaign_from_row).transpose()
        })
    }
}

impl Store {
    /// Creates a campaign with its master keyword on `shortcode` (when both
    /// are given). The caller has validated every setting, the name's
    /// uniqueness included; a keyword that is already taken is an error here
    /// (see [`Store::create_campaign_checked`]).
    pub async fn create_campaign(
        &self,
        c: &Campaign,
        shortcode: Option<&str>,
    ) -> sqlx::Result<i64> {
        match self.insert_campaign(c, shortcode, false).await? {
            Ok(id) => Ok(id),
            Err(conflict) => Err(sqlx::Error::Protocol(format!(
                "campaign {:?} not created: {conflict:?}",
                c.name
            ))),
        }
    }

    /// Creates a campaign unless its name is taken among the client's live
    /// campaigns or its master keyword is taken on `shortcode`.
    pub async fn create_campaign_checked(
        &self,
        c: &Campaign,
        shortcode: Option<&str>,
    ) -> sqlx::Result<Result<i64, Conflict>> {
        self.insert_campaign(c, shortcode, true).await
    }

    async fn insert_campaign(
        &self,
        c: &Campaign,
        shortcode: Option<&str>,
        check_name: bool,
    ) -> sqlx::Result<Result<i64, Conflict>> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            // The name check and the insert must not interleave with another
            // writer's (see `begin_exclusive`).
            let mut tx = on::begin_exclusive(pool, super::Exclusive::Campaigns).await?;
            if check_name && on::name_taken(&mut tx, c.client_id, &c.name, None).await? {
                return Ok(Err(Conflict::NameTaken));
            }
            let query = sqlx::query(
                "INSERT INTO campaigns (id, client_id, name, type, sender, keyword, callback_url, callback_format,
                 opt_in, require_names, help_message, stop_message, mms_fallback, created_at)
                 VALUES ((SELECT COALESCE(MAX(id) + 1, 20001) FROM campaigns WHERE id >= 20001),
                         $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                 RETURNING id",
            )
            .bind(c.client_id);
            let id: i64 = on::bind_settings(query, c)
                .bind(super::now())
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            if !on::set_master(&mut tx, id, master_of(c, shortcode)).await? {
                return Ok(Err(Conflict::KeywordTaken));
            }
            tx.commit().await?;
            Ok(Ok(id))
        })
    }

    /// Replaces a campaign's settings with `c` and puts its master keyword on
    /// `shortcode`. The caller drops the campaign from its cache.
    pub async fn update_campaign(
        &self,
        c: &Campaign,
        shortcode: Option<&str>,
    ) -> sqlx::Result<Result<(), Conflict>> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let mut tx = on::begin_exclusive(pool, super::Exclusive::Campaigns).await?;
            if on::name_taken(&mut tx, c.client_id, &c.name, Some(c.id)).await? {
                return Ok(Err(Conflict::NameTaken));
            }
            let query = sqlx::query(
                "UPDATE campaigns SET name = $1, type = $2, sender = $3, keyword = $4, callback_url = $5,
                 callback_format = $6, opt_in = $7, require_names = $8, help_message = $9, stop_message = $10,
                 mms_fallback = $11
                 WHERE id = $12 AND destroyed_at IS NULL",
            );
            on::bind_settings(query, c)
                .bind(c.id)
                .execute(&mut *tx)
                .await?;
            if !on::set_master(&mut tx, c.id, master_of(c, shortcode)).await? {
                return Ok(Err(Conflict::KeywordTaken));
            }
            tx.commit().await?;
            Ok(Ok(()))
        })
    }

    /// Marks a campaign destroyed and releases its keywords; false when it
    /// was not live.
    pub async fn destroy_campaign(&self, id: i64) -> sqlx::Result<bool> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let mut tx = writer.begin().await?;
            let done = sqlx::query(
                "UPDATE campaigns SET destroyed_at = $1 WHERE id = $2 AND destroyed_at IS NULL",
            )
            .bind(super::now())
            .bind(id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            on::release_keywords(&mut tx, id).await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// A client's live campaigns, newest first, `limit` at most.
    pub async fn campaigns(&self, client_id: i64, limit: i64) -> sqlx::Result<Vec<Campaign>> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let rows = sqlx::query(
                "SELECT * FROM campaigns WHERE client_id = $1 AND destroyed_at IS NULL
                 ORDER BY id DESC LIMIT $2",
            )
            .bind(client_id)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter().map(on::campaign_from_row).collect()
        })
    }
}

/// Why a campaign could not be written as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    /// Another live campaign of the client has that name.
    NameTaken,
    /// Another campaign holds the master keyword on that short code.
    KeywordTaken,
}

/// Where the master keyword goes: nowhere without a keyword or a short code.
fn master_of<'a>(c: &'a Campaign, shortcode: Option<&'a str>) -> Option<(&'a str, &'a str)> {
    match (c.keyword.as_str(), shortcode) {
        ("", _) | (_, None) => None,
        (keyword, Some(shortcode)) => Some((shortcode, keyword)),
    }
}

dual! {
    /// Binds a campaign's settings, in the order both its INSERT and its
    /// UPDATE name them.
    pub(crate) fn bind_settings<'q>(
        query: sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments>,
        c: &'q Campaign,
    ) -> sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments> {
        query
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
            .bind(&c.mms_fallback)
    }

    pub(crate) fn campaign_from_row(row: &DbRow) -> sqlx::Result<Campaign> {
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
            mms_fallback: row.try_get("mms_fallback")?,
            destroyed: row.try_get::<Option<i64>, _>("destroyed_at")?.is_some(),
        })
    }

    /// Names are unique among a client's live campaigns (spec section 5.7).
    pub(crate) async fn name_taken(
        conn: &mut Conn,
        client_id: i64,
        name: &str,
        except: Option<i64>,
    ) -> sqlx::Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM campaigns
             WHERE client_id = $1 AND name = $2 AND destroyed_at IS NULL AND ($3 IS NULL OR id <> $3)
             LIMIT 1",
        )
        .bind(client_id)
        .bind(name)
        .bind(except)
        .fetch_optional(&mut *conn)
        .await?;
        Ok(found.is_some())
    }
}
