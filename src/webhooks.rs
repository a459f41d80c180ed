//! Callbacks to clients' applications (spec section 6): posted from the
//! `webhooks` table by this loop, signed, retried with exponential back-off
//! and jitter, kept across restarts. Delivery never waits for them: other
//! code only queues a row (`store::webhook::enqueue_webhook`) and wakes us.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use tokio::sync::watch;

use crate::app::App;
use crate::media::fetch::check_destination;
use crate::store::webhook::DueWebhook;
use crate::store::{now, now_ms};

/// A claimed callback's id, its attempts so far, and how its post went
/// (`None`: not tried, an earlier one to its URL failed).
type Outcome = (i64, i64, Option<Result<(), String>>);

/// Callbacks claimed at once. A claim and the removal of what it
/// delivered are two writes, whatever its size, and a URL's callbacks are
/// posted one after another on a kept-alive connection (about 100 µs
/// each on a quiet machine): at 100 a claim, the writes took as long as
/// the posts.
const CLAIM: i64 = 500;

/// Callbacks posted at once; a slow receiver holds only its own slot.
const CONCURRENCY: usize = 16;

/// Runs until `stop` changes.
pub async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let poll = Duration::from_millis(app.config.delivery.poll_millis.max(50) * 5);
    loop {
        match run_once(&app).await {
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "callback step failed"),
        }
        tokio::select! {
            _ = app.webhook_wake.notified() => {}
            _ = tokio::time::sleep(poll) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Posts every callback due now; returns how many were tried.
pub async fn run_once(app: &App) -> anyhow::Result<usize> {
    let timeout = Duration::from_secs(app.config.callbacks.timeout_secs);
    // A claimed row is pushed past the time its post can take, so a crash
    // mid-post retries it rather than losing it.
    let lease_ms = now_ms() + 2 * timeout.as_millis() as i64 + 1000;
    let due = app
        .store
        .claim_webhooks(app.config.callbacks.max_attempts, lease_ms, CLAIM)
        .await?;
    let count = due.len();
    // One queue per URL, in id order: posted one after another, so a
    // receiver sees its callbacks in the order they were queued; URLs go
    // side by side.
    let mut queues: Vec<Vec<DueWebhook>> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for hook in due {
        let at = *index.entry(hook.url.clone()).or_insert_with(|| {
            queues.push(Vec::new());
            queues.len() - 1
        });
        queues[at].push(hook);
    }
    let outcomes: Vec<Vec<Outcome>> = futures_util::stream::iter(queues)
        .map(|queue| async move {
            let mut outcomes = Vec::with_capacity(queue.len());
            // The destination is checked once per URL and round, not per
            // callback: for a host name the check asks DNS, and the posts
            // of one URL go one after another. The client's resolver
            // guards every new connection besides.
            let refused = match queue.first() {
                Some(hook) => check_destination(&app.config, &hook.url).await.err(),
                None => None,
            };
            let mut failed = false;
            for hook in queue {
                if failed {
                    // Not tried: an earlier one to this URL failed.
                    outcomes.push((hook.id, hook.attempts, None));
                    continue;
                }
                let result = match &refused {
                    Some(reason) => Err(reason.clone()),
                    None => post(app, &hook, timeout).await,
                };
                failed = result.is_err();
                outcomes.push((hook.id, hook.attempts + 1, Some(result)));
            }
            outcomes
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let (mut delivered, mut released) = (Vec::new(), Vec::new());
    for (id, attempts, result) in outcomes.into_iter().flatten() {
        match result {
            Some(Ok(())) => delivered.push(id),
            None => released.push(id),
            Some(Err(error)) => {
                let give_up = attempts >= app.config.callbacks.max_attempts;
                if give_up {
                    tracing::warn!(id, %error, attempts, "callback given up");
                }
                let due_ms =
                    now_ms() + retry_delay_ms(app.config.callbacks.first_retry_secs, attempts);
                app.store
                    .webhook_failed(id, attempts, due_ms, &error)
                    .await?;
            }
        }
    }
    app.store.webhooks_delivered(&delivered).await?;
    app.store.webhooks_released(&released).await?;
    Ok(count)
}

/// Exponential back-off with ±20 % jitter: first, 2×first, 4×first, …
/// (30 s doubling over 8 tries is about two hours in all).
pub fn retry_delay_ms(first_secs: i64, attempts: i64) -> i64 {
    let base = first_secs.max(0) * 1000 * (1i64 << (attempts - 1).clamp(0, 20));
    let jitter = base / 5;
    base + if jitter > 0 {
        rand::rng().random_range(-jitter..=jitter)
    } else {
        0
    }
}

/// `t=<unix seconds>,sha256=<hex HMAC-SHA256 of "<t>.<body>">`.
pub fn signature(secret: &str, at: i64, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(at.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("t={at},sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn post(app: &App, hook: &DueWebhook, timeout: Duration) -> Result<(), String> {
    let response = app
        .http
        .post(&hook.url)
        .timeout(timeout)
        .header("content-type", &hook.content_type)
        .header(
            "x-moms-signature",
            signature(&hook.secret, now(), &hook.body),
        )
        .body(hook.body.clone())
        .send()
        .await
        .map_err(|e| format!("post failed: {e}"))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!(
            "receiver answered HTTP {}",
            response.status().as_u16()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_of_time_dot_body() {
        // Reference value computed independently: HMAC-SHA256("secret", "1700000000.hello").
        let sig = signature("secret", 1_700_000_000, "hello");
        assert!(sig.starts_with("t=1700000000,sha256="));
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").unwrap();
        mac.update(b"1700000000.hello");
        assert_eq!(&sig[20..], hex::encode(mac.finalize().into_bytes()));
        assert_ne!(signature("other", 1_700_000_000, "hello"), sig);
    }

    #[test]
    fn retries_back_off_exponentially() {
        for attempts in 1..8 {
            let delay = retry_delay_ms(30, attempts);
            let base = 30_000 * (1 << (attempts - 1));
            assert!(
                delay >= base * 4 / 5 && delay <= base * 6 / 5,
                "{attempts}: {delay}"
            );
        }
        let total: i64 = (1..8).map(|a| 30_000 * (1i64 << (a - 1))).sum();
        assert!(
            (3_600_000..=4 * 3_600_000).contains(&total),
            "about two hours: {total}"
        );
    }
}
