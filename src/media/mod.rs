//! Media: uploads checked by their bytes, stored by content id, served to
//! phones at smart URLs (spec section 5.6).

pub mod fetch;
pub mod fit;
pub mod serve;
pub mod sniff;
pub mod storage;

use crate::api::error::ApiError;
use crate::app::App;
use crate::store::media::Media;

/// Fetches a `content_url` of transaction.send or list.send and stores it
/// like an upload, for `client_id`; 460 when it cannot be fetched, 461 when
/// it is too large, 462 when it is not a supported format. Its type is the
/// one its bytes show, its name the URL's last path segment.
pub async fn store_from_url(
    app: &App,
    client_id: i64,
    url: &str,
    base_url: &str,
) -> Result<Media, ApiError> {
    let fetched = fetch::fetch_to_temp(app, url).await?;
    let name = storage::name_from_file(fetched.file_name.as_deref());
    storage::store_file(
        app,
        storage::NewFile {
            client_id: Some(client_id),
            name: &name,
            declared: None,
            base_url,
        },
        &fetched,
    )
    .await
}
