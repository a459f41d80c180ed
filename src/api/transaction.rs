//! `transaction.*` (spec section 5.2).

use super::error::{ApiError, Code};
use super::{Ctx, Outcome};

pub async fn send(_: &Ctx) -> Outcome {
    Err(ApiError::new(Code::UnknownRequest))
}

pub async fn lookup(_: &Ctx) -> Outcome {
    Err(ApiError::new(Code::UnknownRequest))
}
