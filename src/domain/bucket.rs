//! A token bucket holding one second of burst: the send limits of the API
//! and the delivery limits of the worker are both made of these.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A bucket with a full second of `rate` in it.
    pub fn full(rate: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: rate,
            at: now,
        }
    }

    /// Refills for the time passed; how long until one token is there
    /// (zero when one is).
    pub fn wait(&mut self, rate: f64, now: Instant) -> Duration {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * rate;
        self.tokens = (self.tokens + refill).min(rate);
        self.at = now;
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / rate)
        }
    }

    /// Uses one token (after `wait` said one is there).
    pub fn take(&mut self) {
        self.tokens -= 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_second_of_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = Bucket::full(4.0, start);
        for _ in 0..4 {
            assert_eq!(bucket.wait(4.0, start), Duration::ZERO);
            bucket.take();
        }
        assert_eq!(bucket.wait(4.0, start), Duration::from_millis(250));
        assert_eq!(
            bucket.wait(4.0, start + Duration::from_millis(250)),
            Duration::ZERO
        );
    }
}
