//! Configuration from the environment (12-factor), typed and parsed once, testable without `set_var`.

use std::{collections::HashMap, fmt::Display, str::FromStr, time::Duration};

/// Where settings come from: the process environment, or a map in tests.
pub trait Env {
    /// The raw value of `key`, if set.
    fn var(&self, key: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).cloned()
    }
}

impl<const N: usize> Env for [(&str, &str); N] {
    fn var(&self, key: &str) -> Option<String> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| (*v).to_owned())
    }
}

/// A setting that is present but unusable. The process stops at start with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad setting {key}={value:?}: {reason}")]
pub struct ConfigError {
    /// The environment variable.
    pub key: String,
    /// What it held.
    pub value: String,
    /// Why it cannot be used.
    pub reason: String,
}

impl ConfigError {
    /// A bad value of `key`.
    pub fn new(key: &str, value: &str, reason: impl Display) -> Self {
        Self {
            key: key.to_owned(),
            value: value.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// Reads typed settings from an [`Env`]; blank values count as unset.
pub struct Settings<'a> {
    env: &'a dyn Env,
}

impl<'a> Settings<'a> {
    /// Settings read from `env`.
    pub fn new(env: &'a dyn Env) -> Self {
        Self { env }
    }

    /// The value of `key`, trimmed, or `None` when unset or blank.
    pub fn raw(&self, key: &str) -> Option<String> {
        self.env.var(key).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    /// The value of `key` or `default`.
    pub fn string(&self, key: &str, default: &str) -> String {
        self.raw(key).unwrap_or_else(|| default.to_owned())
    }

    /// `key` parsed as `T`, or `default` when unset.
    pub fn parse<T>(&self, key: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.raw(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e| ConfigError::new(key, &v, e)),
        }
    }

    /// `ADMIN_ADDR`, the admin HTTP port (metrics, probes): by default the gRPC address with the port
    /// 1000 higher (8081 -> 9081), or port 0 when the gRPC port is 0 (tests).
    pub fn admin_addr(&self, grpc: std::net::SocketAddr) -> Result<std::net::SocketAddr, ConfigError> {
        let default = default_admin_addr(grpc).ok_or_else(|| {
            ConfigError::new(
                "ADMIN_ADDR",
                "",
                format!("set it: GRPC_ADDR's port {} + 1000 is not a port", grpc.port()),
            )
        })?;
        let addr = self.parse("ADMIN_ADDR", default)?;
        if addr.port() != 0
            && addr.port() == grpc.port()
            && (addr.ip() == grpc.ip() || addr.ip().is_unspecified() || grpc.ip().is_unspecified())
        {
            return Err(ConfigError::new(
                "ADMIN_ADDR",
                &addr.to_string(),
                "must differ from GRPC_ADDR",
            ));
        }
        Ok(addr)
    }

    /// `key` as a duration in milliseconds (`250`, `250ms`) or seconds (`2s`), or `default`.
    pub fn duration(&self, key: &str, default: Duration) -> Result<Duration, ConfigError> {
        let Some(v) = self.raw(key) else {
            return Ok(default);
        };
        let (digits, unit) = match v.strip_suffix("ms") {
            Some(d) => (d, 1),
            None => match v.strip_suffix('s') {
                Some(d) => (d, 1000),
                None => (v.as_str(), 1),
            },
        };
        let n: u64 = digits
            .trim()
            .parse()
            .map_err(|_| ConfigError::new(key, &v, "expected milliseconds like 250ms or seconds like 2s"))?;
        if n == 0 {
            return Err(ConfigError::new(key, &v, "must be greater than zero"));
        }
        Ok(Duration::from_millis(n * unit))
    }

    /// `key` as a URL with one of the given schemes, or `default`.
    pub fn url(&self, key: &str, default: &str, schemes: &[&str]) -> Result<String, ConfigError> {
        let v = self.string(key, default);
        let ok = schemes.iter().any(|s| {
            v.strip_prefix(s)
                .and_then(|rest| rest.strip_prefix("://"))
                .is_some_and(|rest| !rest.is_empty())
        });
        if ok {
            Ok(v)
        } else {
            Err(ConfigError::new(
                key,
                &v,
                format!("expected a URL starting with {}://", schemes.join("://, ")),
            ))
        }
    }
}

/// The admin address that goes with gRPC address `grpc`: the same host, port + 1000 (8081 -> 9081), or
/// port 0 when `grpc`'s is 0; `None` when port + 1000 is not a port.
pub fn default_admin_addr(grpc: std::net::SocketAddr) -> Option<std::net::SocketAddr> {
    let port = match grpc.port() {
        0 => 0,
        p => p.checked_add(1000)?,
    };
    Some(std::net::SocketAddr::new(grpc.ip(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_and_blank_values_fall_back_to_defaults() {
        let env = [("BLANK", "  ")];
        let s = Settings::new(&env);
        assert_eq!(s.parse("MISSING", 7u32), Ok(7));
        assert_eq!(s.parse("BLANK", 7u32), Ok(7));
    }

    #[test]
    fn a_bad_number_names_the_setting() {
        let env = [("PAYMENT_COMMISSION_BPS", "ten")];
        let err = Settings::new(&env)
            .parse::<u32>("PAYMENT_COMMISSION_BPS", 1000)
            .unwrap_err();
        assert_eq!(err.key, "PAYMENT_COMMISSION_BPS");
        assert!(err.to_string().contains("PAYMENT_COMMISSION_BPS=\"ten\""), "{err}");
    }

    #[test]
    fn durations_accept_ms_and_s_and_refuse_zero_and_garbage() {
        let env = [("A", "250ms"), ("B", "2s"), ("C", "40"), ("D", "0s"), ("E", "soon")];
        let s = Settings::new(&env);
        let d = Duration::from_secs(9);
        assert_eq!(s.duration("A", d), Ok(Duration::from_millis(250)));
        assert_eq!(s.duration("B", d), Ok(Duration::from_secs(2)));
        assert_eq!(s.duration("C", d), Ok(Duration::from_millis(40)));
        assert!(s.duration("D", d).is_err());
        assert!(s.duration("E", d).is_err());
        assert_eq!(s.duration("F", d), Ok(d));
    }

    #[test]
    fn urls_must_have_an_allowed_scheme_and_a_host() {
        let env = [("NATS_URL", "localhost:4222"), ("PAYMENT_URL", "http://")];
        let s = Settings::new(&env);
        assert!(s.url("NATS_URL", "nats://127.0.0.1:4222", &["nats"]).is_err());
        assert!(s.url("PAYMENT_URL", "http://x", &["http", "https"]).is_err());
        assert_eq!(s.url("OTHER", "nats://a:1", &["nats"]), Ok("nats://a:1".to_owned()));
    }
}
