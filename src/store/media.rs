//! Media as stored (spec section 5.6): rows of `media`, their smart-URL
//! tokens, and the handset a phone reveals when it fetches one.

use crate::store::dual;
use crate::with_db;
use rand::Rng;
use sqlx::Row;

use super::webhook::NewWebhook;
use super::{Store, now};

/// A row about to be inserted; `filename` is prefixed with the content_id.
#[derive(Debug, Clone)]
pub struct NewMedia<'a> {
    pub client_id: Option<i64>,
    pub name: &'a str,
    pub kind: &'a str,
    pub mime: &'a str,
    /// The uploaded name, the URL's last path segment, or `upload`.
    pub original_name: &'a str,
    pub size: i64,
    pub sha256: &'a str,
    pub base_url: &'a str,
    pub sender: Option<&'a str>,
}

/// A smart-URL token: 10 characters `[a-z0-9]`, random.
pub fn random_token() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..10)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// The content_id.
    pub id: i64,
    /// `None` for media that arrived from a phone.
    pub client_id: Option<i64>,
    pub name: String,
    /// `image`, `audio` or `video`.
    pub kind: String,
    /// Sniffed from the bytes, never taken from the upload.
    pub mime: String,
    pub filename: String,
    pub size: i64,
    /// The smart URL's token, `[a-z0-9]{10}`.
    pub token: String,
    /// The public base URL when it was created.
    pub base_url: String,
    pub destroyed: bool,
}

impl Media {
    pub fn smart_url(&self) -> String {
        format!("{}/oc/{}", self.base_url, self.token)
    }
}

impl Store {
    /// Media by content_id, destroyed or not.
    pub async fn media(&self, id: i64) -> sqlx::Result<Option<Media>> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let row = sqlx::query("SELECT * FROM media WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(on::media_from_row).transpose()
        })
    }

    /// Inserts a media row and, inside the same transaction, runs `place`
    /// with the new content_id to put the file where it belongs: the row is
    /// never visible without its file, and a failed `place` leaves no row.
    pub async fn insert_media(
        &self,
        new: &NewMedia<'_>,
        place: impl AsyncFnOnce(i64) -> std::io::Result<()>,
    ) -> sqlx::Result<Media> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let mut tx = writer.begin().await?;
            let mut attempts = 0;
            let id: i64 = loop {
                attempts += 1;
                let inserted = sqlx::query_scalar(
                    "INSERT INTO media (client_id, name, type, mime, filename, size, token, base_url, sha256, sender, created_at) \
                     VALUES ($1, $2, $3, $4, '', $5, $6, $7, $8, $9, $10) RETURNING id",
                )
                .bind(new.client_id)
                .bind(new.name)
                .bind(new.kind)
                .bind(new.mime)
                .bind(new.size)
                .bind(random_token())
                .bind(new.base_url)
                .bind(new.sha256)
                .bind(new.sender)
                .bind(now())
                .fetch_one(&mut *tx)
                .await;
                match inserted {
                    Ok(id) => break id,
                    // A token collision (one in 36^10): draw another.
                    Err(sqlx::Error::Database(e)) if e.is_unique_violation() && attempts < 5 => {}
                    Err(e) => return Err(e),
                }
            };
            let row = sqlx::query("UPDATE media SET filename = $1 WHERE id = $2 RETURNING *")
                .bind(format!("{id}-{}", new.original_name))
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            let media = on::media_from_row(&row)?;
            place(id).await.map_err(sqlx::Error::Io)?;
            tx.commit().await?;
            Ok(media)
        })
    }

    /// A live media of this client; another client's or a destroyed one is
    /// `None`, like a missing one.
    pub async fn client_media(&self, client_id: i64, id: i64) -> sqlx::Result<Option<Media>> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let row = sqlx::query(
                "SELECT * FROM media WHERE id = $1 AND client_id = $2 AND destroyed_at IS NULL",
            )
            .bind(id)
            .bind(client_id)
            .fetch_optional(pool)
            .await?;
            row.as_ref().map(on::media_from_row).transpose()
        })
    }

    /// The client's live media, newest first, at most `limit`.
    pub async fn list_media(&self, client_id: i64, limit: i64) -> sqlx::Result<Vec<Media>> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let rows = sqlx::query(
                "SELECT * FROM media WHERE client_id = $1 AND destroyed_at IS NULL ORDER BY id DESC LIMIT $2",
            )
            .bind(client_id)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter().map(on::media_from_row).collect()
        })
    }

    /// Marks a live media of this client destroyed; returns it as it was.
    pub async fn destroy_media(&self, client_id: i64, id: i64) -> sqlx::Result<Option<Media>> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let row = sqlx::query(
                "UPDATE media SET destroyed_at = $1 WHERE id = $2 AND client_id = $3 AND destroyed_at IS NULL RETURNING *",
            )
            .bind(now())
            .bind(id)
            .bind(client_id)
            .fetch_optional(writer)
            .await?;
            row.as_ref().map(on::media_from_row).transpose()
        })
    }

    /// The live media behind a smart-URL token.
    pub async fn media_by_token(&self, token: &str) -> sqlx::Result<Option<Media>> {
        with_db!(self, |pool, writer| {
            let row = sqlx::query("SELECT * FROM media WHERE token = $1 AND destroyed_at IS NULL")
                .bind(token)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(on::media_from_row).transpose()
        })
    }

    /// Queues the callback of a `media.upload`.
    pub async fn enqueue_media_callback(&self, hook: &NewWebhook) -> sqlx::Result<()> {
        with_db!(self, |pool, writer| {
            let mut conn = writer.acquire().await?;
            on::enqueue_webhook(&mut conn, hook).await
        })
    }

    /// The recipient of transaction `message_id` when it carried media
    /// `media_id`: the phone that is fetching that media's smart URL.
    pub async fn media_recipient(
        &self,
        message_id: i64,
        media_id: i64,
    ) -> sqlx::Result<Option<String>> {
        with_db!(self, |pool, writer| {
            sqlx::query_scalar(
                "SELECT recipient FROM transactions WHERE id = $1 AND content_id = $2",
            )
            .bind(message_id)
            .bind(media_id)
            .fetch_optional(pool)
            .await
        })
    }
}

dual! {
    pub(crate) fn media_from_row(row: &DbRow) -> sqlx::Result<Media> {
        Ok(Media {
            id: row.try_get("id")?,
            client_id: row.try_get("client_id")?,
            name: row.try_get("name")?,
            kind: row.try_get("type")?,
            mime: row.try_get("mime")?,
            filename: row.try_get("filename")?,
            size: row.try_get("size")?,
            token: row.try_get("token")?,
            base_url: row.try_get("base_url")?,
            destroyed: row.try_get::<Option<i64>, _>("destroyed_at")?.is_some(),
        })
    }
}
