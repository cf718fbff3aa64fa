//! A Kubernetes Service on one machine: one address in front of a service's replicas, handing each TCP
//! connection to the next replica whose gRPC health says SERVING — what kube-proxy does for a ClusterIP
//! Service whose endpoints follow the pods' readiness. `baemin up --replicas N` puts one in front of each
//! service, on the port DESIGN.md gives it, so clients, the gateway and the services' own clients of
//! payment reach "the service" as they would in a cluster.
//!
//! A replica that drains (SIGTERM: health NOT_SERVING, then `SHUTDOWN_DELAY` in which it still serves)
//! gets no new connection once a probe saw it; connections it has stay open until it closes them (HTTP/2
//! GOAWAY after its in-flight calls), and the client's next connection goes to another replica. Like
//! kube-proxy it balances connections, not calls: one HTTP/2 connection stays on one replica.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How often each replica's health is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(200);

/// How long a connection to a replica may take before the next one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// One address in front of a service's replicas. Stops (and drops every connection it carries) when
/// dropped.
pub struct Balancer {
    addr: SocketAddr,
    replicas: Arc<[Replica]>,
    stop: CancellationToken,
}

struct Replica {
    addr: SocketAddr,
    /// SERVING at the last probe.
    ready: AtomicBool,
}

impl Balancer {
    /// Listens on `listen` (port 0 for any) in front of `replicas`, probing them every [`PROBE_INTERVAL`].
    /// No replica is ready before its first probe says SERVING.
    pub async fn bind(listen: SocketAddr, replicas: &[SocketAddr]) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let replicas: Arc<[Replica]> = replicas
            .iter()
            .map(|&addr| Replica {
                addr,
                ready: AtomicBool::new(false),
            })
            .collect();
        let stop = CancellationToken::new();
        tokio::spawn(probe(replicas.clone(), stop.clone()));
        tokio::spawn(accept(listener, replicas.clone(), stop.clone()));
        Ok(Self { addr, replicas, stop })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Whether the last probe of `replica` said SERVING (false for an address it does not front).
    pub fn is_ready(&self, replica: SocketAddr) -> bool {
        self.replicas
            .iter()
            .any(|r| r.addr == replica && r.ready.load(Ordering::Relaxed))
    }

    /// Waits until the balancer sends new connections to `replica` again, or `patience` runs out.
    pub async fn until_ready(&self, replica: SocketAddr, patience: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + patience;
        while !self.is_ready(replica) {
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(PROBE_INTERVAL / 4).await;
        }
        true
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Marks each replica ready or not by its gRPC health, every [`PROBE_INTERVAL`], all at once.
async fn probe(replicas: Arc<[Replica]>, stop: CancellationToken) {
    loop {
        let probes = replicas.iter().map(|r| async move {
            let serving = baemin_mesh_server::probe::is_serving(&format!("http://{}", r.addr)).await;
            if r.ready.swap(serving, Ordering::Relaxed) != serving {
                tracing::info!(replica = %r.addr, serving, "replica readiness changed");
            }
        });
        tokio::select! {
            () = stop.cancelled() => return,
            _ = futures::future::join_all(probes) => {}
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PROBE_INTERVAL) => {}
        }
    }
}

async fn accept(listener: TcpListener, replicas: Arc<[Replica]>, stop: CancellationToken) {
    let next = Arc::new(AtomicUsize::new(0));
    loop {
        let client = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => client,
                Err(err) => {
                    // Out of descriptors or similar: back off instead of spinning.
                    tracing::warn!(%err, "balancer cannot accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let replicas = replicas.clone();
        let start = next.fetch_add(1, Ordering::Relaxed);
        let stop = stop.clone();
        tokio::spawn(async move {
            let Some(mut upstream) = connect(&replicas, start).await else {
                // Nothing to hand it to: closed, as a Service without ready endpoints refuses.
                return;
            };
            let mut client = client;
            let _ = client.set_nodelay(true);
            tokio::select! {
                () = stop.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
            }
        });
    }
}

/// A connection to a ready replica, round-robin from `start`; a replica that refuses is marked not ready
/// until its next probe. When no probe has said SERVING yet (all starting), any replica that accepts.
async fn connect(replicas: &[Replica], start: usize) -> Option<TcpStream> {
    let n = replicas.len();
    let order = (0..n).map(|i| &replicas[(start + i) % n]);
    let ready: Vec<&Replica> = order.clone().filter(|r| r.ready.load(Ordering::Relaxed)).collect();
    let candidates = if ready.is_empty() { order.collect() } else { ready };
    for replica in candidates {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(replica.addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Some(stream);
            }
            _ => replica.ready.store(false, Ordering::Relaxed),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP server that answers every connection with `tag` and closes it.
    async fn tagged(tag: &'static str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                use tokio::io::AsyncWriteExt;
                let _ = s.write_all(tag.as_bytes()).await;
            }
        });
        (addr, task)
    }

    async fn read_tag(addr: SocketAddr) -> String {
        use tokio::io::AsyncReadExt;
        let mut s = TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("{e}"));
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        out
    }

    #[tokio::test]
    async fn before_any_probe_succeeds_connections_go_round_robin_to_whichever_replica_accepts() {
        // Plain TCP servers never answer a health check: no replica is ever ready.
        let (a, _ta) = tagged("a").await;
        let (b, tb) = tagged("b").await;
        let balancer = Balancer::bind(([127, 0, 0, 1], 0).into(), &[a, b])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(read_tag(balancer.addr()).await);
        }
        seen.sort();
        assert_eq!(seen, ["a", "a", "b", "b"]);
        // b goes away: every connection reaches a.
        tb.abort();
        let _ = tb.await;
        for _ in 0..4 {
            assert_eq!(read_tag(balancer.addr()).await, "a");
        }
        assert!(
            !balancer.is_ready(a),
            "a TCP server that speaks no gRPC is never SERVING"
        );
    }
}
