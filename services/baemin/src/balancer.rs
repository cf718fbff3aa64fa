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
        atomic::{AtomicU8, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

/// How often each replica's health is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(200);

/// How long a probe may take (connecting included) before the replica counts as not ready.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// How long a draining replica must go on serving after its health went NOT_SERVING for the balancer to
/// have stopped sending it connections: the longest a probe can take to notice, and a margin. Replicas
/// behind a balancer get it as `SHUTDOWN_DELAY` (a pod's is the endpoints' propagation time).
pub const DRAIN_NOTICE: Duration = Duration::from_millis(1_000);

/// How long a connection to a replica may take before the next one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// One address in front of a service's replicas. Stops (and drops every connection it carries) when
/// dropped.
pub struct Balancer {
    addr: SocketAddr,
    replicas: Arc<[Replica]>,
    stop: CancellationToken,
}

/// What the probes last said of a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Readiness {
    /// Not probed yet.
    Unknown = 0,
    /// SERVING.
    Ready = 1,
    /// Anything else: NOT_SERVING (draining, starting), no answer, refused.
    NotReady = 2,
}

struct Replica {
    addr: SocketAddr,
    readiness: AtomicU8,
}

impl Replica {
    fn readiness(&self) -> Readiness {
        match self.readiness.load(Ordering::Relaxed) {
            1 => Readiness::Ready,
            2 => Readiness::NotReady,
            _ => Readiness::Unknown,
        }
    }

    fn set(&self, readiness: Readiness) {
        let before = self.readiness.swap(readiness as u8, Ordering::Relaxed);
        if before != readiness as u8 {
            tracing::info!(replica = %self.addr, ?readiness, "replica readiness changed");
        }
    }
}

impl Balancer {
    /// Listens on `listen` (port 0 for any) in front of `replicas`, probing each every [`PROBE_INTERVAL`].
    pub async fn bind(listen: SocketAddr, replicas: &[SocketAddr]) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let replicas: Arc<[Replica]> = replicas
            .iter()
            .map(|&addr| Replica {
                addr,
                readiness: AtomicU8::new(Readiness::Unknown as u8),
            })
            .collect();
        let stop = CancellationToken::new();
        for i in 0..replicas.len() {
            tokio::spawn(probe(replicas.clone(), i, stop.clone()));
        }
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
            .any(|r| r.addr == replica && r.readiness() == Readiness::Ready)
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

/// Probes replica `i`'s gRPC health every [`PROBE_INTERVAL`] over one lazily (re)connected channel, each
/// probe within [`PROBE_TIMEOUT`]; one task per replica, so a slow replica delays no other's verdict.
async fn probe(replicas: Arc<[Replica]>, i: usize, stop: CancellationToken) {
    let replica = &replicas[i];
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(format!("http://{}", replica.addr)) else {
        replica.set(Readiness::NotReady);
        return;
    };
    let mut health = HealthClient::new(
        endpoint
            .connect_timeout(PROBE_TIMEOUT)
            .timeout(PROBE_TIMEOUT)
            .connect_lazy(),
    );
    loop {
        let check = health.check(HealthCheckRequest { service: String::new() });
        let serving = tokio::select! {
            () = stop.cancelled() => return,
            answer = tokio::time::timeout(PROBE_TIMEOUT, check) => {
                matches!(answer, Ok(Ok(r)) if r.get_ref().status() == ServingStatus::Serving)
            }
        };
        replica.set(if serving { Readiness::Ready } else { Readiness::NotReady });
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
        let turn = next.fetch_add(1, Ordering::Relaxed);
        let stop = stop.clone();
        tokio::spawn(async move {
            let Some(mut upstream) = connect(&replicas, turn).await else {
                // No replica to hand it to: closed, as a Service without ready endpoints refuses.
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

/// A connection for the `turn`-th client: to the ready replicas in turn (or, before the first probes
/// have answered, to those not yet probed); a replica that refuses is marked not ready until its next
/// probe and the next one is tried. None when no replica is ready.
async fn connect(replicas: &[Replica], turn: usize) -> Option<TcpStream> {
    let ready: Vec<&Replica> = replicas.iter().filter(|r| r.readiness() == Readiness::Ready).collect();
    let candidates = if ready.is_empty() {
        replicas
            .iter()
            .filter(|r| r.readiness() == Readiness::Unknown)
            .collect()
    } else {
        ready
    };
    let n = candidates.len();
    for k in 0..n {
        let replica = candidates[(turn + k) % n];
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(replica.addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Some(stream);
            }
            _ => replica.set(Readiness::NotReady),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use tonic_health::server::HealthReporter;

    use super::*;

    /// A gRPC server with only a health service, SERVING for "" and for its own `name`; its reporter.
    async fn replica(name: &'static str) -> (SocketAddr, HealthReporter, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        reporter
            .set_service_status(name, tonic_health::ServingStatus::Serving)
            .await;
        let stop = CancellationToken::new();
        let until = stop.clone();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    until.cancelled_owned(),
                ),
        );
        (addr, reporter, stop)
    }

    /// Which replica a new connection through `balancer` reaches ("" when refused).
    async fn reached(balancer: &Balancer) -> &'static str {
        let Ok(channel) = tonic::transport::Endpoint::from_shared(balancer.url())
            .unwrap_or_else(|e| panic!("{e}"))
            .timeout(Duration::from_secs(2))
            .connect()
            .await
        else {
            return "";
        };
        let mut health = HealthClient::new(channel);
        for name in ["a", "b"] {
            let asked = health.check(HealthCheckRequest { service: name.into() }).await;
            if asked.is_ok() {
                return name;
            }
        }
        ""
    }

    #[tokio::test]
    async fn connections_alternate_between_serving_replicas_and_avoid_one_that_drains() {
        let (a, a_health, _a_stop) = replica("a").await;
        let (b, b_health, _b_stop) = replica("b").await;
        let balancer = Balancer::bind(([127, 0, 0, 1], 0).into(), &[a, b])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(balancer.until_ready(a, Duration::from_secs(5)).await);
        assert!(balancer.until_ready(b, Duration::from_secs(5)).await);
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(reached(&balancer).await);
        }
        seen.sort_unstable();
        assert_eq!(seen, ["a", "a", "b", "b"], "round robin over the serving replicas");

        // b drains: within a probe every new connection goes to a.
        b_health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        tokio::time::sleep(DRAIN_NOTICE).await;
        assert!(!balancer.is_ready(b));
        for _ in 0..4 {
            assert_eq!(reached(&balancer).await, "a");
        }

        // Neither serves: a new connection is refused at once rather than queued behind a drain.
        a_health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        tokio::time::sleep(DRAIN_NOTICE).await;
        assert_eq!(reached(&balancer).await, "", "no ready replica: refused");

        // b is back.
        b_health
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        assert!(balancer.until_ready(b, Duration::from_secs(5)).await);
        assert_eq!(reached(&balancer).await, "b");
    }

    #[tokio::test]
    async fn a_replica_that_died_gets_no_connection() {
        let (a, _a_health, _a_stop) = replica("a").await;
        let (b, _b_health, b_stop) = replica("b").await;
        let balancer = Balancer::bind(([127, 0, 0, 1], 0).into(), &[a, b])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(balancer.until_ready(b, Duration::from_secs(5)).await);
        b_stop.cancel();
        tokio::time::sleep(DRAIN_NOTICE).await;
        for _ in 0..4 {
            assert_eq!(reached(&balancer).await, "a");
        }
    }
}
