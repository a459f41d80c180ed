//! `list.*` but list.send (spec section 5.5).

use super::error::{ApiError, Code};
use super::{Ctx, Outcome};

pub async fn list(_: &Ctx) -> Outcome {
    Err(ApiError::new(Code::UnknownRequest))
}

pub async fn info(_: &Ctx) -> Outcome {
    Err(ApiError::new(Code::UnknownRequest))
}

pub async fn create(_: &Ctx) -> Outcome {
    Err(ApiError::new(Code::UnknownRequest))
}

pub async fn append(_: &Ctx) -> Outcome {
    Err(ApiError::new(Code::UnknownRequest))
}

pub async fn prune(_: &Ctx) -> Outcome {
    Err(ApiError::new(Code::UnknownRequest))
}

pub async fn empty(_: &Ctx) -> Outcome {
    Err(ApiError::new(Code::UnknownRequest))
}

pub async fn destroy(_: &Ctx) -> Outcome {
    Err(ApiError::new(Code::UnknownRequest))
}

pub async fn download(_: &Ctx) -> Outcome {
    Err(ApiError::new(Code::UnknownRequest))
}
