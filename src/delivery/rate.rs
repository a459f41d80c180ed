//! Delivery rate limits per client and per campaign (`delivery.*_per_second`):
//! token buckets with one second of burst. A message over a limit is not
//! refused; it waits in the queue until its turn.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::bucket::Bucket;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Owner {
    Client(i64),
    Campaign(i64),
}

pub struct Rates {
    per_client: f64,
    per_campaign: f64,
    buckets: Mutex<HashMap<Owner, Bucket>>,
}

impl Rates {
    pub fn new(per_client: f64, per_campaign: f64) -> Rates {
        Rates {
            per_client,
            per_campaign,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one message's slot from both limits, or says how long to wait.
    pub fn take(&self, client_id: i64, campaign_id: i64, now: Instant) -> Result<(), Duration> {
        let limits = [
            (Owner::Client(client_id), self.per_client),
            (Owner::Campaign(campaign_id), self.per_campaign),
        ];
        if limits.iter().all(|(_, rate)| *rate <= 0.0) {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().expect("rate lock");
        let mut wait = Duration::ZERO;
        for (owner, rate) in limits.iter().filter(|(_, rate)| *rate > 0.0) {
            let bucket = buckets
                .entry(*owner)
                .or_insert_with(|| Bucket::full(*rate, now));
            wait = wait.max(bucket.wait(*rate, now));
        }
        if !wait.is_zero() {
            return Err(wait);
        }
        for (owner, _) in limits.iter().filter(|(_, rate)| *rate > 0.0) {
            if let Some(bucket) = buckets.get_mut(owner) {
                bucket.take();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_limits_take_everything() {
        let rates = Rates::new(0.0, 0.0);
        let now = Instant::now();
        assert!((0..10_000).all(|_| rates.take(1, 1, now).is_ok()));
    }

    #[test]
    fn a_client_gets_its_rate_with_one_second_of_burst() {
        let rates = Rates::new(5.0, 0.0);
        let start = Instant::now();
        let taken = (0..20).filter(|_| rates.take(1, 1, start).is_ok()).count();
        assert_eq!(taken, 5);
        let wait = rates.take(1, 1, start).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(200),
            "{wait:?}"
        );
        // Another client is not held up.
        assert!(rates.take(2, 2, start).is_ok());
        // Half a second later, 2.5 tokens have come back: two messages.
        let later = start + Duration::from_millis(500);
        let taken = (0..20).filter(|_| rates.take(1, 1, later).is_ok()).count();
        assert_eq!(taken, 2);
    }

    #[test]
    fn the_tighter_of_client_and_campaign_limits_wins() {
        let rates = Rates::new(10.0, 2.0);
        let now = Instant::now();
        assert_eq!((0..10).filter(|_| rates.take(1, 7, now).is_ok()).count(), 2);
        // The client's other campaign still has room under the client's limit.
        assert_eq!((0..10).filter(|_| rates.take(1, 8, now).is_ok()).count(), 2);
    }
}
