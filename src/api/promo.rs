//! `promo.*` (spec section 5.8).

use super::error::{ApiError, Code};
use super::{Ctx, Outcome};

pub async fn create(_: &Ctx) -> Outcome {
    Err(ApiError::new(Code::UnknownRequest))
}

pub async fn list(_: &Ctx) -> Outcome {
    Err(ApiError::new(Code::UnknownRequest))
}

pub async fn destroy(_: &Ctx) -> Outcome {
    Err(ApiError::new(Code::UnknownRequest))
}
