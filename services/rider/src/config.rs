//! Settings of the rider service.

use std::time::Duration;

use baemin_mesh_runtime::ServiceConfig;
use baemin_mesh_server::config::{ConfigError, Env, Settings};

/// The rider service's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Port, database, NATS.
    pub service: ServiceConfig,
    /// `PAYMENT_URL`: where the payment service answers `Settle` (default `http://127.0.0.1:8083`).
    pub payment_url: String,
    /// `PAYMENT_DEADLINE`: longest time one payment call may take (default 2s).
    pub payment_deadline: Duration,
}

impl Config {
    /// Default gRPC port (DESIGN.md, "Runtime contract").
    pub const DEFAULT_PORT: u16 = 8082;

    /// Reads the configuration from `env`.
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let s = Settings::new(env);
        let payment_url = s.url("PAYMENT_URL", "http://127.0.0.1:8083", &["http", "https"])?;
        // The client is built at start-up from this URL; refuse here what it would refuse there.
        if let Err(err) = tonic::transport::Endpoint::from_shared(payment_url.clone()) {
            return Err(ConfigError::new("PAYMENT_URL", &payment_url, err));
        }
        Ok(Self {
            service: ServiceConfig::from_settings("rider", Self::DEFAULT_PORT, &s)?,
            payment_url,
            payment_deadline: s.duration("PAYMENT_DEADLINE", Duration::from_secs(2))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_runtime_contract() {
        let env: [(&str, &str); 0] = [];
        let config = Config::from_env(&env).unwrap();
        assert_eq!(config.service.listen_addr.port(), 8082);
        assert_eq!(config.service.name, "rider");
        assert_eq!(config.payment_url, "http://127.0.0.1:8083");
        assert_eq!(config.payment_deadline, Duration::from_secs(2));
    }

    #[test]
    fn a_bad_payment_setting_stops_start_up_naming_it() {
        for (key, value) in [
            ("PAYMENT_URL", "127.0.0.1:8083"),
            ("PAYMENT_URL", "http://bad host:8083"),
            ("PAYMENT_DEADLINE", "soon"),
        ] {
            let env = [(key, value)];
            assert_eq!(Config::from_env(&env).unwrap_err().key, key);
        }
    }

    #[test]
    fn payment_settings_are_read() {
        let env = [
            ("PAYMENT_URL", "https://payment.baemin:8083"),
            ("PAYMENT_DEADLINE", "750ms"),
        ];
        let config = Config::from_env(&env).unwrap();
        assert_eq!(config.payment_url, "https://payment.baemin:8083");
        assert_eq!(config.payment_deadline, Duration::from_millis(750));
    }
}
