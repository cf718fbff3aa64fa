//! Events per second per key: a token bucket per key — requests per subject, failed authentications per
//! peer. A key past its rate is refused (RESOURCE_EXHAUSTED) while the others go on. Buckets of quiet
//! keys are dropped when the table grows, and the table never holds more than [`MAX_KEYS`]: keys a
//! client can make up (addresses, subjects of valid tokens) cannot grow memory without bound.

use std::{
    borrow::Borrow,
    collections::HashMap,
    hash::Hash,
    sync::Mutex,
    time::{Duration, Instant},
};

/// How fast each key may go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Sustained events per second.
    pub per_second: f64,
    /// Events a key may have at once after being quiet.
    pub burst: f64,
}

impl Rate {
    /// The tokens of a bucket left with `tokens` at `at`, refilled up to `now`.
    fn refilled(&self, tokens: f64, at: Instant, now: Instant) -> f64 {
        (tokens + now.saturating_duration_since(at).as_secs_f64() * self.per_second).min(self.burst)
    }

    /// How long until a bucket with `tokens` holds one.
    fn wait(&self, tokens: f64) -> Duration {
        Duration::from_secs_f64((1.0 - tokens) / self.per_second)
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// One token bucket per key (by default a subject).
pub struct RateLimiter<K = String> {
    rate: Rate,
    buckets: Mutex<Buckets<K>>,
}

struct Buckets<K> {
    by_key: HashMap<K, Bucket>,
    pruned_at: Option<Instant>,
}

/// Beyond this many tracked keys, full (idle) buckets are dropped, at most once a second.
const PRUNE_ABOVE: usize = 10_000;
const PRUNE_EVERY: Duration = Duration::from_secs(1);
/// The most keys tracked. A new key past it first drops the full buckets, then, if none is full, the
/// least recently used one (forgetting, at worst, some key's spent tokens).
pub const MAX_KEYS: usize = 50_000;

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// A limiter allowing each key `rate`.
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            buckets: Mutex::new(Buckets {
                by_key: HashMap::new(),
                pruned_at: None,
            }),
        }
    }

    /// Takes one token for `key` at `now`: `Ok` if within its rate, otherwise how long until the next
    /// would be allowed.
    pub fn check<Q>(&self, key: &Q, now: Instant) -> Result<(), Duration>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let rate = self.rate;
        let mut guard = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Buckets { by_key, pruned_at } = &mut *guard;
        let due = pruned_at.is_none_or(|at| now.saturating_duration_since(at) >= PRUNE_EVERY);
        if by_key.len() > PRUNE_ABOVE && due {
            by_key.retain(|_, b| rate.refilled(b.tokens, b.at, now) < rate.burst);
            *pruned_at = Some(now);
        }
        // Full (idle keys were dropped at the last prune): make room by dropping any one key. Scanning the
        // table for the best victim on every new key would cost a client that brings fresh keys (IPv6
        // prefixes, tokens) a full pass under this lock per request; a dropped key merely starts afresh.
        if !by_key.contains_key(key)
            && by_key.len() >= MAX_KEYS
            && let Some(victim) = by_key.keys().next().cloned()
        {
            by_key.remove::<K>(&victim);
        }
        let bucket = match by_key.get_mut(key) {
            Some(bucket) => bucket,
            None => by_key.entry(key.to_owned()).or_insert(Bucket {
                tokens: rate.burst,
                at: now,
            }),
        };
        bucket.tokens = rate.refilled(bucket.tokens, bucket.at, now);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(rate.wait(bucket.tokens))
        }
    }

    /// Whether `key` has a token at `now`, without taking it (nor tracking a key not seen yet): `Ok`,
    /// or how long until it will.
    pub fn available<Q>(&self, key: &Q, now: Instant) -> Result<(), Duration>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let guard = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(bucket) = guard.by_key.get(key) else {
            return Ok(());
        };
        let tokens = self.rate.refilled(bucket.tokens, bucket.at, now);
        if tokens >= 1.0 {
            Ok(())
        } else {
            Err(self.rate.wait(tokens))
        }
    }

    #[cfg(test)]
    fn keys(&self) -> usize {
        self.buckets.lock().unwrap().by_key.len()
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
    fn availability_is_told_without_taking_a_token_or_tracking_a_new_key() {
        let limiter = limiter();
        let t = Instant::now();
        assert_eq!(limiter.available("new", t), Ok(()));
        assert_eq!(limiter.keys(), 0);
        for _ in 0..5 {
            assert_eq!(limiter.available("r-1", t), Ok(()));
            limiter.check("r-1", t).unwrap();
        }
        assert!(limiter.available("r-1", t).is_err());
        assert!(limiter.available("r-1", t + Duration::from_millis(100)).is_ok());
    }

    #[test]
    fn idle_callers_are_forgotten_when_the_table_grows() {
        let limiter = limiter();
        let t = Instant::now();
        for n in 0..=PRUNE_ABOVE {
            limiter.check(&format!("s-{n}"), t).unwrap();
        }
        limiter.check("late", t + Duration::from_secs(10)).unwrap();
        assert!(limiter.keys() < 10, "idle buckets were dropped");
    }

    #[test]
    fn the_table_never_holds_more_than_its_cap_even_when_no_key_is_idle() {
        // Never refilling: no bucket ever becomes idle, so only the cap bounds the table.
        let limiter = RateLimiter::<u32>::new(Rate {
            per_second: 1e-9,
            burst: 2.0,
        });
        let t = Instant::now();
        for n in 0..(MAX_KEYS as u32 + 100) {
            limiter.check(&n, t + Duration::from_micros(u64::from(n))).unwrap();
        }
        assert_eq!(limiter.keys(), MAX_KEYS);
        // The least recently seen went first; a key seen again keeps its spent tokens.
        limiter
            .check(&(MAX_KEYS as u32 + 99), t + Duration::from_secs(1))
            .unwrap();
        assert!(
            limiter
                .check(&(MAX_KEYS as u32 + 99), t + Duration::from_secs(1))
                .is_err()
        );
    }
}
