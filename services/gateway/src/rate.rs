//! Requests per second per subject: a token bucket per caller. A caller past its rate is refused
//! (RESOURCE_EXHAUSTED) while the others go on. Buckets of quiet callers are dropped when the table
//! grows, so memory stays bounded by the number of recently active callers.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// How fast each caller may go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests a caller may make at once after being quiet.
    pub burst: f64,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// One token bucket per subject.
pub struct RateLimiter {
    rate: Rate,
    buckets: Mutex<Buckets>,
}

struct Buckets {
    by_subject: HashMap<String, Bucket>,
    pruned_at: Option<Instant>,
}

/// Beyond this many tracked callers, full (idle) buckets are dropped, at most once a second.
const PRUNE_ABOVE: usize = 10_000;
const PRUNE_EVERY: Duration = Duration::from_secs(1);

impl RateLimiter {
    /// A limiter allowing each subject `rate`.
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            buckets: Mutex::new(Buckets {
                by_subject: HashMap::new(),
                pruned_at: None,
            }),
        }
    }

    /// Takes one request for `subject` at `now`: `Ok` if within its rate, otherwise how long until
    /// the next request would be allowed.
    pub fn check(&self, subject: &str, now: Instant) -> Result<(), Duration> {
        let Rate { per_second, burst } = self.rate;
        let mut guard = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Buckets {
            by_subject: buckets,
            pruned_at,
        } = &mut *guard;
        let due = pruned_at.is_none_or(|at| now.saturating_duration_since(at) >= PRUNE_EVERY);
        if buckets.len() > PRUNE_ABOVE && due {
            buckets.retain(|_, b| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_second < burst);
            *pruned_at = Some(now);
        }
        let bucket = match buckets.get_mut(subject) {
            Some(bucket) => bucket,
            None => buckets
                .entry(subject.to_owned())
                .or_insert(Bucket { tokens: burst, at: now }),
        };
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * per_second;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> RateLimiter {
        RateLimiter::new(Rate {
            per_second: 10.0,
            burst: 5.0,
        })
    }

    #[test]
    fn a_burst_is_allowed_then_the_next_request_is_refused_with_the_wait() {
        let limiter = limiter();
        let t = Instant::now();
        for _ in 0..5 {
            assert_eq!(limiter.check("r-1", t), Ok(()));
        }
        let wait = limiter.check("r-1", t).unwrap_err();
        assert!(wait <= Duration::from_millis(100) && wait > Duration::ZERO, "{wait:?}");
    }

    #[test]
    fn tokens_come_back_at_the_rate() {
        let limiter = limiter();
        let t = Instant::now();
        for _ in 0..5 {
            limiter.check("r-1", t).unwrap();
        }
        assert!(limiter.check("r-1", t + Duration::from_millis(50)).is_err());
        assert!(limiter.check("r-1", t + Duration::from_millis(150)).is_ok());
    }

    #[test]
    fn one_callers_burst_does_not_limit_another() {
        let limiter = limiter();
        let t = Instant::now();
        while limiter.check("busy", t).is_ok() {}
        assert_eq!(limiter.check("quiet", t), Ok(()));
    }

    #[test]
    fn idle_callers_are_forgotten_when_the_table_grows() {
        let limiter = limiter();
        let t = Instant::now();
        for n in 0..=PRUNE_ABOVE {
            limiter.check(&format!("s-{n}"), t).unwrap();
        }
        limiter.check("late", t + Duration::from_secs(10)).unwrap();
        assert!(
            limiter.buckets.lock().unwrap().by_subject.len() < 10,
            "idle buckets were dropped"
        );
    }
}
