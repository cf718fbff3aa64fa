//! Failed authentications per peer. Refused credentials cost a signature check and a log line, whoever
//! sends them; so each peer has a budget of failures (a token bucket of `GATEWAY_AUTH_FAILURES_PER_PEER`
//! a minute, as many at once), and past it its requests with credentials are refused at once, without
//! being verified, until the budget refills. The answer is RESOURCE_EXHAUSTED, not UNAUTHENTICATED: the
//! credentials were not looked at, and a client told they are bad might throw away a good token.
//!
//! What is logged is bounded whatever clients send, however many addresses they use: refusals are
//! logged at most [`LOG_RATE`] lines a second in all (each line says how many were not logged since the
//! one before), and a peer running out of its budget is one more such line.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use super::Peer;
use crate::{
    auth::AuthError,
    rate::{Rate, RateLimiter},
};

/// Lines about refused credentials, across all peers.
const LOG_RATE: Rate = Rate {
    per_second: 1.0,
    burst: 10.0,
};

/// Failed authentications per peer, and the log lines they make.
pub struct AuthFailures {
    budget: RateLimiter<Peer>,
    log: RateLimiter<()>,
    unlogged: AtomicU64,
}

impl AuthFailures {
    /// A budget of `per_minute` failures a minute per peer, as many at once.
    pub fn new(per_minute: u32) -> Self {
        let per_minute = f64::from(per_minute);
        Self {
            budget: RateLimiter::new(Rate {
                per_second: per_minute / 60.0,
                burst: per_minute,
            }),
            log: RateLimiter::new(LOG_RATE),
            unlogged: AtomicU64::new(0),
        }
    }

    /// `Ok` if credentials from `peer` may be verified at `now`; otherwise how long until they may. A
    /// peer not known (no connection information) is always verified.
    pub fn admit(&self, peer: Option<Peer>, now: Instant) -> Result<(), Duration> {
        peer.map_or(Ok(()), |peer| self.budget.available(&peer, now))
    }

    /// Counts credentials from `peer` refused at `now` for `error` against its budget, and logs it
    /// within the log rate.
    pub fn refused(&self, peer: Option<Peer>, now: Instant, error: &AuthError) {
        let Some(peer) = peer else {
            self.log(now, |unlogged| tracing::info!(%error, unlogged, "refused credentials"));
            return;
        };
        let _ = self.budget.check(&peer, now);
        self.log(
            now,
            |unlogged| tracing::info!(%peer, %error, unlogged, "refused credentials"),
        );
        if let Err(wait) = self.budget.available(&peer, now) {
            self.log(now, |unlogged| {
                tracing::info!(
                    %peer,
                    unlogged,
                    "too many refused credentials: this peer's are refused unchecked for {}s",
                    wait.as_secs_f64().ceil()
                );
            });
        }
    }

    /// Writes a line with `line` (given how many were not written since the last) if the log rate
    /// allows, else counts it as not written.
    fn log(&self, now: Instant, line: impl FnOnce(u64)) {
        if self.log.check(&(), now).is_ok() {
            line(self.unlogged.swap(0, Ordering::Relaxed));
        } else {
            self.unlogged.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8) -> Option<Peer> {
        Some(Peer::of(std::net::SocketAddr::from(([192, 0, 2, n], 1000))))
    }

    #[test]
    fn past_its_budget_a_peer_is_not_verified_until_the_budget_refills_and_others_are() {
        let failures = AuthFailures::new(6);
        let t = Instant::now();
        for _ in 0..6 {
            assert_eq!(failures.admit(peer(1), t), Ok(()));
            failures.refused(peer(1), t, &AuthError::Expired);
        }
        let wait = failures.admit(peer(1), t).unwrap_err();
        assert!(
            wait > Duration::from_secs(9) && wait <= Duration::from_secs(10),
            "one a 10 s: {wait:?}"
        );
        assert_eq!(failures.admit(peer(2), t), Ok(()), "another peer has its own budget");
        assert_eq!(failures.admit(None, t), Ok(()), "an unknown peer is verified");
        assert_eq!(failures.admit(peer(1), t + Duration::from_secs(10)), Ok(()));
    }

    #[test]
    fn refusals_are_logged_at_the_log_rate_with_a_count_of_the_rest() {
        let failures = AuthFailures::new(1_000_000);
        let t = Instant::now();
        // A thousand refusals from 250 peers at once: only the log's burst is written.
        for n in 0..1000 {
            failures.refused(peer((n % 250) as u8), t, &AuthError::NotBearer);
        }
        let mut reported = None;
        failures.log(t + Duration::from_secs(1), |unlogged| reported = Some(unlogged));
        assert_eq!(
            reported,
            Some(990),
            "10 lines written; the next one counts the 990 others"
        );
    }
}
