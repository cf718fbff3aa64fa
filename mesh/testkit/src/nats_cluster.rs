//! A JetStream cluster of `nats-server` processes on loopback, as production runs NATS (three nodes, R3
//! streams): each node on its own client and route ports with its own temporary store, killed and
//! removed on drop.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tempfile::TempDir;

/// A running cluster of `nats-server` nodes.
pub struct NatsCluster {
    nodes: Vec<Node>,
    /// The nodes' configuration files and stores, removed on drop.
    _dir: TempDir,
}

struct Node {
    child: Option<Child>,
    client_port: u16,
}

impl NatsCluster {
    /// Starts `size` nodes routed to each other and waits until each accepts connections (JetStream may
    /// still be electing its leader: retry what needs it).
    pub async fn start(size: usize) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let ports: Vec<(u16, u16)> = (0..size).map(|_| (crate::free_port(), crate::free_port())).collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, route)| format!("nats-route://127.0.0.1:{route}"))
            .collect();
        let bin = baemin_mesh_events::nats_server_binary()
            .unwrap_or_else(|| panic!("nats-server not found: install it (see README) or set NATS_SERVER_BIN"));
        let mut nodes = Vec::with_capacity(size);
        for (i, (client, route)) in ports.iter().enumerate() {
            let store = dir.path().join(format!("n{i}"));
            let config = dir.path().join(format!("n{i}.conf"));
            let text = format!(
                "server_name: n{i}\nlisten: 127.0.0.1:{client}\njetstream {{ store_dir: {store:?} }}\n\
                 cluster {{ name: baemin-test, listen: 127.0.0.1:{route}, routes: [{}] }}\n",
                routes.join(", ")
            );
            std::fs::write(&config, text).unwrap_or_else(|e| panic!("writing {}: {e}", config.display()));
            let child = Command::new(&bin)
                .arg("-c")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
            nodes.push(Node {
                child: Some(child),
                client_port: *client,
            });
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &nodes {
            while tokio::net::TcpStream::connect(("127.0.0.1", node.client_port))
                .await
                .is_err()
            {
                assert!(Instant::now() < deadline, "a cluster node did not listen within 20 s");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Self { nodes, _dir: dir }
    }

    /// Every node's `nats://127.0.0.1:<port>`, comma-separated, as `NATS_URL` names a cluster.
    pub fn urls(&self) -> String {
        (0..self.nodes.len()).map(|i| self.url(i)).collect::<Vec<_>>().join(",")
    }

    /// Node `i`'s URL.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].client_port)
    }

    /// SIGKILLs node `i`: a crash, its store left as it was.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
