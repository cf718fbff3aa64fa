//! Settings of the call service.

use std::time::Duration;

use baemin_mesh_client::ClientSettings;
use baemin_mesh_runtime::ServiceConfig;
use baemin_mesh_server::{
    config::{ConfigError, Env, Settings},
    identity::IdentityKey,
};

pub use crate::domain::Fallback;

/// The call service's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Port, database, NATS.
    pub service: ServiceConfig,
    /// `PAYMENT_URL`, `PAYMENT_DEADLINE`: the payment service (default `http://127.0.0.1:8083`, 2s).
    pub payment: ClientSettings,
    /// `CALL_REPAIR_AFTER`: age after which the repair worker finishes an abandoned PlaceCall or
    /// CancelCall (default 30s). Must exceed `PAYMENT_DEADLINE`, or live requests would be repaired.
    pub repair_after: Duration,
    /// `CALL_REPAIR_INTERVAL`: time between repair rounds (default 5s).
    pub repair_interval: Duration,
    /// `PLACE_CALL_FALLBACK`: what PlaceCall and CancelCall do when payment is unavailable, `reject`
    /// (default: UNAVAILABLE) or `defer` (the call is stored with its fee PENDING, a cancellation
    /// commits at once; the repair worker finishes both with payment later).
    pub fallback: Fallback,
}

impl Config {
    /// Default gRPC port (DESIGN.md, "Runtime contract").
    pub const DEFAULT_PORT: u16 = 8081;

    /// Reads the configuration from `env`.
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let s = Settings::new(env);
        let payment = ClientSettings::from_settings("payment", "PAYMENT", "http://127.0.0.1:8083", &s)?
            .signed_as("call", IdentityKey::from_settings(&s)?);
        let payment_deadline = payment.deadline;
        let repair_after = s.duration("CALL_REPAIR_AFTER", Duration::from_secs(30))?;
        if repair_after <= payment_deadline {
            return Err(ConfigError::new(
                "CALL_REPAIR_AFTER",
                &format!("{repair_after:?}"),
                format!("must be longer than PAYMENT_DEADLINE ({payment_deadline:?})"),
            ));
        }
        Ok(Self {
            service: ServiceConfig::from_settings("call", Self::DEFAULT_PORT, &s)?,
            payment,
            repair_after,
            repair_interval: s.duration("CALL_REPAIR_INTERVAL", Duration::from_secs(5))?,
            fallback: s.parse("PLACE_CALL_FALLBACK", Fallback::Reject)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_runtime_contract() {
        let env: [(&str, &str); 0] = [];
        let c = Config::from_env(&env).unwrap();
        assert_eq!(c.service.listen_addr.port(), 8081);
        assert_eq!(c.payment.url, "http://127.0.0.1:8083");
        assert_eq!(c.payment.deadline, Duration::from_secs(2));
        assert_eq!(c.repair_after, Duration::from_secs(30));
        assert_eq!(c.repair_interval, Duration::from_secs(5));
        assert_eq!(c.fallback, Fallback::Reject);
    }

    #[test]
    fn the_place_call_fallback_is_reject_or_defer() {
        for (raw, fallback) in [
            ("reject", Fallback::Reject),
            ("defer", Fallback::Defer),
            (" Defer ", Fallback::Defer),
        ] {
            let c = Config::from_env(&[("PLACE_CALL_FALLBACK", raw)]).unwrap();
            assert_eq!(c.fallback, fallback, "{raw:?}");
        }
        let err = Config::from_env(&[("PLACE_CALL_FALLBACK", "queue")]).unwrap_err();
        assert_eq!(err.key, "PLACE_CALL_FALLBACK");
        assert_eq!(err.value, "queue");
        assert!(err.reason.contains("reject or defer"), "{err}");
    }

    #[test]
    fn a_bad_setting_stops_start_up_naming_it() {
        for (key, value) in [
            ("PAYMENT_URL", "127.0.0.1:8083"),
            ("PAYMENT_DEADLINE", "soon"),
            ("CALL_REPAIR_AFTER", "0s"),
            ("CALL_REPAIR_INTERVAL", "often"),
            ("PLACE_CALL_FALLBACK", "retry"),
        ] {
            let err = Config::from_env(&[(key, value)]).unwrap_err();
            assert_eq!(err.key, key);
        }
    }

    #[test]
    fn repairs_must_wait_longer_than_a_payment_call_can_take() {
        let err = Config::from_env(&[("PAYMENT_DEADLINE", "5s"), ("CALL_REPAIR_AFTER", "5s")]).unwrap_err();
        assert_eq!(err.key, "CALL_REPAIR_AFTER");
    }
}
