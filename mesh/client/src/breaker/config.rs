//! Settings of a circuit breaker, with the meaning and defaults of resilience4j's `CircuitBreakerConfig`.

use std::{fmt, str::FromStr, time::Duration};

use baemin_mesh_server::config::{ConfigError, Settings};

/// Largest count-based window: a typo must not allocate gigabytes at start-up.
pub const MAX_COUNT_WINDOW: u32 = 100_000;
/// Largest time-based window, in seconds (a day).
pub const MAX_TIME_WINDOW_SECS: u32 = 86_400;

/// How the closed circuit's sliding window is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WindowType {
    /// The last `window_size` calls (resilience4j's `COUNT_BASED`).
    #[default]
    Count,
    /// The calls that ended in the last `window_size` seconds (resilience4j's `TIME_BASED`).
    Time,
}

impl FromStr for WindowType {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "count" => Ok(Self::Count),
            "time" => Ok(Self::Time),
            _ => Err("expected count or time"),
        }
    }
}

/// How a circuit judges its dependency. Build it, change the fields you need, and let
/// [`super::CircuitBreakerLayer::new`] validate it.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Count-based or time-based sliding window. Default: count.
    pub window_type: WindowType,
    /// Calls (count) or seconds (time) the closed circuit looks back over. Default: 100.
    pub window_size: u32,
    /// Calls the window must hold before rates are judged. A count-based window never needs more
    /// than it can hold, so the effective minimum is `min(minimum_calls, window_size)` there, as in
    /// resilience4j. Default: 100.
    pub minimum_calls: u32,
    /// Failure rate, in percent, at or above which the circuit opens. Default: 50.
    pub failure_rate_threshold: f64,
    /// A call that takes longer than this is slow, whatever its outcome. Default: 60 s.
    pub slow_call_duration: Duration,
    /// Slow-call rate, in percent, at or above which the circuit opens. Default: 100.
    pub slow_call_rate_threshold: f64,
    /// How long an open circuit fails fast before it lets trial calls through. Default: 60 s.
    pub open_wait: Duration,
    /// Trial calls let through when half-open; the rest fail fast. Default: 10.
    pub half_open_calls: u32,
    /// Longest stay in half-open before opening again, in case trial calls never finish; `None`
    /// waits for them (resilience4j's default). Default: `None`.
    pub half_open_max_wait: Option<Duration>,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window_type: WindowType::Count,
            window_size: 100,
            minimum_calls: 100,
            failure_rate_threshold: 50.0,
            slow_call_duration: Duration::from_secs(60),
            slow_call_rate_threshold: 100.0,
            open_wait: Duration::from_secs(60),
            half_open_calls: 10,
            half_open_max_wait: None,
        }
    }
}

/// A field of [`BreakerConfig`], named in validation errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerField {
    /// [`BreakerConfig::window_size`].
    WindowSize,
    /// [`BreakerConfig::minimum_calls`].
    MinimumCalls,
    /// [`BreakerConfig::failure_rate_threshold`].
    FailureRateThreshold,
    /// [`BreakerConfig::slow_call_duration`].
    SlowCallDuration,
    /// [`BreakerConfig::slow_call_rate_threshold`].
    SlowCallRateThreshold,
    /// [`BreakerConfig::open_wait`].
    OpenWait,
    /// [`BreakerConfig::half_open_calls`].
    HalfOpenCalls,
    /// [`BreakerConfig::half_open_max_wait`].
    HalfOpenMaxWait,
}

impl BreakerField {
    /// The field's name in [`BreakerConfig`].
    pub fn name(self) -> &'static str {
        match self {
            Self::WindowSize => "window_size",
            Self::MinimumCalls => "minimum_calls",
            Self::FailureRateThreshold => "failure_rate_threshold",
            Self::SlowCallDuration => "slow_call_duration",
            Self::SlowCallRateThreshold => "slow_call_rate_threshold",
            Self::OpenWait => "open_wait",
            Self::HalfOpenCalls => "half_open_calls",
            Self::HalfOpenMaxWait => "half_open_max_wait",
        }
    }

    /// The end of the environment key that sets the field: `<PREFIX>_BREAKER_<suffix>`.
    pub fn env_suffix(self) -> &'static str {
        match self {
            Self::WindowSize => "WINDOW_SIZE",
            Self::MinimumCalls => "MINIMUM_CALLS",
            Self::FailureRateThreshold => "FAILURE_RATE",
            Self::SlowCallDuration => "SLOW_CALL_DURATION",
            Self::SlowCallRateThreshold => "SLOW_CALL_RATE",
            Self::OpenWait => "OPEN_WAIT",
            Self::HalfOpenCalls => "HALF_OPEN_CALLS",
            Self::HalfOpenMaxWait => "HALF_OPEN_MAX_WAIT",
        }
    }
}

impl fmt::Display for BreakerField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A [`BreakerConfig`] field holds a value the circuit cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid circuit breaker setting {field}: {reason}")]
pub struct BreakerConfigError {
    /// The field.
    pub field: BreakerField,
    /// What the field must be.
    pub reason: &'static str,
}

fn check(ok: bool, field: BreakerField, reason: &'static str) -> Result<(), BreakerConfigError> {
    if ok {
        Ok(())
    } else {
        Err(BreakerConfigError { field, reason })
    }
}

fn is_percentage(rate: f64) -> bool {
    // Written so that NaN is refused too.
    rate > 0.0 && rate <= 100.0
}

impl BreakerConfig {
    /// Checks every field; the first bad one is named in the error.
    pub fn validate(&self) -> Result<(), BreakerConfigError> {
        let (max_window, window_reason) = match self.window_type {
            WindowType::Count => (MAX_COUNT_WINDOW, "must be between 1 and 100000 calls"),
            WindowType::Time => (MAX_TIME_WINDOW_SECS, "must be between 1 and 86400 seconds"),
        };
        check(
            (1..=max_window).contains(&self.window_size),
            BreakerField::WindowSize,
            window_reason,
        )?;
        check(
            self.minimum_calls >= 1,
            BreakerField::MinimumCalls,
            "must be at least 1",
        )?;
        check(
            is_percentage(self.failure_rate_threshold),
            BreakerField::FailureRateThreshold,
            "must be a percentage above 0 and at most 100",
        )?;
        check(
            !self.slow_call_duration.is_zero(),
            BreakerField::SlowCallDuration,
            "must be greater than zero",
        )?;
        check(
            is_percentage(self.slow_call_rate_threshold),
            BreakerField::SlowCallRateThreshold,
            "must be a percentage above 0 and at most 100",
        )?;
        check(
            !self.open_wait.is_zero(),
            BreakerField::OpenWait,
            "must be greater than zero",
        )?;
        check(
            self.half_open_calls >= 1,
            BreakerField::HalfOpenCalls,
            "must be at least 1",
        )?;
        check(
            self.half_open_max_wait.is_none_or(|d| !d.is_zero()),
            BreakerField::HalfOpenMaxWait,
            "must be greater than zero when set",
        )?;
        Ok(())
    }

    /// Calls the closed window must hold before it is judged (clamped to a count window's size).
    pub(crate) fn effective_minimum_calls(&self) -> u32 {
        match self.window_type {
            WindowType::Count => self.minimum_calls.min(self.window_size),
            WindowType::Time => self.minimum_calls,
        }
    }

    /// Reads `<PREFIX>_BREAKER_WINDOW_TYPE` (`count`|`time`), `_WINDOW_SIZE`, `_MINIMUM_CALLS`,
    /// `_FAILURE_RATE` and `_SLOW_CALL_RATE` (percent, `50` or `50%`), `_SLOW_CALL_DURATION`,
    /// `_OPEN_WAIT` and `_HALF_OPEN_MAX_WAIT` (`250ms`, `2s`), `_HALF_OPEN_CALLS`; unset keys keep
    /// the defaults. A bad or out-of-range value is an error naming its key.
    pub fn from_settings(prefix: &str, s: &Settings<'_>) -> Result<Self, ConfigError> {
        Self::from_settings_or(prefix, s, Self::default())
    }

    /// Like [`Self::from_settings`], with `d` as the defaults of unset keys.
    pub fn from_settings_or(prefix: &str, s: &Settings<'_>, d: Self) -> Result<Self, ConfigError> {
        let key = |suffix: &str| format!("{prefix}_BREAKER_{suffix}");
        let config = Self {
            window_type: s.parse(&key("WINDOW_TYPE"), d.window_type)?,
            window_size: s.parse(&key("WINDOW_SIZE"), d.window_size)?,
            minimum_calls: s.parse(&key("MINIMUM_CALLS"), d.minimum_calls)?,
            failure_rate_threshold: percentage(s, &key("FAILURE_RATE"), d.failure_rate_threshold)?,
            slow_call_duration: s.duration(&key("SLOW_CALL_DURATION"), d.slow_call_duration)?,
            slow_call_rate_threshold: percentage(s, &key("SLOW_CALL_RATE"), d.slow_call_rate_threshold)?,
            open_wait: s.duration(&key("OPEN_WAIT"), d.open_wait)?,
            half_open_calls: s.parse(&key("HALF_OPEN_CALLS"), d.half_open_calls)?,
            half_open_max_wait: match s.raw(&key("HALF_OPEN_MAX_WAIT")) {
                None => None,
                Some(_) => Some(s.duration(&key("HALF_OPEN_MAX_WAIT"), Duration::ZERO)?),
            },
        };
        config.validate().map_err(|err| {
            let key = key(err.field.env_suffix());
            let value = s.raw(&key).unwrap_or_default();
            ConfigError::new(&key, &value, err.reason)
        })?;
        Ok(config)
    }
}

/// `key` as a percentage (`50`, `12.5`, `50%`), or `default` when unset.
fn percentage(s: &Settings<'_>, key: &str, default: f64) -> Result<f64, ConfigError> {
    let Some(v) = s.raw(key) else {
        return Ok(default);
    };
    v.strip_suffix('%')
        .unwrap_or(&v)
        .trim()
        .parse::<f64>()
        .map_err(|_| ConfigError::new(key, &v, "expected a percentage like 50"))
}
