//! The reference: a raw tonic unary echo, served by a process of its own with the mesh's transport
//! settings (HTTP/2 defaults, Nagle off on accepted sockets) and nothing else — no layers, database or
//! events — and called over one connection like the mesh's scenarios.

use std::{
    net::SocketAddr,
    path::Path,
    process::{ExitCode, Stdio},
};

use anyhow::Context;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};
use tonic::{Request, Response, Status, transport::Server};

pub mod pb {
    tonic::include_proto!("baemin.bench.v1");
}

use pb::{
    EchoMessage,
    echo_client::EchoClient,
    echo_server::{Echo, EchoServer},
};

/// The payload size of an echo call: about a PlaceCall request's.
pub const PAYLOAD_BYTES: usize = 96;

struct Echoer;

#[tonic::async_trait]
impl Echo for Echoer {
    async fn echo(&self, request: Request<EchoMessage>) -> Result<Response<EchoMessage>, Status> {
        Ok(Response::new(request.into_inner()))
    }
}

/// `baemin-bench echo`: serves until SIGTERM or Ctrl-C, printing `listening <addr>` first.
pub async fn serve_until_signal(addr: &str) -> ExitCode {
    match serve(addr).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("echo server: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(addr: &str) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    println!("listening {}", listener.local_addr()?);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    Server::builder()
        .add_service(EchoServer::new(Echoer))
        .serve_with_incoming_shutdown(incoming, baemin_mesh_server::wait_for_signal())
        .await?;
    Ok(())
}

/// The echo server as a child process of the harness.
pub struct EchoProcess {
    child: Child,
    addr: SocketAddr,
}

impl EchoProcess {
    /// Starts `exe echo` and waits for its address.
    pub async fn start(exe: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(exe)
            .args(["echo", "--addr", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting the echo server")?;
        let stdout = child.stdout.take().context("the echo server's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(std::time::Duration::from_secs(10), lines.next_line())
            .await
            .context("the echo server did not start within 10 s")??
            .context("the echo server exited before listening")?;
        let addr = line
            .strip_prefix("listening ")
            .context("unexpected first line from the echo server")?
            .parse()?;
        Ok(Self { child, addr })
    }

    /// A client over one (lazily opened) connection.
    pub fn client(&self) -> anyhow::Result<EchoClient<tonic::transport::Channel>> {
        Ok(EchoClient::new(baemin::clients::channel(&format!(
            "http://{}",
            self.addr
        ))?))
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Stops it.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            baemin_mesh_server::probe::terminate(pid);
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.child.wait()).await;
    }
}

/// One echo call's request.
pub fn message() -> EchoMessage {
    EchoMessage {
        payload: vec![b'x'; PAYLOAD_BYTES],
    }
}
