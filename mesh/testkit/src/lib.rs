//! Test harness shared by the integration tests: a real `nats-server` with JetStream on a free port,
//! fresh databases (SQLite files or PostgreSQL databases) that are removed afterwards, and services
//! started in-process on port 0 or as their own OS processes (to be SIGKILLed).

pub mod alloc;
mod db;
pub mod events;
pub mod identity;
mod nats;
mod nats_cluster;
mod otlp;
mod process;
mod proxy;
mod service;
pub mod tls;

pub use db::{DbKind, TestDatabases, postgres_admin_url, with_database};
pub use identity::{TEST_IDENTITY_KEY, as_caller};
pub use nats::NatsServer;
pub use nats_cluster::NatsCluster;
pub use otlp::{CollectedSpan, OtlpCollector};
pub use process::ServiceProcess;
pub use proxy::SlowProxy;
pub use service::RunningService;

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|err| panic!("no free port: {err}"))
}
