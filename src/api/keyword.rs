//! `keyword.*` (spec section 5.4).

use super::error::{ApiError, Code};
use super::{Ctx, Outcome};

pub async fn list(_: &Ctx) -> Outcome {
    Err(ApiError::new(Code::UnknownRequest))
}

pub async fn check(_: &Ctx) -> Outcome {
    Err(ApiError::new(Code::UnknownRequest))
}

pub async fn add(_: &Ctx) -> Outcome {
    Err(ApiError::new(Code::UnknownRequest))
}

pub async fn remove(_: &Ctx) -> Outcome {
    Err(ApiError::new(Code::UnknownRequest))
}
