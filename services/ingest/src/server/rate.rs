//! The per-app token bucket (default 1 000 requests/s, burst 2 000, per node).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::reply::RequestError;

/// Token buckets by app. Time is given by the caller (`tokio::time::Instant::now()` in the
/// server, a paused clock in tests), so the limiter never reads a clock itself.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new(1_000, 2_000)
    }
}

impl RateLimiter {
    /// `per_second` tokens refill each second up to `burst` (both at least 1).
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second: f64::from(per_second.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token of `app`'s bucket at `now`, or answers 429 with the time until the next
    /// token. A new app starts with a full bucket. Buckets are kept per authenticated app, so
    /// their number is bounded by the apps that have keys.
    pub fn check(&self, app: &str, now: Instant) -> Result<(), RequestError> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = match buckets.get_mut(app) {
            Some(bucket) => bucket,
            None => buckets.entry(app.to_owned()).or_insert(Bucket {
                tokens: self.burst,
                at: now,
            }),
        };
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.per_second;
            Err(RequestError::RateLimited {
                retry_after: Duration::from_secs_f64(wait),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_then_the_refill_rate_per_app() {
        let limiter = RateLimiter::default();
        let start = Instant::now();
        for i in 0..2_000 {
            assert!(
                limiter.check("app-1", start).is_ok(),
                "request {i} of the burst"
            );
        }
        let refused = limiter.check("app-1", start).expect_err("bucket empty");
        assert_eq!(refused.status(), 429);
        assert_eq!(refused.retry_after_secs(), Some(1), "1 ms rounds up to 1 s");
        let RequestError::RateLimited { retry_after } = refused else {
            panic!("{refused:?}")
        };
        assert_eq!(retry_after, Duration::from_millis(1));
        // Another app has its own bucket.
        assert!(limiter.check("app-2", start).is_ok());

        tokio::time::advance(Duration::from_millis(10)).await;
        let later = Instant::now();
        for i in 0..10 {
            assert!(limiter.check("app-1", later).is_ok(), "refilled token {i}");
        }
        assert!(limiter.check("app-1", later).is_err());

        // A long idle refills to the burst, not beyond.
        tokio::time::advance(Duration::from_secs(60)).await;
        let idle = Instant::now();
        for _ in 0..2_000 {
            assert!(limiter.check("app-1", idle).is_ok());
        }
        assert!(limiter.check("app-1", idle).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_the_time_to_the_next_token() {
        let limiter = RateLimiter::new(2, 1);
        let now = Instant::now();
        assert!(limiter.check("a", now).is_ok());
        let RequestError::RateLimited { retry_after } = limiter.check("a", now).expect_err("empty")
        else {
            panic!("not 429")
        };
        assert_eq!(retry_after, Duration::from_millis(500));
        tokio::time::advance(retry_after).await;
        assert!(limiter.check("a", Instant::now()).is_ok());
    }
}
