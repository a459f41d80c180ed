//! MMS that reach us as links: some SMSCs pass a picture message over SMPP
//! as a text carrying the URL where its content waits. Where the `[[smpp]]`
//! bind says so (`inbound_media_urls`), each http(s) URL of an inbound text
//! is fetched (with the guards of every fetch: scheme, private addresses,
//! redirects, size, time), stored as media when its bytes are an accepted
//! format, and passed on as one of the message's `images`; the URL leaves
//! the text. A URL that cannot be fetched or is not media stays in the text.

use super::server::store_bytes;
use crate::app::App;

/// The text without the URLs that were media, and those media's smart URLs.
pub async fn fetch_linked_media(app: &App, sender: &str, text: &str) -> (String, Vec<String>) {
    let mut kept = Vec::new();
    let mut images = Vec::new();
    for word in text.split_whitespace() {
        let is_url = word.starts_with("http://") || word.starts_with("https://");
        if is_url && let Some(url) = fetch_one(app, sender, word).await {
            images.push(url);
        } else {
            kept.push(word);
        }
    }
    if images.is_empty() {
        return (text.to_string(), images);
    }
    (kept.join(" "), images)
}

async fn fetch_one(app: &App, sender: &str, url: &str) -> Option<String> {
    let fetched = match crate::media::fetch::fetch_to_temp(app, url).await {
        Ok(fetched) => fetched,
        Err(error) => {
            tracing::info!(url, error = ?error, "a link in an inbound message could not be fetched");
            return None;
        }
    };
    let bytes = tokio::fs::read(&fetched.path).await.ok()?;
    let name = crate::media::storage::name_from_file(fetched.file_name.as_deref());
    let base = super::server::configured_base_url(app);
    match store_bytes(app, sender, &bytes, &name, &base).await {
        Ok(url) => url,
        Err(error) => {
            tracing::warn!(error = %format!("{error:#}"), "storing linked media failed");
            None
        }
    }
}
