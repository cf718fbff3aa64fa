//! What every service looks like from outside: configured from the environment, built (bound and
//! connected), then run until shutdown. The `baemin` launcher, the per-service binaries and the tests
//! all drive services through this one trait.

use std::{future::Future, net::SocketAddr, process::ExitCode};

use baemin_mesh_server::{
    Shutdown,
    config::{ConfigError, Env, ProcessEnv},
    wait_for_signal,
};
use baemin_mesh_telemetry::TelemetrySettings;

use crate::StartupError;

/// A service of the mesh.
pub trait Service: Sized + Send + 'static {
    /// Short name: `call`, `rider`, `payment`, `report`.
    const NAME: &'static str;
    /// Its typed configuration.
    type Config: Send;

    /// Parses the configuration; a bad setting is an error naming it.
    fn config(env: &dyn Env) -> Result<Self::Config, ConfigError>;

    /// Binds the port, opens the database, connects to NATS; serves nothing yet.
    fn build(config: Self::Config) -> impl Future<Output = Result<Self, StartupError>> + Send;

    /// The bound gRPC address.
    fn local_addr(&self) -> SocketAddr;

    /// The bound admin address (`/metrics`, `/livez`, `/readyz`).
    fn admin_addr(&self) -> SocketAddr;

    /// Serves until `shutdown`, then drains and stops in order.
    fn run(self, shutdown: Shutdown) -> impl Future<Output = Result<(), StartupError>> + Send;
}

/// Runs service `S` configured from the process environment until SIGTERM or Ctrl-C: what a container
/// (and `baemin serve`) runs. Exit code 2 for bad configuration, 1 for a failure.
pub async fn serve_until_signal<S: Service>() -> ExitCode {
    let telemetry = match TelemetrySettings::from_lookup(|key| std::env::var(key).ok()) {
        Ok(settings) => baemin_mesh_telemetry::init(S::NAME, env!("CARGO_PKG_VERSION"), &settings),
        Err(err) => {
            eprintln!("{}: {err}", S::NAME);
            return ExitCode::from(2);
        }
    };
    let code = serve::<S>().await;
    telemetry.shutdown().await;
    code
}

async fn serve<S: Service>() -> ExitCode {
    let config = match S::config(&ProcessEnv) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{}: {err}", S::NAME);
            return ExitCode::from(2);
        }
    };
    let shutdown = Shutdown::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            wait_for_signal().await;
            shutdown.cancel();
        }
    });
    let result = async { S::build(config).await?.run(shutdown).await }.await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let mut chain = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                chain.push_str(": ");
                chain.push_str(&cause.to_string());
                source = cause.source();
            }
            tracing::error!(service = S::NAME, error = %chain, "stopped on an error");
            eprintln!("{}: {chain}", S::NAME);
            ExitCode::FAILURE
        }
    }
}
