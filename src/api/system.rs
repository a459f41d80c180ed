//! `system.*` (spec section 5.1).

use super::envelope::Reply;
use super::{Ctx, Outcome};

/// system.ping: credentials, whitelist and liveness were checked on the way in.
pub async fn ping(_: &Ctx) -> Outcome {
    Ok(Reply::success("pong").into())
}
