//! Services as their own OS processes (`baemin serve <name>`), so a test can really kill one: SIGKILL
//! for a crash, SIGTERM for the graceful drain an orchestrator asks for.

use std::{
    net::SocketAddr,
    path::Path,
    process::{ExitStatus, Stdio},
    time::{Duration, Instant},
};

use tokio::process::{Child, Command};

/// How long a process gets to report SERVING, and to exit after SIGTERM.
const PATIENCE: Duration = Duration::from_secs(30);

/// One service running as a child process; SIGKILLed if dropped while running.
pub struct ServiceProcess {
    name: String,
    addr: SocketAddr,
    child: Child,
}

impl ServiceProcess {
    /// Runs `program args…` with `env` (plus `GRPC_ADDR=addr`) and waits until its health service reports
    /// SERVING on `addr`. Panics, with the exit status, if the process dies first.
    pub async fn start(program: &Path, args: &[&str], env: &[(&str, String)], addr: SocketAddr) -> Self {
        let name = args.join(" ");
        let child = Command::new(program)
            .args(args)
            // A free admin port unless the test names one (gRPC port + 1000 may be taken).
            .env("ADMIN_ADDR", "127.0.0.1:0")
            .env("BAEMIN_IDENTITY_KEY", crate::TEST_IDENTITY_KEY)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("GRPC_ADDR", addr.to_string())
            .env(
                "RUST_LOG",
                std::env::var("TEST_SERVICE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env("LOG_COLOR", "never")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: cannot spawn {name}: {e}", program.display()));
        let mut process = Self { name, addr, child };
        process.wait_serving().await;
        process
    }

    /// `http://127.0.0.1:<port>` of the service.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// SIGKILL: the process dies at once, whatever it was doing (a crash, an OOM kill).
    pub async fn kill(mut self) {
        self.child
            .kill()
            .await
            .unwrap_or_else(|e| panic!("{}: SIGKILL: {e}", self.name));
    }

    /// SIGTERM, then waits for the graceful drain; panics unless the process exits with success.
    pub async fn stop(mut self) {
        let Some(pid) = self.child.id() else {
            panic!("{}: exited before it was stopped", self.name);
        };
        baemin_mesh_server::probe::terminate(pid);
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{}: still running {PATIENCE:?} after SIGTERM", self.name))
            .unwrap_or_else(|e| panic!("{}: wait: {e}", self.name));
        assert!(status.success(), "{}: stopped with {status} after SIGTERM", self.name);
    }

    async fn wait_serving(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        let url = self.url();
        loop {
            if let Some(status) = self.exited() {
                panic!("{}: exited with {status} before serving", self.name);
            }
            if baemin_mesh_server::probe::is_serving(&url).await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: not SERVING after {PATIENCE:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}
