//! `baemin up` as a person runs it: every service its own OS process with its own nats-server, driven
//! by the `baemin` command; stopping one service leaves the others running; SIGTERM stops everything.

use std::{collections::HashMap, process::Stdio, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
    sync::mpsc,
};

const BAEMIN: &str = env!("CARGO_BIN_EXE_baemin");

/// An offset that puts 8080..=8084 and their admin ports 9080..=9084 on ports nobody listens on.
fn free_port_offset() -> u16 {
    free_port_offset_for(1)
}

/// An offset that puts the ports of `baemin up --replicas n` (8080..=8084, and each replica's on
/// + 100 × i with its admin port + 1000) on ports nobody listens on.
fn free_port_offset_for(replicas: u16) -> u16 {
    let last = if replicas == 1 { 0 } else { replicas };
    let ports: Vec<u16> = (0..=last)
        .flat_map(|i| (8080..=8084).flat_map(move |p| [p + 100 * i, p + 1000 + 100 * i]))
        .collect();
    // Random, so that tests running at once (in this process or another) pick different blocks.
    use std::hash::BuildHasher;
    let seed = std::collections::hash_map::RandomState::new();
    (0..500_u64)
        .map(|i| 10_000 + (seed.hash_one(i) % 3_000) as u16)
        .find(|offset| {
            ports
                .iter()
                .all(|p| std::net::TcpListener::bind(("127.0.0.1", p + offset)).is_ok())
        })
        .expect("a free block of ports")
}

fn signal(pid: u32, sig: &str) -> bool {
    std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

/// SIGTERM to `baemin up`: it exits successfully and every process it printed (`pids`) is gone.
async fn stop_up(up: &mut tokio::process::Child, pids: &HashMap<String, u32>) {
    assert!(signal(up.id().expect("pid"), "-TERM"));
    let status = tokio::time::timeout(Duration::from_secs(90), up.wait())
        .await
        .expect("baemin up stops")
        .expect("status");
    assert!(status.success(), "{status}");
    for (name, pid) in pids {
        assert!(!signal(*pid, "-0"), "{name} (pid {pid}) is gone");
    }
}

async fn cli(urls: &[String], args: &[&str]) -> std::process::Output {
    Command::new(BAEMIN)
        .args(urls)
        .args(args)
        .output()
        .await
        .expect("run baemin")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baemin_up_runs_each_service_as_a_process_survives_one_stopping_and_stops_cleanly() {
    let data = tempfile::tempdir().expect("temp dir");
    let offset = free_port_offset();
    let mut up = Command::new(BAEMIN)
        .args(["up", "--data-dir"])
        .arg(data.path())
        .args(["--port-offset", &offset.to_string()])
        .env_remove("NATS_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start baemin up");
    let (err_tx, mut err_rx) = mpsc::unbounded_channel();
    let stderr = up.stderr.take().expect("stderr");
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = err_tx.send(line);
        }
    });
    let mut stdout = BufReader::new(up.stdout.take().expect("stdout")).lines();

    // The table: "  <service> <url> <metrics url> <pid> <database>" (nats has no metrics URL).
    let mut pids = HashMap::new();
    let mut metrics_urls = Vec::new();
    let table = async {
        let mut in_table = false;
        while let Ok(Some(line)) = stdout.next_line().await {
            if line.starts_with("Baemin Riders mesh is up") {
                in_table = true;
            } else if in_table && line.trim().is_empty() {
                break;
            } else if in_table {
                let cols: Vec<&str> = line.split_whitespace().collect();
                if let Some((name, rest)) = cols.split_first()
                    && let Some(pid) = rest.iter().find_map(|c| c.parse::<u32>().ok())
                {
                    pids.insert((*name).to_owned(), pid);
                    metrics_urls.extend(rest.iter().filter(|c| c.ends_with("/metrics")).map(|c| (*c).to_owned()));
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(90), table)
        .await
        .expect("baemin up printed its table");
    let dashboard = async {
        while let Ok(Some(line)) = stdout.next_line().await {
            if let Some(link) = line.strip_prefix("Dashboard:") {
                return link.trim().to_owned();
            }
        }
        String::new()
    };
    let dashboard = tokio::time::timeout(Duration::from_secs(10), dashboard)
        .await
        .expect("baemin up printed the dashboard's link");
    let admin_token = dashboard
        .split_once("/#token=")
        .map(|(_, t)| t.to_owned())
        .unwrap_or_else(|| panic!("a token in the link: {dashboard}"));
    for name in ["call", "rider", "payment", "report", "gateway", "nats"] {
        assert!(pids.contains_key(name), "{name} runs as its own process: {pids:?}");
    }
    assert_eq!(metrics_urls.len(), 5, "a metrics URL per service: {metrics_urls:?}");
    for url in &metrics_urls {
        let addr: std::net::SocketAddr = url
            .trim_start_matches("http://")
            .trim_end_matches("/metrics")
            .parse()
            .unwrap();
        let (status, _, body) = crate::gateway::http1(addr, "GET", "/metrics", &[], &[]).await;
        assert!(status.contains("200"), "{url}: {status}");
        assert!(
            String::from_utf8_lossy(&body).contains("baemin_rpc_server_duration_seconds"),
            "{url}"
        );
    }
    let own = std::process::id();
    assert!(pids.values().all(|pid| *pid != own));

    let url = |port: u16| format!("http://127.0.0.1:{}", port + offset);
    let urls = vec![
        format!("--call-url={}", url(8081)),
        format!("--rider-url={}", url(8082)),
        format!("--payment-url={}", url(8083)),
        format!("--report-url={}", url(8084)),
    ];
    // What the chart's `helm test` runs: every service SERVING.
    let health_urls: Vec<String> = (8080..=8084).map(url).collect();
    let health_args: Vec<&str> = std::iter::once("health")
        .chain(health_urls.iter().map(String::as_str))
        .collect();
    let health = cli(&[], &health_args).await;
    assert!(health.status.success(), "{}", String::from_utf8_lossy(&health.stdout));
    assert_eq!(String::from_utf8_lossy(&health.stdout).matches(": SERVING").count(), 5);
    let nobody = cli(&[], &["health", "http://127.0.0.1:1"]).await;
    assert!(!nobody.status.success(), "nothing listening is not healthy");

    let scenario = cli(&urls, &["scenario"]).await;
    let printed = String::from_utf8_lossy(&scenario.stdout);
    assert!(
        scenario.status.success(),
        "scenario failed: {printed}\n{}",
        String::from_utf8_lossy(&scenario.stderr)
    );
    assert!(
        printed.contains("COMPLETED") && printed.lines().last().is_some_and(|l| l.starts_with("done: call")),
        "{printed}"
    );

    // The operator's view: consumer lag, dead letters, outbox backlog of the SQLite files.
    let nats_url = std::fs::read_to_string(data.path().join("nats.url")).expect("nats.url recorded");
    let nats_flag = format!("--nats-url={}", nats_url.trim());
    let data_flag = format!("--data-dir={}", data.path().display());
    let status = cli(&[], &["status", &nats_flag, &data_flag]).await;
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{shown}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    for expected in [
        "events stream:",
        "report__baemin_events_all",
        "rider__baemin_events_call_placed",
        "dead letters: 0",
        "outbox backlog",
    ] {
        assert!(shown.contains(expected), "status shows {expected:?}:\n{shown}");
    }
    let letters = cli(&[], &["dead-letters", &nats_flag, "list"]).await;
    assert!(String::from_utf8_lossy(&letters.stdout).contains("0 dead letter(s)"));

    // Through the gateway: the printed admin link's token reads the company's stats; `baemin token`
    // signs with the same secret; without a token the gateway refuses.
    let gateway = format!("--gateway={}", url(8080));
    let stats = cli(
        &[gateway.clone(), format!("--token={admin_token}")],
        &["report", "stats"],
    )
    .await;
    assert!(stats.status.success(), "{}", String::from_utf8_lossy(&stats.stderr));
    let minted = cli(&[], &["token", "--role", "restaurant", "--subject", "r-1", &data_flag]).await;
    assert!(minted.status.success(), "{}", String::from_utf8_lossy(&minted.stderr));
    let restaurant_token = String::from_utf8_lossy(&minted.stdout).trim().to_owned();
    let listed = cli(
        &[gateway.clone(), format!("--token={restaurant_token}")],
        &["call", "list"],
    )
    .await;
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let anonymous = cli(&[gateway], &["call", "list"]).await;
    assert!(!anonymous.status.success());
    assert!(String::from_utf8_lossy(&anonymous.stderr).contains("Unauthenticated"));

    // Stop the rider process: it is reported, not restarted, and calls are still taken.
    assert!(signal(pids["rider"], "-TERM"));
    let reported = async {
        while let Some(line) = err_rx.recv().await {
            if line.starts_with("rider exited") {
                return line;
            }
        }
        String::new()
    };
    let line = tokio::time::timeout(Duration::from_secs(30), reported)
        .await
        .expect("the rider's exit is reported");
    assert!(line.contains("not restarted"), "{line}");
    let placed = cli(
        &urls,
        &[
            "call",
            "place",
            "--restaurant",
            "r-1",
            "--destination",
            "Seoul",
            "--fee",
            "1000",
        ],
    )
    .await;
    assert!(placed.status.success(), "{}", String::from_utf8_lossy(&placed.stderr));
    assert!(String::from_utf8_lossy(&placed.stdout).contains("CALLED"));
    assert!(
        !baemin_mesh_server::probe::is_serving(&url(8082)).await,
        "the rider was not restarted"
    );

    // SIGTERM to the launcher stops every service and NATS, and it exits successfully.
    stop_up(&mut up, &pids).await;
    assert!(
        data.path().join("call.db").exists(),
        "SQLite files live in the data directory"
    );
}

/// Reads `baemin up`'s table (name → pid, for the rows that have a pid; and every row's name).
async fn read_table(
    stdout: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) -> (Vec<String>, HashMap<String, u32>) {
    let mut names = Vec::new();
    let mut pids = HashMap::new();
    let mut in_table = false;
    while let Ok(Some(line)) = stdout.next_line().await {
        if line.starts_with("Baemin Riders mesh is up") {
            in_table = true;
        } else if in_table && line.trim().is_empty() {
            break;
        } else if in_table && line.starts_with("  ") {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if let Some((name, rest)) = cols.split_first() {
                names.push((*name).to_owned());
                // A process's row: its metrics URL (or its nats:// URL), then its pid.
                let pid = rest
                    .iter()
                    .position(|c| c.ends_with("/metrics") || c.starts_with("nats://"))
                    .and_then(|i| rest.get(i + 1))
                    .and_then(|c| c.parse::<u32>().ok());
                if let Some(pid) = pid {
                    pids.insert((*name).to_owned(), pid);
                }
            }
        }
    }
    (names, pids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baemin_up_with_replicas_says_clearly_when_postgresql_is_unreachable() {
    let data = tempfile::tempdir().expect("temp dir");
    let offset = free_port_offset_for(2);
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        Command::new(BAEMIN)
            .args([
                "up",
                "--replicas",
                "2",
                "--postgres",
                "postgres://postgres:secret@127.0.0.1:1/postgres",
            ])
            .arg("--data-dir")
            .arg(data.path())
            .args(["--port-offset", &offset.to_string()])
            .env_remove("NATS_URL")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("baemin up gives up at once")
    .expect("run baemin up");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("PostgreSQL at postgres://postgres:***@127.0.0.1:1/postgres cannot be used")
            && err.contains("--replicas 2")
            && err.contains("--postgres"),
        "{err}"
    );
    assert!(!err.contains("secret"), "the password is not shown: {err}");
    assert!(
        !data.path().join("nats.url").exists(),
        "nothing was started before the check"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baemin_up_runs_the_replicated_topology_with_one_command_and_a_replica_can_die() {
    let data = tempfile::tempdir().expect("temp dir");
    let offset = free_port_offset_for(2);
    let postgres = baemin_mesh_testkit::postgres_admin_url();
    let mut up = Command::new(BAEMIN)
        .args(["up", "--replicas", "2", "--nats-cluster", "3", "--postgres", &postgres])
        .arg("--data-dir")
        .arg(data.path())
        .args(["--port-offset", &offset.to_string()])
        .env_remove("NATS_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start baemin up");
    // `baemin up` creates the services' databases; they go when the test ends.
    let mut databases = baemin_mesh_testkit::TestDatabases::new(baemin_mesh_testkit::DbKind::Postgres);
    for service in ["payment", "call", "rider", "report"] {
        databases.adopt(&format!("baemin_{offset}_{service}"));
    }
    let mut stdout = BufReader::new(up.stdout.take().expect("stdout")).lines();
    let (names, pids) = tokio::time::timeout(Duration::from_secs(120), read_table(&mut stdout))
        .await
        .expect("baemin up printed its table");
    tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
    for service in ["payment", "call", "rider", "report", "gateway"] {
        assert!(
            names.iter().any(|n| n == service),
            "{service}'s address is printed: {names:?}"
        );
        for i in 1..=2 {
            let replica = format!("{service}-{i}");
            assert!(
                pids.contains_key(&replica),
                "{replica} runs as its own process: {pids:?}"
            );
        }
    }
    for node in ["nats-1", "nats-2", "nats-3"] {
        assert!(pids.contains_key(node), "{node} runs: {pids:?}");
    }
    let recorded = std::fs::read_to_string(data.path().join("nats.url")).expect("nats.url");
    assert_eq!(
        recorded.trim().split(',').count(),
        3,
        "the cluster's members are recorded: {recorded}"
    );

    // A replica of each service dies: once it is gone (a call it had accepted as it died fails, as a crash
    // fails what it interrupts: the replicated e2e suite counts those) and a probe has seen it, its
    // balancer sends every new connection to the other.
    for service in ["payment", "call", "rider", "report"] {
        let pid = pids[&format!("{service}-1")];
        assert!(signal(pid, "-KILL"));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while signal(pid, "-0") {
            assert!(
                std::time::Instant::now() < deadline,
                "{service}-1 (pid {pid}) did not die"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::sleep(baemin::balancer::DRAIN_NOTICE).await;
    let url = |port: u16| format!("http://127.0.0.1:{}", port + offset);
    let urls = vec![
        format!("--call-url={}", url(8081)),
        format!("--rider-url={}", url(8082)),
        format!("--payment-url={}", url(8083)),
        format!("--report-url={}", url(8084)),
    ];
    let scenario = cli(&urls, &["scenario"]).await;
    let printed = String::from_utf8_lossy(&scenario.stdout);
    assert!(
        scenario.status.success() && printed.lines().last().is_some_and(|l| l.starts_with("done: call")),
        "scenario through the balancers: {printed}\n{}",
        String::from_utf8_lossy(&scenario.stderr)
    );
    // `baemin status` finds the cluster from the data directory alone.
    let data_flag = format!("--data-dir={}", data.path().display());
    let status = Command::new(BAEMIN)
        .args(["status", &data_flag])
        .env_remove("NATS_URL")
        .output()
        .await
        .expect("run baemin status");
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success() && shown.contains("report__baemin_events_all") && shown.contains("outbox backlog"),
        "status reads the cluster and the PostgreSQL outboxes: {shown}"
    );
    let recorded = std::fs::metadata(data.path().join("databases")).expect("the databases are recorded");
    let mode = std::os::unix::fs::PermissionsExt::mode(&recorded.permissions());
    assert_eq!(
        mode & 0o777,
        0o600,
        "the database URLs (passwords) are the owner's only"
    );

    stop_up(&mut up, &pids).await;
    drop(databases);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baemin_status_only_reads_it_never_creates_the_stream_on_a_nats_it_reached() {
    let nats = baemin_mesh_testkit::NatsServer::start().await;
    let data = tempfile::tempdir().expect("temp dir");
    let data_flag = format!("--data-dir={}", data.path().display());
    for args in [vec!["status", &data_flag], vec!["dead-letters", &data_flag, "list"]] {
        let out = Command::new(BAEMIN)
            .args(&args)
            .env("NATS_URL", nats.url())
            .output()
            .await
            .expect("run baemin");
        assert!(!out.status.success(), "{args:?}: no mesh runs on this NATS");
    }
    let client = async_nats::connect(nats.url()).await.expect("NATS");
    let js = async_nats::jetstream::new(client);
    for stream in [
        baemin_mesh_events::STREAM_NAME,
        baemin_mesh_events::deadletter::DEAD_LETTER_STREAM,
    ] {
        assert!(js.get_stream(stream).await.is_err(), "{stream} was not created");
    }
}
