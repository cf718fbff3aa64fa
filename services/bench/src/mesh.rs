//! The mesh under measurement: started by the harness (its own nats-server, every service as its own
//! process on free ports, fresh SQLite files or PostgreSQL databases, all in a temporary directory and
//! removed afterwards), or a running one found by its URLs.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, bail};
use baemin::cli::ServiceName;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use tokio::{process::Child, process::Command, time::Instant};

use crate::cli::{DbKind, Options};

/// Where the services of a mesh are.
#[derive(Debug, Clone)]
pub struct Urls {
    /// The edge gateway.
    pub gateway: String,
    /// The four services, straight.
    pub services: baemin::clients::Urls,
}

/// A service process the harness started.
pub struct Process {
    /// Which service.
    pub service: ServiceName,
    /// From spawning the process to its health reporting SERVING (fresh database: migrations included).
    pub startup: Duration,
    child: Child,
}

impl Process {
    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// A mesh to measure.
pub struct Mesh {
    /// "sqlite", "postgres" or "running", with ", NATS ×3" when the events stream lives on a cluster.
    pub label: String,
    /// The database the services run on (None for a running mesh: not known here).
    pub db: Option<DbKind>,
    /// Its addresses.
    pub urls: Urls,
    /// The gateway's HS256 secret, to mint tokens with.
    pub jwt_secret: String,
    /// Service processes, in start-up order (empty for a running mesh).
    pub processes: Vec<Process>,
    /// The nats-servers of a mesh started here (a URL, or a cluster's comma-separated list).
    pub nats_url: Option<String>,
    /// Copies of the events stream (1, or 3 on a cluster).
    pub stream_replicas: u8,
    /// The nats-servers started here: one, or a cluster's nodes.
    nats: Vec<Child>,
    databases: Vec<String>,
    postgres_url: String,
    dir: Option<tempfile::TempDir>,
}

/// The gateway's per-caller rate limit in a started mesh: far above what one restaurant of the
/// benchmark sends (the default 50/s protects a real gateway from one noisy client).
const BENCH_RATE_LIMIT: &str = "1000000";

/// `BENCH_SERVICE_<KEY>=<value>` sets `<KEY>=<value>` for every service of a started mesh.
pub const SERVICE_ENV_PREFIX: &str = "BENCH_SERVICE_";

impl Mesh {
    /// A running mesh (e.g. `baemin up`), its gateway secret read from `data_dir`.
    pub fn running(data_dir: &Path, options: &Options) -> anyhow::Result<Self> {
        Ok(Self {
            label: "running".into(),
            db: None,
            nats_url: None,
            stream_replicas: 1,
            urls: Urls {
                gateway: options.gateway_url.clone(),
                services: baemin::clients::Urls {
                    call: options.call_url.clone(),
                    rider: options.rider_url.clone(),
                    payment: options.payment_url.clone(),
                    report: options.report_url.clone(),
                },
            },
            jwt_secret: baemin::token::secret(data_dir)?,
            processes: Vec::new(),
            nats: Vec::new(),
            databases: Vec::new(),
            postgres_url: String::new(),
            dir: None,
        })
    }

    /// Starts `nats_nodes` nats-servers (one, or a cluster holding the events stream on three of them,
    /// as in production) and every service on `db`, each process timed to SERVING.
    pub async fn start(exe: &Path, db: DbKind, nats_nodes: u8, postgres_url: &str) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("baemin-bench-").tempdir()?;
        std::fs::create_dir_all(dir.path().join("logs"))?;
        let (nats_url, nats) = baemin::launcher::start_nats(dir.path(), nats_nodes).await?;
        let stream_replicas = nats_nodes.min(3);
        let label = match nats_nodes {
            1 => db.as_str().to_owned(),
            n => format!("{}, NATS ×{n}", db.as_str()),
        };
        // Lives as long as this temporary mesh on loopback; v7's random bits twice over.
        let jwt_secret = format!("{}{}", uuid::Uuid::now_v7().simple(), uuid::Uuid::now_v7().simple());
        let mut mesh = Self {
            label,
            db: Some(db),
            nats_url: Some(nats_url.clone()),
            stream_replicas,
            urls: Urls {
                gateway: String::new(),
                services: baemin::clients::Urls::default(),
            },
            jwt_secret,
            processes: Vec::new(),
            nats,
            databases: Vec::new(),
            postgres_url: postgres_url.to_owned(),
            dir: Some(dir),
        };
        let addrs: Vec<(ServiceName, SocketAddr)> = ServiceName::ALL
            .iter()
            .map(|&s| Ok((s, free_addr()?)))
            .collect::<anyhow::Result<_>>()?;
        let url_of = |service| url_of(&addrs, service);
        mesh.urls = Urls {
            gateway: url_of(ServiceName::Gateway),
            services: baemin::clients::Urls {
                call: url_of(ServiceName::Call),
                rider: url_of(ServiceName::Rider),
                payment: url_of(ServiceName::Payment),
                report: url_of(ServiceName::Report),
            },
        };
        match mesh.start_services(exe, db, &addrs, &nats_url, stream_replicas).await {
            Ok(()) => Ok(mesh),
            Err(err) => {
                // Nothing left behind: processes stopped, databases dropped.
                mesh.stop().await;
                Err(err)
            }
        }
    }

    async fn start_services(
        &mut self,
        exe: &Path,
        db: DbKind,
        addrs: &[(ServiceName, SocketAddr)],
        nats_url: &str,
        stream_replicas: u8,
    ) -> anyhow::Result<()> {
        let url_of = |service| url_of(addrs, service);
        // The key the gateway signs forwarded identity with and the services verify; like the JWT
        // secret, it lives as long as this temporary mesh.
        let identity_key = format!("{}{}", uuid::Uuid::now_v7().simple(), uuid::Uuid::now_v7().simple());
        for &(service, addr) in addrs {
            let mut command = Command::new(exe);
            baemin::launcher::wire(
                &mut command,
                service,
                &url_of,
                nats_url,
                &self.jwt_secret,
                &identity_key,
            );
            command
                .env("GRPC_ADDR", addr.to_string())
                .env("ADMIN_ADDR", "127.0.0.1:0")
                .env("RUST_LOG", "warn")
                .env("LOG_COLOR", "never")
                .env("NATS_STREAM_REPLICAS", stream_replicas.to_string());
            if service == ServiceName::Gateway {
                command.env("GATEWAY_RATE_LIMIT", BENCH_RATE_LIMIT);
            } else {
                command.env("DATABASE_URL", self.database_url(db, service).await?);
            }
            // Tuning experiments: BENCH_SERVICE_X=v in the harness's environment sets X=v for every service.
            command.envs(std::env::vars().filter_map(|(key, value)| {
                key.strip_prefix(SERVICE_ENV_PREFIX)
                    .filter(|k| !k.is_empty())
                    .map(|k| (k.to_owned(), value))
            }));
            let process = self.spawn(command, service, addr).await?;
            self.processes.push(process);
        }
        Ok(())
    }

    async fn database_url(&mut self, db: DbKind, service: ServiceName) -> anyhow::Result<String> {
        match db {
            DbKind::Sqlite => Ok(format!(
                "sqlite://{}/{}.db?mode=rwc",
                self.dir_path().display(),
                service.as_str()
            )),
            DbKind::Postgres => {
                let name = format!("baemin_bench_{}_{}", uuid::Uuid::now_v7().simple(), service.as_str());
                // Recorded before it is created: a run interrupted while CREATE DATABASE runs (or while
                // its connection closes) drops it too (`DROP DATABASE IF EXISTS`).
                self.databases.push(name.clone());
                let admin = Database::connect(&self.postgres_url)
                    .await
                    .with_context(|| "connecting to PostgreSQL (--postgres-url / BENCH_POSTGRES_URL)".to_string())?;
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .with_context(|| format!("CREATE DATABASE {name}"))?;
                admin.close().await.ok();
                eprintln!("created PostgreSQL database {name} (dropped at the end)");
                Ok(baemin_mesh_testkit::with_database(&self.postgres_url, &name))
            }
        }
    }

    fn dir_path(&self) -> PathBuf {
        self.dir.as_ref().map(|d| d.path().to_owned()).unwrap_or_default()
    }

    /// Runs `command` as `serve <service>`, its output to the run's log directory, and times it from
    /// spawn until its health on `addr` says SERVING.
    async fn spawn(&self, mut command: Command, service: ServiceName, addr: SocketAddr) -> anyhow::Result<Process> {
        let log_path = self.dir_path().join("logs").join(format!("{}.log", service.as_str()));
        let log = std::fs::File::create(&log_path)?;
        let started = Instant::now();
        let mut child = command
            .args(["serve", service.as_str()])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", service.as_str()))?;
        let url = format!("http://{addr}");
        loop {
            if let Some(status) = child.try_wait()? {
                let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
                bail!("{} exited with {status} during start-up:\n{tail}", service.as_str());
            }
            if baemin_mesh_server::probe::is_serving(&url).await {
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("{} not SERVING after 60 s", service.as_str());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(Process {
            service,
            startup: started.elapsed(),
            child,
        })
    }

    /// How many nats-servers the harness started for this mesh.
    pub fn nats_nodes(&self) -> usize {
        self.nats.len()
    }

    /// The processes whose CPU time is worth watching: the services, and nats-server when started here
    /// (a cluster's nodes together).
    pub fn pids(&self) -> Vec<(String, Vec<u32>)> {
        let services = self
            .processes
            .iter()
            .filter_map(|p| Some((p.service.as_str().to_owned(), vec![p.pid()?])));
        let nats: Vec<u32> = self.nats.iter().filter_map(Child::id).collect();
        let nats = (!nats.is_empty()).then(|| ("nats".to_owned(), nats));
        services.chain(nats).collect()
    }

    /// Stops the services (SIGTERM: they drain), then nats-server; drops the databases it created.
    pub async fn stop(mut self) {
        for process in self.processes.iter_mut().rev() {
            if let Some(pid) = process.child.id() {
                baemin_mesh_server::probe::terminate(pid);
            }
            if tokio::time::timeout(Duration::from_secs(30), process.child.wait())
                .await
                .is_err()
            {
                let _ = process.child.kill().await;
            }
        }
        for mut nats in std::mem::take(&mut self.nats) {
            if let Some(pid) = nats.id() {
                baemin_mesh_server::probe::terminate(pid);
            }
            if tokio::time::timeout(Duration::from_secs(10), nats.wait())
                .await
                .is_err()
            {
                let _ = nats.kill().await;
            }
        }
        drop_databases(&self.postgres_url, std::mem::take(&mut self.databases)).await;
        drop(self.dir.take());
    }
}

impl Drop for Mesh {
    /// A run cut short (Ctrl-C, an error, a panic): the processes are killed first and reaped, so that
    /// no service holds (or reopens) a connection to a database being dropped and none writes into the
    /// temporary directory while it is removed; then the databases are dropped here, and the directory
    /// goes with its guard.
    fn drop(&mut self) {
        let mut children: Vec<&mut Child> = self
            .processes
            .iter_mut()
            .map(|p| &mut p.child)
            .chain(self.nats.iter_mut())
            .collect();
        for child in &mut children {
            let _ = child.start_kill();
        }
        // SIGKILL cannot be ignored: this takes milliseconds; the bound is for a process that is
        // somebody else's to reap.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while children.iter_mut().any(|c| matches!(c.try_wait(), Ok(None))) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let names = std::mem::take(&mut self.databases);
        if names.is_empty() {
            return;
        }
        let url = self.postgres_url.clone();
        // Inside the runtime: on a thread with a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                rt.block_on(drop_databases(&url, names));
            }
        });
        let _ = cleanup.join();
    }
}

async fn drop_databases(postgres_url: &str, names: Vec<String>) {
    if names.is_empty() {
        return;
    }
    let Ok(admin) = Database::connect(postgres_url).await else {
        eprintln!("cannot reach PostgreSQL to drop {}", names.join(", "));
        return;
    };
    for name in names {
        settle_creation(&admin, &name).await;
        if let Err(err) = admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
        {
            eprintln!("DROP DATABASE {name}: {err}");
        }
    }
    admin.close().await.ok();
}

/// A run interrupted while `CREATE DATABASE {name}` runs stops waiting for it, but the server finishes
/// the statement all the same: a `DROP DATABASE IF EXISTS` meanwhile would find nothing, and the
/// database would appear a moment later, left behind. So the statement still running is cancelled,
/// and whatever it did is settled (created or not) before the database is dropped.
async fn settle_creation(admin: &DatabaseConnection, name: &str) {
    let running = format!("FROM pg_stat_activity WHERE state = 'active' AND query = 'CREATE DATABASE {name}'");
    let _ = admin
        .execute_unprepared(&format!("SELECT pg_cancel_backend(pid) {running}"))
        .await;
    let still_running = || {
        admin.query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT 1 {running}"),
        ))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while matches!(still_running().await, Ok(Some(_))) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `http://<addr>` of `service` among `addrs`.
fn url_of(addrs: &[(ServiceName, SocketAddr)], service: ServiceName) -> String {
    addrs
        .iter()
        .find(|(s, _)| *s == service)
        .map(|(_, a)| format!("http://{a}"))
        .unwrap_or_default()
}

/// A free loopback address (checked then released: the service binds it a moment later), in the
/// benchmark's own range below the ephemeral ports.
fn free_addr() -> anyhow::Result<SocketAddr> {
    let port = baemin_mesh_server::ports::free_port_in(22_500..27_500)?;
    Ok(SocketAddr::from(([127, 0, 0, 1], port)))
}
