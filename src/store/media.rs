//! Media as stored (spec section 5.6).

use sqlx::Row;

use super::Store;

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

pub(crate) fn media_from_row(row: &sqlx::sqlite::SqliteRow) -> sqlx::Result<Media> {
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

impl Store {
    /// Media by content_id, destroyed or not.
    pub async fn media(&self, id: i64) -> sqlx::Result<Option<Media>> {
        self.check_faults()?;
        let row = sqlx::query("SELECT * FROM media WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(media_from_row).transpose()
    }
}
