//! Services started in-process on 127.0.0.1 port 0, stopped through their graceful-shutdown path.

use std::{collections::HashMap, net::SocketAddr};

use baemin_mesh_runtime::{Service, StartupError};
use baemin_mesh_server::Shutdown;
use tokio::task::JoinHandle;

/// One service running in the test's process.
pub struct RunningService {
    addr: SocketAddr,
    admin_addr: SocketAddr,
    shutdown: Shutdown,
    task: JoinHandle<Result<(), StartupError>>,
}

impl RunningService {
    /// Starts service `S` with the settings in `env` (GRPC_ADDR defaults to 127.0.0.1:0).
    pub async fn start<S: Service>(env: &[(&str, String)]) -> Self {
        let mut vars: HashMap<String, String> = env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
        vars.entry("GRPC_ADDR".into()).or_insert_with(|| "127.0.0.1:0".into());
        vars.entry("ADMIN_ADDR".into()).or_insert_with(|| "127.0.0.1:0".into());
        vars.entry("BAEMIN_IDENTITY_KEY".into())
            .or_insert_with(|| crate::TEST_IDENTITY_KEY.into());
        let config = S::config(&vars).unwrap_or_else(|e| panic!("{} config: {e}", S::NAME));
        let service = S::build(config)
            .await
            .unwrap_or_else(|e| panic!("{} start: {e}: {:?}", S::NAME, std::error::Error::source(&e)));
        let addr = service.local_addr();
        let admin_addr = service.admin_addr();
        let shutdown = Shutdown::new();
        let task = tokio::spawn(service.run(shutdown.clone()));
        Self {
            addr,
            admin_addr,
            shutdown,
            task,
        }
    }

    /// `http://127.0.0.1:<port>` of the service.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<admin port>`: `/metrics`, `/livez`, `/readyz`.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr)
    }

    /// Starts the graceful shutdown (as SIGTERM would) without waiting for it; [`Self::stop`] waits.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Stops the service gracefully and waits until it has.
    pub async fn stop(self) {
        self.shutdown.cancel();
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => panic!("service stopped with an error: {err}"),
            Err(err) => panic!("service task failed: {err}"),
        }
    }
}
