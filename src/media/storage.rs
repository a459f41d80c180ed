//! Storing a file that is already on disk (an upload streamed by the request
//! reader, or a fetched URL): one pass over it sniffs the first bytes and
//! hashes the rest, then the file is moved to `<data_dir>/media/<content_id>`
//! together with the row's insertion. The uploaded name is only ever shown,
//! never used as a path, and no file is held in memory.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::sniff::{Kind, SNIFF_BYTES, Sniffed, sniff};
use crate::api::error::{ApiError, Code};
use crate::api::params::Upload;
use crate::app::App;
use crate::config::Config;
use crate::store::media::{Media, NewMedia};

/// Longest media name, in characters (spec section 3, code 463).
pub const MAX_NAME_CHARS: usize = 100;

/// What the caller says about a file.
pub struct NewFile<'a> {
    pub client_id: Option<i64>,
    pub name: &'a str,
    /// The declared `type`; `None` takes whatever the bytes are.
    pub declared: Option<Kind>,
    pub base_url: &'a str,
}

/// Where a content_id's bytes live.
pub fn media_path(config: &Config, id: i64) -> PathBuf {
    config.media_dir().join(id.to_string())
}

/// Checks a media `name` (463): not empty, at most 100 characters, no
/// control characters and no path separators.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("the name is empty".into());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("the name is over {MAX_NAME_CHARS} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("the name has control characters".into());
    }
    if name.contains(['/', '\\']) {
        return Err("the name has a path separator (/ or \\)".into());
    }
    Ok(())
}

/// A name for shown file names and fetched media: the last component of
/// `given`, without control characters, at most 100 characters; `upload`
/// when nothing is left.
pub fn name_from_file(given: Option<&str>) -> String {
    let given = given.unwrap_or("");
    let last = given.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = last
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    let clean = clean.trim();
    if clean.is_empty() || clean == "." || clean == ".." {
        "upload".into()
    } else {
        clean.to_string()
    }
}

/// Checks `file` by its bytes (462 when unsupported or not of the declared
/// type), moves it into the media folder and inserts its row. The temp-file
/// guard stays with the caller: once moved, it has nothing left to remove.
pub async fn store_file(app: &App, new: NewFile<'_>, file: &Upload) -> Result<Media, ApiError> {
    let (sniffed, sha256, size) = inspect(&file.path, new.declared).await?;
    let original_name = name_from_file(file.file_name.as_deref());
    let row = NewMedia {
        client_id: new.client_id,
        name: new.name,
        kind: sniffed.kind.as_str(),
        mime: sniffed.mime,
        original_name: &original_name,
        size: i64::try_from(size).unwrap_or(i64::MAX),
        sha256: &sha256,
        base_url: new.base_url,
        sender: None,
    };
    let from = file.path.clone();
    let media = app
        .store
        .insert_media(&row, async |id| {
            move_file(&from, &media_path(&app.config, id)).await
        })
        .await?;
    Ok(media)
}

/// One pass over the file: the format from its first bytes (checked before
/// the rest is read, so junk is refused early), then its SHA-256 and size.
async fn inspect(path: &Path, declared: Option<Kind>) -> Result<(Sniffed, String, u64), ApiError> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut filled = 0;
    // Read until the sniffing window is full or the file ends.
    while filled < SNIFF_BYTES {
        let n = file.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    let sniffed = sniff(&buf[..filled]).ok_or_else(|| {
        ApiError::detail(
            Code::BadMediaType,
            "the file is not a supported image (JPEG, PNG, GIF), audio (MP3, AMR, AAC, M4A, WAV) or video (MP4, 3GP, QuickTime)",
        )
    })?;
    if let Some(declared) = declared.filter(|d| *d != sniffed.kind) {
        return Err(ApiError::detail(
            Code::BadMediaType,
            format!(
                "type is {declared}, but the file is {} ({})",
                sniffed.kind, sniffed.mime
            ),
        ));
    }
    let mut hasher = Sha256::new();
    hasher.update(&buf[..filled]);
    let mut size = filled as u64;
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((sniffed, hex::encode(hasher.finalize()), size))
}

/// Renames; across file systems (a separately mounted temp folder), copies
/// and removes instead.
async fn move_file(from: &Path, to: &Path) -> std::io::Result<()> {
    if tokio::fs::rename(from, to).await.is_ok() {
        return Ok(());
    }
    tokio::fs::copy(from, to).await?;
    let _ = tokio::fs::remove_file(from).await;
    Ok(())
}

/// Removes the stored bytes of media that were destroyed (forgotten or past
/// retention); a file already gone is no error.
pub async fn remove_files(config: &Config, ids: &[i64]) {
    for id in ids {
        if let Err(error) = tokio::fs::remove_file(media_path(config, *id)).await
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(id, %error, "cannot remove a media file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("Holiday card").is_ok());
        assert!(check_name(&"é".repeat(100)).is_ok());
        for bad in ["", "  ", "../x", "a\\b", "a\nb", "a\u{7f}b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name(&"a".repeat(101)).is_err());
    }

    #[test]
    fn file_names_keep_their_last_component() {
        assert_eq!(name_from_file(Some("C:\\pics\\cat.png")), "cat.png");
        assert_eq!(name_from_file(Some("../../etc/passwd")), "passwd");
        assert_eq!(name_from_file(Some("a\u{0}b.gif")), "ab.gif");
        assert_eq!(name_from_file(Some("dir/..")), "upload");
        assert_eq!(name_from_file(Some("")), "upload");
        assert_eq!(name_from_file(None), "upload");
    }
}
