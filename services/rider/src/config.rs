//! Settings of the rider service.

use std::time::Duration;

use baemin_mesh_client::ClientSettings;
use baemin_mesh_runtime::ServiceConfig;
use baemin_mesh_server::{
    config::{ConfigError, Env, Settings},
    identity::IdentityKey,
};

/// The rider service's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Port, database, NATS.
    pub service: ServiceConfig,
    /// `PAYMENT_URL`, `PAYMENT_DEADLINE`: the payment service (default `http://127.0.0.1:8083`, 2s).
    pub payment: ClientSettings,
    /// `RIDER_REPAIR_AFTER`: age after which the repair worker re-sends the Settle of a CompleteDelivery
    /// whose outcome was never recorded (default 30s). Must exceed `PAYMENT_DEADLINE`, or settlements
    /// still in flight would be repaired.
    pub repair_after: Duration,
    /// `RIDER_REPAIR_INTERVAL`: time between repair rounds (default 5s).
    pub repair_interval: Duration,
}

impl Config {
    /// Default gRPC port (DESIGN.md, "Runtime contract").
    pub const DEFAULT_PORT: u16 = 8082;

    /// Reads the configuration from `env`.
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let s = Settings::new(env);
        let payment = ClientSettings::from_settings("payment", "PAYMENT", "http://127.0.0.1:8083", &s)?
            .signed_as("rider", IdentityKey::from_settings(&s)?);
        let payment_deadline = payment.deadline;
        let repair_after = s.duration("RIDER_REPAIR_AFTER", Duration::from_secs(30))?;
        if repair_after <= payment_deadline {
            return Err(ConfigError::new(
                "RIDER_REPAIR_AFTER",
                &format!("{repair_after:?}"),
                format!("must be longer than PAYMENT_DEADLINE ({payment_deadline:?})"),
            ));
        }
        Ok(Self {
            service: ServiceConfig::from_settings("rider", Self::DEFAULT_PORT, &s)?,
            payment,
            repair_after,
            repair_interval: s.duration("RIDER_REPAIR_INTERVAL", Duration::from_secs(5))?,
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
        assert_eq!(config.payment.url, "http://127.0.0.1:8083");
        assert_eq!(config.payment.deadline, Duration::from_secs(2));
        assert_eq!(config.repair_after, Duration::from_secs(30));
        assert_eq!(config.repair_interval, Duration::from_secs(5));
    }

    #[test]
    fn a_bad_payment_setting_stops_start_up_naming_it() {
        for (key, value) in [
            ("PAYMENT_URL", "127.0.0.1:8083"),
            ("PAYMENT_URL", "http://bad host:8083"),
            ("PAYMENT_DEADLINE", "soon"),
            ("RIDER_REPAIR_AFTER", "0s"),
            ("RIDER_REPAIR_AFTER", "later"),
            ("RIDER_REPAIR_INTERVAL", "often"),
        ] {
            let env = [(key, value)];
            assert_eq!(Config::from_env(&env).unwrap_err().key, key);
        }
    }

    #[test]
    fn repairs_must_wait_longer_than_a_payment_call_can_take() {
        let env = [("PAYMENT_DEADLINE", "5s"), ("RIDER_REPAIR_AFTER", "5s")];
        assert_eq!(Config::from_env(&env).unwrap_err().key, "RIDER_REPAIR_AFTER");
        let env = [("PAYMENT_DEADLINE", "5s"), ("RIDER_REPAIR_AFTER", "6s")];
        assert_eq!(Config::from_env(&env).unwrap().repair_after, Duration::from_secs(6));
    }

    #[test]
    fn repair_settings_are_read() {
        let env = [("RIDER_REPAIR_AFTER", "60s"), ("RIDER_REPAIR_INTERVAL", "250ms")];
        let config = Config::from_env(&env).unwrap();
        assert_eq!(config.repair_after, Duration::from_secs(60));
        assert_eq!(config.repair_interval, Duration::from_millis(250));
    }

    #[test]
    fn payment_settings_are_read() {
        let env = [
            ("PAYMENT_URL", "https://payment.baemin:8083"),
            ("PAYMENT_DEADLINE", "750ms"),
        ];
        let config = Config::from_env(&env).unwrap();
        assert_eq!(config.payment.url, "https://payment.baemin:8083");
        assert_eq!(config.payment.deadline, Duration::from_millis(750));
    }
}
