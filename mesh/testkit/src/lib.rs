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

pub use db::{DbKind, Run, Statements, TestDatabases, postgres_admin_url, record_statements, with_database};
pub use identity::{TEST_IDENTITY_KEY, as_caller};
pub use nats::NatsServer;
pub use nats_cluster::NatsCluster;
pub use otlp::{CollectedSpan, OtlpCollector};
pub use process::ServiceProcess;
pub use proxy::SlowProxy;
pub use service::RunningService;

/// A free TCP port on 127.0.0.1 (checked, then released: a process binds it a moment later), below the
/// kernel's ephemeral range (see `baemin_mesh_server::ports`), in the tests' own range 10000..18000. A port
/// is handed out once per test process, so two picks of one test never clash; tests in other processes
/// pick at random from the same range and see the ports already bound.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..100 {
        let port = baemin_mesh_server::ports::free_port_in(10_000..18_000).unwrap_or_else(|e| panic!("{e}"));
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
    panic!("no free port left in 10000..18000 for this test process")
}
