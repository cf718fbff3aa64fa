//! `ReplicatedMesh`: the production topology for one test — every service as several `baemin serve`
//! processes sharing one PostgreSQL database per service, each service behind one [`Balancer`] (what its
//! Kubernetes Service does), over a three-node JetStream cluster with the stream replicated 3 ways. Any
//! replica or NATS node can be SIGKILLed, or stopped and started again as a rolling update does.

use std::{net::SocketAddr, time::Duration};

use baemin::{
    balancer::{Balancer, DRAIN_NOTICE},
    clients::{Clients, Urls},
};
use baemin_mesh_testkit::{DbKind, NatsCluster, ServiceProcess, TestDatabases, free_port};

use crate::{ledger::Audited, support::Svc};

/// The services in start-up order (payment first: call and rider call it).
const SERVICES: [Svc; 4] = [Svc::Payment, Svc::Call, Svc::Rider, Svc::Report];

/// One service: its balancer and replicas (a stopped replica keeps its address, to come back on it).
struct Tier {
    balancer: Balancer,
    addrs: Vec<SocketAddr>,
    /// Each replica's admin address while it runs.
    admins: Vec<Option<SocketAddr>>,
    running: Vec<Option<ServiceProcess>>,
}

/// Every service `replicas` times over a NATS cluster, on PostgreSQL.
pub struct ReplicatedMesh {
    pub nats: NatsCluster,
    /// Clients of each service through its balancer, as the mesh's users reach it.
    pub clients: Clients,
    tiers: Vec<Tier>,
    database_urls: Vec<String>,
    _databases: TestDatabases,
}

impl ReplicatedMesh {
    /// Starts a 3-node NATS cluster, then `replicas` replicas of payment, call, rider and report, each
    /// service behind its balancer; returns once every replica is SERVING and in its balancer's rotation.
    pub async fn start(replicas: usize) -> Self {
        let nats = NatsCluster::start(3).await;
        let mut databases = TestDatabases::new(DbKind::Postgres);
        let mut database_urls = Vec::new();
        let mut tiers = Vec::new();
        for svc in SERVICES {
            database_urls.push(databases.url_for(svc.name()).await);
            let addrs: Vec<SocketAddr> = (0..replicas)
                .map(|_| SocketAddr::from(([127, 0, 0, 1], free_port())))
                .collect();
            let balancer = Balancer::bind(([127, 0, 0, 1], 0).into(), &addrs)
                .await
                .expect("balancer");
            tiers.push(Tier {
                balancer,
                addrs,
                admins: vec![None; replicas],
                running: (0..replicas).map(|_| None).collect(),
            });
        }
        let urls = Urls {
            call: tiers[Svc::Call as usize].balancer.url(),
            rider: tiers[Svc::Rider as usize].balancer.url(),
            payment: tiers[Svc::Payment as usize].balancer.url(),
            report: tiers[Svc::Report as usize].balancer.url(),
        };
        let mut mesh = Self {
            nats,
            clients: Clients::new(&urls).expect("clients"),
            tiers,
            database_urls,
            _databases: databases,
        };
        for svc in SERVICES {
            for i in 0..replicas {
                mesh.start_replica(svc, i).await;
            }
        }
        mesh
    }

    /// How many replicas each service has.
    pub fn replicas(&self) -> usize {
        self.tiers[0].addrs.len()
    }

    /// `http://` of replica `i` of `svc`, to reach that replica and no other.
    pub fn replica_url(&self, svc: Svc, i: usize) -> String {
        format!("http://{}", self.tiers[svc as usize].addrs[i])
    }

    /// Clients that reach replica `i` of every service directly.
    pub fn replica_clients(&self, i: usize) -> Clients {
        Clients::new(&Urls {
            call: self.replica_url(Svc::Call, i),
            rider: self.replica_url(Svc::Rider, i),
            payment: self.replica_url(Svc::Payment, i),
            report: self.replica_url(Svc::Report, i),
        })
        .expect("clients")
    }

    /// Starts replica `i` of `svc` (again, on its address) and waits until its balancer sends it
    /// connections.
    pub async fn start_replica(&mut self, svc: Svc, i: usize) {
        let addr = self.tiers[svc as usize].addrs[i];
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let env = [
            ("NATS_URL", self.nats.urls()),
            ("NATS_STREAM_REPLICAS", "3".to_owned()),
            ("DATABASE_URL", self.database_urls[svc as usize].clone()),
            ("DATABASE_POOL_SIZE", "4".to_owned()),
            ("PAYMENT_URL", self.tiers[Svc::Payment as usize].balancer.url()),
            ("ADMIN_ADDR", admin.to_string()),
            ("SHUTDOWN_GRACE", "5s".to_owned()),
            // Served on after SIGTERM until the balancer's probe has seen the replica drain, as a pod
            // does while its endpoint is withdrawn.
            ("SHUTDOWN_DELAY", format!("{}ms", DRAIN_NOTICE.as_millis())),
        ];
        let binary = std::path::Path::new(env!("CARGO_BIN_EXE_baemin"));
        let process = ServiceProcess::start(binary, &["serve", svc.name()], &env, addr).await;
        self.tiers[svc as usize].running[i] = Some(process);
        self.tiers[svc as usize].admins[i] = Some(admin);
        assert!(
            self.tiers[svc as usize]
                .balancer
                .until_ready(addr, Duration::from_secs(10))
                .await,
            "{} replica {i} never entered its balancer's rotation",
            svc.name()
        );
    }

    /// How many events replica `i` of `svc` has applied since it started (its
    /// `baemin_events_processed_total{outcome="applied"}`).
    pub async fn applied(&self, svc: Svc, i: usize) -> u64 {
        let admin = self.tiers[svc as usize].admins[i].expect("the replica runs");
        let (status, _, body) = crate::gateway::http1(admin, "GET", "/metrics", &[], &[]).await;
        assert!(status.contains("200"), "{admin}/metrics: {status}");
        String::from_utf8_lossy(&body)
            .lines()
            .filter(|l| l.starts_with("baemin_events_processed_total{") && l.contains(r#"outcome="applied""#))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// The index of the cluster node that leads the events stream (its RAFT group's leader).
    pub async fn stream_leader(&self) -> usize {
        let servers = baemin_mesh_events::server_addrs(&self.nats.urls()).expect("the cluster's URLs");
        let client = async_nats::connect(servers).await.expect("NATS");
        let js = async_nats::jetstream::new(client);
        let mut stream = js
            .get_stream(baemin_mesh_events::STREAM_NAME)
            .await
            .expect("the events stream");
        let info = stream.info().await.expect("stream info");
        let leader = info
            .cluster
            .as_ref()
            .and_then(|c| c.leader.clone())
            .expect("an R3 stream has a leader");
        leader
            .strip_prefix('n')
            .and_then(|i| i.parse().ok())
            .unwrap_or_else(|| panic!("a node named n<i>: {leader}"))
    }

    /// SIGTERM to replica `i` of `svc`: it drains as a rolling update asks, and must exit cleanly.
    pub async fn stop_replica(&mut self, svc: Svc, i: usize) {
        self.tiers[svc as usize].admins[i] = None;
        if let Some(process) = self.tiers[svc as usize].running[i].take() {
            process.stop().await;
        }
    }

    /// SIGKILL to replica `i` of `svc`: a crash, whatever it was doing.
    pub async fn kill_replica(&mut self, svc: Svc, i: usize) {
        self.tiers[svc as usize].admins[i] = None;
        if let Some(process) = self.tiers[svc as usize].running[i].take() {
            process.kill().await;
        }
    }

    /// Stops every replica gracefully (each must drain cleanly); NATS and the databases go on drop.
    pub async fn stop(mut self) {
        for svc in SERVICES.into_iter().rev() {
            for i in 0..self.replicas() {
                self.stop_replica(svc, i).await;
            }
        }
    }
}

impl Audited for ReplicatedMesh {
    fn clients(&self) -> &Clients {
        &self.clients
    }

    fn database_url(&self, svc: Svc) -> &str {
        &self.database_urls[svc as usize]
    }
}
