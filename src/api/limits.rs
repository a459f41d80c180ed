//! Per-client send limits (spec section 1): sends a second and messages a
//! day, set by the operator (`moms admin client limits`), none by default.
//! Over a limit, `transaction.send` and `list.send` answer HTTP 429 with a
//! `Retry-After` and an envelope with code 400 naming the limit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use chrono::{TimeZone, Utc};

use super::Ctx;
use super::error::{ApiError, Code, Rejection};
use crate::domain::bucket::Bucket;

/// The send-rate buckets of the clients that have a rate.
#[derive(Default)]
pub struct SendLimits {
    buckets: Mutex<HashMap<i64, Bucket>>,
}

fn too_many(detail: String, retry_after: u64) -> ApiError {
    ApiError {
        rejection: Rejection::TooMany {
            retry_after: retry_after.max(1),
        },
        ..ApiError::detail(Code::BadRequest, detail)
    }
}

/// Checks the calling client's limits before a send is looked at.
pub async fn check_send(ctx: &Ctx) -> Result<(), ApiError> {
    let client = &ctx.client;
    if client.send_per_second > 0.0 {
        let rate = client.send_per_second;
        let now = Instant::now();
        let mut buckets = ctx
            .app
            .send_limits
            .buckets
            .lock()
            .expect("send limits lock");
        let bucket = buckets
            .entry(client.id)
            .or_insert_with(|| Bucket::full(rate, now));
        let wait = bucket.wait(rate, now);
        if !wait.is_zero() {
            let detail = format!("over this client's send rate of {rate} a second");
            return Err(too_many(detail, wait.as_secs_f64().ceil() as u64));
        }
        bucket.take();
    }
    if client.daily_quota > 0 {
        let tz = ctx.app.time_zone;
        let now = Utc::now().with_timezone(&tz);
        let midnight = now.date_naive().and_hms_opt(0, 0, 0).expect("midnight");
        let start = tz
            .from_local_datetime(&midnight)
            .earliest()
            .map_or(now.timestamp(), |t| t.timestamp());
        let sent = ctx.app.store.sends_since(client.id, start).await?;
        if sent >= client.daily_quota {
            let detail = format!(
                "this client's daily quota of {} messages is used up",
                client.daily_quota
            );
            return Err(too_many(
                detail,
                (start + 86_400 - now.timestamp()).max(1) as u64,
            ));
        }
    }
    Ok(())
}
