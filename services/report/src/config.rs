//! Settings of the report service.

use baemin_mesh_runtime::ServiceConfig;
use baemin_mesh_server::config::{ConfigError, Env, Settings};

/// The report service's configuration: only what every service has.
#[derive(Debug, Clone)]
pub struct Config {
    /// Port, database, NATS.
    pub service: ServiceConfig,
}

impl Config {
    /// Default gRPC port (DESIGN.md, "Runtime contract").
    pub const DEFAULT_PORT: u16 = 8084;

    /// Reads the configuration from `env`.
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let s = Settings::new(env);
        Ok(Self {
            service: ServiceConfig::from_settings("report", Self::DEFAULT_PORT, &s)?,
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
        assert_eq!(config.service.listen_addr.port(), 8084);
        assert_eq!(config.service.database_url, "sqlite://data/report.db?mode=rwc");
    }

    #[test]
    fn a_bad_setting_stops_start_up_naming_it() {
        let err = Config::from_env(&[("DATABASE_URL", "mysql://x/y")]).unwrap_err();
        assert_eq!(err.key, "DATABASE_URL");
    }
}
