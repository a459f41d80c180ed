//! `campaign.*` (spec section 5.7).

use super::error::{ApiError, Code};
use super::{Ctx, Outcome};

pub async fn create(_: &Ctx) -> Outcome {
    Err(ApiError::new(Code::UnknownRequest))
}

pub async fn info(_: &Ctx) -> Outcome {
    Err(ApiError::new(Code::UnknownRequest))
}

pub async fn list(_: &Ctx) -> Outcome {
    Err(ApiError::new(Code::UnknownRequest))
}

pub async fn update(_: &Ctx) -> Outcome {
    Err(ApiError::new(Code::UnknownRequest))
}

pub async fn destroy(_: &Ctx) -> Outcome {
    Err(ApiError::new(Code::UnknownRequest))
}

/// Validates campaign.create's parameters and creates the campaign; shared
/// with `moms admin campaign create`.
pub async fn create_from(
    store: &crate::store::Store,
    client: &crate::store::client::Client,
    _region: rlibphonenumber::enums::Region,
    params: &super::params::Params,
) -> Result<i64, ApiError> {
    let campaign = crate::store::campaign::Campaign {
        id: 0,
        client_id: client.id,
        name: params.get("name").unwrap_or("").to_string(),
        kind: params.get("type").unwrap_or("sms").to_string(),
        sender: params.get("from").unwrap_or("").to_string(),
        keyword: params.get("keyword").unwrap_or("").to_ascii_uppercase(),
        callback_url: String::new(),
        callback_format: "xml".into(),
        opt_in: "none".into(),
        require_names: false,
        help_message: params.get("help_message").unwrap_or("").to_string(),
        stop_message: params.get("stop_message").unwrap_or("").to_string(),
        destroyed: false,
    };
    Ok(store
        .create_campaign(&campaign, client.default_short_code())
        .await?)
}
