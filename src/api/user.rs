//! `user.*` (spec section 5.3).

use super::error::{ApiError, Code};
use super::{Ctx, Outcome};

pub async fn getopt(_: &Ctx) -> Outcome {
    Err(ApiError::new(Code::UnknownRequest))
}

pub async fn setopt(_: &Ctx) -> Outcome {
    Err(ApiError::new(Code::UnknownRequest))
}

pub async fn info(_: &Ctx) -> Outcome {
    Err(ApiError::new(Code::UnknownRequest))
}

pub async fn lookup(_: &Ctx) -> Outcome {
    Err(ApiError::new(Code::UnknownRequest))
}

pub async fn uncache(_: &Ctx) -> Outcome {
    Err(ApiError::new(Code::UnknownRequest))
}

pub async fn transactions(_: &Ctx) -> Outcome {
    Err(ApiError::new(Code::UnknownRequest))
}
