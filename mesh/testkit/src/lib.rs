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

/// A free TCP port on 127.0.0.1 (bound, then released: a process binds it a moment later).
///
/// Below the kernel's ephemeral range (32768 and up on Linux): a port picked for a service that starts
/// seconds later — or comes back on the same address after a restart — would otherwise be handed out
/// meanwhile by the kernel to another test's `bind(":0")` or outgoing connection ("Address already in
/// use" when the whole suite runs). Ports here are only ever taken on purpose.
/// A port is handed out once per test process, so two picks made before either is bound never clash.
pub fn free_port() -> u16 {
    use std::hash::BuildHasher;
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let seed = std::collections::hash_map::RandomState::new();
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let port = (0..1_000_u64)
        .map(|attempt| 10_000 + (seed.hash_one(attempt) % 22_000) as u16)
        .find(|port| !handed_out.contains(port) && std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .unwrap_or_else(|| panic!("no free port between 10000 and 32000 on 127.0.0.1"));
    handed_out.push(port);
    port
}
