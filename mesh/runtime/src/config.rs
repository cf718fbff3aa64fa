//! The settings every service has: where it listens, its database, NATS.

use std::{net::SocketAddr, time::Duration};

use baemin_mesh_events::StreamSettings;
use baemin_mesh_server::{
    config::{ConfigError, Settings},
    identity::IdentityKey,
};

/// Settings common to every service, from the environment.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Short service name (`call`, `rider`, ...): logs, NATS connection and durable consumer names.
    pub name: &'static str,
    /// `GRPC_ADDR`: where the gRPC server listens (default `0.0.0.0:<the service's port>`).
    pub listen_addr: SocketAddr,
    /// `ADMIN_ADDR`: the admin HTTP port, `/metrics`, `/livez`, `/readyz` (default: gRPC port + 1000).
    pub admin_addr: SocketAddr,
    /// `DATABASE_URL` or the file `DATABASE_URL_FILE` names (it may hold a password): `sqlite://PATH?mode=rwc`
    /// (default `sqlite://data/<name>.db?mode=rwc`) or `postgres://...`.
    pub database_url: String,
    /// `DATABASE_POOL_SIZE`: connections to PostgreSQL (SQLite always uses one).
    pub database_pool_size: u32,
    /// `NATS_URL` (default `nats://127.0.0.1:4222`).
    pub nats_url: String,
    /// `NATS_STREAM_REPLICAS`, `NATS_DUPLICATE_WINDOW`: how the events stream is kept.
    pub stream: StreamSettings,
    /// `SHUTDOWN_GRACE`: longest wait for each stage of shutdown (RPCs, consumers and workers, outbox).
    pub shutdown_grace: Duration,
    /// `SHUTDOWN_DELAY` (default 0): after SIGTERM, how long new calls are still accepted while health
    /// says NOT_SERVING, so load balancers stop sending before the port closes (Kubernetes: a few seconds).
    pub shutdown_delay: Duration,
    /// `STARTUP_TIMEOUT`: how long start-up waits for the database and NATS to become reachable.
    pub startup_timeout: Duration,
    /// `EVENT_MAX_ATTEMPTS`: failures of an event's handler (counted in the database, not deliveries) before it is
    /// dead-lettered (an unavailable database is retried however long it lasts; default 5).
    pub event_max_attempts: u32,
    /// `EVENT_ACK_WAIT`: how long events taken by an instance that died wait before being delivered
    /// again (default 10 s, at least 1 s).
    pub event_ack_wait: Duration,
    /// `EVENT_LANES`: events of different calls each consumer applies at once (default 8 on
    /// PostgreSQL, 32 on SQLite, 1..=64);
    /// one call's events always go one after another.
    pub event_lanes: usize,
    /// `MAX_MESSAGE_BYTES`: largest request message accepted (default 64 KiB); larger is RESOURCE_EXHAUSTED.
    pub max_message_bytes: usize,
    /// `REQUEST_READ_TIMEOUT`: longest wait for a request's first message (default 10 s); slower is
    /// DEADLINE_EXCEEDED.
    pub request_read_timeout: Duration,
    /// `BAEMIN_REQUIRE_IDENTITY`: refuse calls without caller identity (UNAUTHENTICATED) instead of
    /// trusting them as internal backends (default false).
    pub require_identity: bool,
    /// `BAEMIN_IDENTITY_KEY` (≥ 32 bytes): verifies the identity the gateway forwards, and signs this
    /// service's own calls to others. Without it, calls carrying identity are UNAUTHENTICATED.
    pub identity_key: Option<IdentityKey>,
    /// How long published outbox rows and applied inbox rows are kept (`OUTBOX_RETENTION`,
    /// `INBOX_RETENTION`; see `baemin_mesh_events::retention`).
    pub retention: baemin_mesh_events::retention::Retention,
}

impl ServiceConfig {
    /// Reads the common settings of service `name` whose default gRPC port is `default_port`.
    pub fn from_settings(name: &'static str, default_port: u16, s: &Settings<'_>) -> Result<Self, ConfigError> {
        let listen_addr = s.parse("GRPC_ADDR", SocketAddr::from(([0, 0, 0, 0], default_port)))?;
        let database_url = s.secret_url(
            "DATABASE_URL",
            &format!("sqlite://data/{name}.db?mode=rwc"),
            &["sqlite", "postgres", "postgresql"],
        )?;
        let database_pool_size = s.parse("DATABASE_POOL_SIZE", 10u32)?;
        if database_pool_size == 0 {
            return Err(ConfigError::new("DATABASE_POOL_SIZE", "0", "must be at least 1"));
        }
        let nats_url = s.url("NATS_URL", "nats://127.0.0.1:4222", &["nats", "tls"])?;
        // One server, or the comma-separated list of a cluster's members.
        baemin_mesh_events::server_addrs(&nats_url)
            .map_err(|reason| ConfigError::new("NATS_URL", &nats_url, reason))?;
        let replicas = s.parse("NATS_STREAM_REPLICAS", 1usize)?;
        if !(1..=5).contains(&replicas) {
            return Err(ConfigError::new(
                "NATS_STREAM_REPLICAS",
                &replicas.to_string(),
                "must be 1..=5",
            ));
        }
        let duplicate_window = s.duration("NATS_DUPLICATE_WINDOW", Duration::from_secs(120))?;
        if duplicate_window < Duration::from_secs(120) {
            return Err(ConfigError::new(
                "NATS_DUPLICATE_WINDOW",
                &format!("{duplicate_window:?}"),
                "must be at least 2 minutes",
            ));
        }
        let event_max_attempts = s.parse("EVENT_MAX_ATTEMPTS", baemin_mesh_events::DEFAULT_MAX_ATTEMPTS)?;
        if event_max_attempts == 0 {
            return Err(ConfigError::new("EVENT_MAX_ATTEMPTS", "0", "must be at least 1"));
        }
        let event_ack_wait = s.duration("EVENT_ACK_WAIT", Duration::from_secs(10))?;
        if event_ack_wait < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "EVENT_ACK_WAIT",
                &format!("{event_ack_wait:?}"),
                "must be at least 1s",
            ));
        }
        let default_lanes = match baemin_mesh_store::Backend::of(&database_url) {
            Some(baemin_mesh_store::Backend::Sqlite) => baemin_mesh_events::SQLITE_LANES,
            _ => baemin_mesh_events::LANES,
        };
        let event_lanes = s.parse("EVENT_LANES", default_lanes)?;
        if !(1..=64).contains(&event_lanes) {
            return Err(ConfigError::new(
                "EVENT_LANES",
                &event_lanes.to_string(),
                "must be 1..=64",
            ));
        }
        let retention = baemin_mesh_events::retention::Retention {
            outbox: s.duration("OUTBOX_RETENTION", Duration::from_secs(3_600))?,
            inbox: s.duration("INBOX_RETENTION", Duration::from_secs(7 * 86_400))?,
            ack_wait: event_ack_wait,
        };
        if retention.inbox < Duration::from_secs(3_600) {
            return Err(ConfigError::new(
                "INBOX_RETENTION",
                &format!("{:?}", retention.inbox),
                "must be at least 1h (a redelivered event must still find its inbox row)",
            ));
        }
        Ok(Self {
            name,
            listen_addr,
            admin_addr: s.admin_addr(listen_addr)?,
            database_url,
            database_pool_size,
            nats_url,
            stream: StreamSettings {
                replicas,
                duplicate_window,
                ..StreamSettings::default()
            },
            shutdown_grace: s.duration("SHUTDOWN_GRACE", Duration::from_secs(20))?,
            shutdown_delay: s.duration("SHUTDOWN_DELAY", Duration::ZERO)?,
            startup_timeout: s.duration("STARTUP_TIMEOUT", Duration::from_secs(60))?,
            event_max_attempts,
            event_ack_wait,
            event_lanes,
            max_message_bytes: max_message_bytes(s)?,
            request_read_timeout: s.request_read_timeout()?,
            require_identity: s.parse("BAEMIN_REQUIRE_IDENTITY", false)?,
            identity_key: IdentityKey::from_settings(s)?,
            retention,
        })
    }
}

/// `MAX_MESSAGE_BYTES`, at least 1 KiB (smaller would refuse ordinary requests), at most 4 MiB.
pub fn max_message_bytes(s: &Settings<'_>) -> Result<usize, ConfigError> {
    let max = s.parse("MAX_MESSAGE_BYTES", baemin_mesh_server::DEFAULT_MAX_MESSAGE_BYTES)?;
    if !(1024..=4 * 1024 * 1024).contains(&max) {
        return Err(ConfigError::new(
            "MAX_MESSAGE_BYTES",
            &max.to_string(),
            "must be 1024..=4194304",
        ));
    }
    Ok(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_runtime_contract() {
        let env: [(&str, &str); 0] = [];
        let c = ServiceConfig::from_settings("call", 8081, &Settings::new(&env)).unwrap();
        assert_eq!(c.listen_addr.port(), 8081);
        assert_eq!(c.admin_addr.port(), 9081);
        assert_eq!(c.database_url, "sqlite://data/call.db?mode=rwc");
        assert_eq!(c.nats_url, "nats://127.0.0.1:4222");
        let env = [("NATS_URL", "nats://a:4222,nats://b:4222,nats://c:4222")];
        let cluster = ServiceConfig::from_settings("call", 8081, &Settings::new(&env)).unwrap();
        assert_eq!(
            cluster.nats_url, "nats://a:4222,nats://b:4222,nats://c:4222",
            "a cluster's members"
        );
    }

    #[test]
    fn a_bad_setting_stops_start_up_naming_it() {
        for (key, value) in [
            ("GRPC_ADDR", "everywhere"),
            ("DATABASE_URL", "mysql://x/y"),
            ("NATS_URL", "127.0.0.1:4222"),
            ("NATS_URL", "nats://a:4222,b:4222"),
            ("NATS_URL", "nats://a:4222,nats://b:port"),
            ("NATS_DUPLICATE_WINDOW", "10s"),
            ("DATABASE_POOL_SIZE", "0"),
            ("BAEMIN_REQUIRE_IDENTITY", "yes please"),
            ("EVENT_MAX_ATTEMPTS", "0"),
            ("EVENT_MAX_ATTEMPTS", "-1"),
            ("EVENT_ACK_WAIT", "200ms"),
            ("EVENT_LANES", "0"),
            ("EVENT_LANES", "1000"),
            ("MAX_MESSAGE_BYTES", "10"),
            ("REQUEST_READ_TIMEOUT", "100ms"),
            ("BAEMIN_IDENTITY_KEY", "short"),
        ] {
            let env = [(key, value)];
            let err = ServiceConfig::from_settings("call", 8081, &Settings::new(&env)).unwrap_err();
            assert_eq!(err.key, key);
        }
    }

    #[test]
    fn the_database_url_may_come_from_a_file_and_is_never_shown_with_its_password() {
        let path = std::env::temp_dir().join(format!("baemin-runtime-{}-database-url", std::process::id()));
        std::fs::write(&path, "postgres://call:hunter2@db:5432/baemin_call\n").unwrap();
        let env = [("DATABASE_URL_FILE", path.to_str().unwrap())];
        let c = ServiceConfig::from_settings("call", 8081, &Settings::new(&env));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(c.unwrap().database_url, "postgres://call:hunter2@db:5432/baemin_call");

        let env = [("DATABASE_URL", "mysql://call:hunter2@db/baemin_call")];
        let err = ServiceConfig::from_settings("call", 8081, &Settings::new(&env)).unwrap_err();
        assert_eq!(err.key, "DATABASE_URL");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
