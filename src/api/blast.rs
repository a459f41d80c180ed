//! `list.send`: a blast (spec section 5.5).

use super::error::{ApiError, Code};
use super::{Ctx, Outcome};

pub async fn send(_: &Ctx) -> Outcome {
    Err(ApiError::new(Code::UnknownRequest))
}
