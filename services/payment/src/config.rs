//! Settings of the payment service.

use baemin_kernel::CommissionRate;
use baemin_mesh_runtime::ServiceConfig;
use baemin_mesh_server::config::{ConfigError, Env, Settings};

/// The payment service's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Port, database, NATS.
    pub service: ServiceConfig,
    /// `PAYMENT_COMMISSION_BPS`: the company's cut of each fee (default 1,000 bps = 10 %).
    pub commission: CommissionRate,
}

impl Config {
    /// Default gRPC port (DESIGN.md, "Runtime contract").
    pub const DEFAULT_PORT: u16 = 8083;

    /// Reads the configuration from `env`.
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let s = Settings::new(env);
        let bps = s.parse("PAYMENT_COMMISSION_BPS", CommissionRate::DEFAULT.bps())?;
        let commission = CommissionRate::from_bps(bps)
            .ok_or_else(|| ConfigError::new("PAYMENT_COMMISSION_BPS", &bps.to_string(), "must be 0..=10000"))?;
        Ok(Self {
            service: ServiceConfig::from_settings("payment", Self::DEFAULT_PORT, &s)?,
            commission,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commission_above_one_hundred_percent_stops_start_up() {
        let err = Config::from_env(&[("PAYMENT_COMMISSION_BPS", "10001")]).unwrap_err();
        assert_eq!(err.key, "PAYMENT_COMMISSION_BPS");
    }

    #[test]
    fn commission_defaults_to_ten_percent() {
        let env: [(&str, &str); 0] = [];
        assert_eq!(Config::from_env(&env).unwrap().commission.bps(), 1_000);
    }
}
