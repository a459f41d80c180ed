//! `media.*` (spec section 5.6).

use super::error::{ApiError, Code};
use super::{Ctx, Outcome};

pub async fn upload(_: &Ctx) -> Outcome {
    Err(ApiError::new(Code::UnknownRequest))
}

pub async fn list(_: &Ctx) -> Outcome {
    Err(ApiError::new(Code::UnknownRequest))
}

pub async fn info(_: &Ctx) -> Outcome {
    Err(ApiError::new(Code::UnknownRequest))
}

pub async fn destroy(_: &Ctx) -> Outcome {
    Err(ApiError::new(Code::UnknownRequest))
}
