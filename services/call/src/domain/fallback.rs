//! What the call service does when payment is unavailable (`PLACE_CALL_FALLBACK`), and how often it
//! retries a registration it deferred.

use std::{fmt, str::FromStr};

use baemin_kernel::Millis;

/// The fallback when payment is unavailable (the seed's Hystrix fallback).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Fallback {
    /// PlaceCall answers UNAVAILABLE and stores nothing; CancelCall answers UNAVAILABLE and the repair
    /// worker finishes the cancellation once payment answers.
    #[default]
    Reject,
    /// PlaceCall stores the call with its fee PENDING and the repair worker registers it later;
    /// CancelCall cancels at once and the repair worker voids the fee later.
    Defer,
}

impl Fallback {
    /// The configured name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reject => "reject",
            Self::Defer => "defer",
        }
    }
}

impl fmt::Display for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Fallback {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        [Self::Reject, Self::Defer]
            .into_iter()
            .find(|f| raw.eq_ignore_ascii_case(f.as_str()))
            .ok_or_else(|| "expected reject or defer".to_owned())
    }
}

/// Wait after the first retry of a deferred registration, ms.
const FIRST_RETRY_DELAY: Millis = 1_000;

/// The longest wait between two retries, ms: a payment that comes back is noticed within a minute.
const MAX_RETRY_DELAY: Millis = 60_000;

/// How long to wait after the `attempt`-th retry (1-based) of a deferred registration before the
/// next one: doubling from a second, capped at a minute.
pub fn retry_delay(attempt: u32) -> Millis {
    let doublings = attempt.saturating_sub(1).min(16);
    FIRST_RETRY_DELAY.saturating_mul(1 << doublings).min(MAX_RETRY_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_names_parse_in_any_case_and_nothing_else_does() {
        assert_eq!("reject".parse(), Ok(Fallback::Reject));
        assert_eq!("DEFER".parse(), Ok(Fallback::Defer));
        assert!("queue".parse::<Fallback>().is_err());
        assert_eq!(Fallback::default(), Fallback::Reject);
        assert_eq!(Fallback::Defer.to_string(), "defer");
    }

    #[test]
    fn retries_back_off_by_doubling_up_to_a_minute() {
        let delays: Vec<_> = (1..=9).map(retry_delay).collect();
        assert_eq!(
            delays,
            [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000]
        );
        assert_eq!(retry_delay(0), 1_000);
        assert_eq!(retry_delay(u32::MAX), 60_000);
    }
}
