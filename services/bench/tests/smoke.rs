//! A smoke run of the harness: every scenario for a moment on a mesh of its own, on SQLite and on
//! PostgreSQL. It checks that the harness runs and reports every figure — not what the figures are
//! (speed is judged by `scripts/bench` on a quiet machine, never by a test).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use serde_json::Value;

fn figure<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .try_fold(v, |v, key| v.get(key))
        .unwrap_or_else(|| panic!("results.json has no {path}"))
}

fn number(v: &Value, path: &str) -> f64 {
    let found = figure(v, path);
    found
        .as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number: {found}"))
}

/// A number, or null where nothing was there to measure (`measured` false) — the figure itself, or the
/// object holding it (`latency_ms` is null when no call succeeded).
fn number_if(v: &Value, path: &str, measured: bool) {
    if measured {
        number(v, path);
    } else {
        let (parent, key) = path.rsplit_once('.').map_or((v, path), |(p, k)| (figure(v, p), k));
        if !parent.is_null() {
            let found = figure(parent, key);
            assert!(found.is_null() || found.is_number(), "{path}: {found}");
        }
    }
}

/// On a busy machine a scenario's short smoke window may see no call succeed (a full lifecycle can take
/// longer than the window): its latency is then null as a whole, which is what the report promises.
#[test]
fn a_figure_with_nothing_measured_may_be_null_as_a_whole() {
    let run = serde_json::json!({
        "lifecycle": { "deliveries": { "ok": 0, "latency_ms": null } },
        "lag": { "lag": { "calls": 2, "first_third_p99_ms": null } },
    });
    number_if(&run, "lifecycle.deliveries.latency_ms.p50", false);
    number_if(&run, "lag.lag.first_third_p99_ms", false);
}

#[test]
fn a_smoke_run_reports_every_figure_for_both_databases() {
    let out = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_baemin-bench"))
        .args([
            "--smoke",
            "--progress",
            "lines",
            "--databases",
            "sqlite,postgres",
            "--out",
        ])
        .arg(out.path())
        .env("BENCH_POSTGRES_URL", baemin_mesh_testkit::postgres_admin_url())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "baemin-bench failed:\n{stderr}\n{stdout}");

    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("results.json")).unwrap()).unwrap();
    let markdown = std::fs::read_to_string(out.path().join("results.md")).unwrap();
    assert!(
        stdout.contains(markdown.trim()),
        "the Markdown is printed too:\n{stdout}"
    );

    for figure in [
        "without_ns",
        "with_ns",
        "without_allocs",
        "with_allocs",
        "open_p50_ns",
        "open_p99_ns",
    ] {
        number(&results["breaker"], figure);
    }

    let runs = results["runs"].as_array().unwrap();
    let databases: Vec<&str> = runs.iter().map(|r| r["database"].as_str().unwrap()).collect();
    assert_eq!(databases, ["sqlite", "postgres"]);
    for run in runs {
        let db = run["database"].as_str().unwrap();
        assert_eq!(number(run, "nats_nodes"), 1.0, "{db}: one nats-server by default");
        for scenario in [
            "echo",
            "jetstream",
            "place_gateway.calls",
            "place_direct.calls",
            "lifecycle.deliveries",
            "get_view",
            "list_views",
            "lag.calls",
        ] {
            // Every figure is there; nothing failed. How many calls fit in the short window depends on how
            // busy the machine is, so no count or speed is asserted.
            for figure in ["ok", "throughput", "ratio_to_echo"] {
                number(run, &format!("{scenario}.{figure}"));
            }
            // Latency is reported exactly when some call succeeded (null, not 0, otherwise).
            let ok = number(run, &format!("{scenario}.ok")) > 0.0;
            for figure in ["latency_ms.p50", "latency_ms.p99", "latency_ms.max"] {
                number_if(run, &format!("{scenario}.{figure}"), ok);
            }
            if !ok {
                assert!(
                    figure(run, &format!("{scenario}.latency_ms")).is_null(),
                    "{db}: {scenario}"
                );
            }
            assert_eq!(
                number(run, &format!("{scenario}.errors")),
                0.0,
                "{db}: {scenario} failed: {}",
                run[scenario]
            );
        }
        for lag in ["place_gateway.lag", "place_direct.lag", "lag.lag"] {
            let calls = number(run, &format!("{lag}.calls"));
            number(run, &format!("{lag}.drain_ms"));
            if calls > 0.0 {
                number(run, &format!("{lag}.latency_ms.p99"));
            }
            for figure in ["first_third_p99_ms", "last_third_p99_ms"] {
                number_if(run, &format!("{lag}.{figure}"), calls >= 3.0);
            }
            assert_eq!(
                number(run, &format!("{lag}.unseen")),
                0.0,
                "{db}: {lag}: placed calls never reached the report"
            );
        }
        assert_eq!(
            number(run, "lifecycle.settled_in_report"),
            number(run, "lifecycle.completed"),
            "{db}: every completed delivery is settled in the report"
        );
        assert!(
            !run["cpu_ms_per_call"].as_array().unwrap().is_empty(),
            "{db}: CPU per call"
        );
        let services: Vec<&str> = run["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                for figure in ["startup_ms", "rss_idle_mib", "rss_end_mib", "rss_peak_mib"] {
                    assert!(number(s, figure) > 0.0, "{db}: {figure} of {s}");
                }
                s["service"].as_str().unwrap()
            })
            .collect();
        assert_eq!(services, ["payment", "call", "rider", "report", "gateway"], "{db}");
        assert!(markdown.contains(&format!("### Mesh on {db}")));
    }
}

#[tokio::test]
async fn an_interrupted_run_leaves_no_database_no_directory_and_no_listening_process_behind() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let out = tempfile::tempdir().unwrap();
    let mut bench = tokio::process::Command::new(env!("CARGO_BIN_EXE_baemin-bench"))
        .args([
            "--databases",
            "postgres",
            "--duration",
            "60s",
            "--progress",
            "lines",
            "--breaker-calls",
            "1000",
        ])
        .arg("--out")
        .arg(out.path())
        .env("BENCH_POSTGRES_URL", baemin_mesh_testkit::postgres_admin_url())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // stdout names the run's nats-server and its directory; stderr the databases, then the load's progress.
    let nats_line = BufReader::new(bench.stdout.take().unwrap())
        .lines()
        .next_line()
        .await
        .unwrap()
        .expect("the nats-server line");
    let port: u16 = nats_line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {nats_line:?}"));
    let dir = nats_line
        .split("JetStream storage ")
        .nth(1)
        .and_then(|rest| rest.split("/nats").next())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| panic!("no directory in {nats_line:?}"));
    let mut stderr = BufReader::new(bench.stderr.take().unwrap()).lines();
    let mut databases = Vec::new();
    loop {
        let line = stderr
            .next_line()
            .await
            .unwrap()
            .expect("the run ended before its load began");
        if let Some(rest) = line.strip_prefix("created PostgreSQL database ") {
            databases.push(rest.split_whitespace().next().unwrap().to_owned());
        }
        if line.starts_with("echo (raw tonic)") {
            break; // every service is up and the load has begun
        }
    }
    assert_eq!(databases.len(), 4, "a database per service but the gateway");
    assert!(dir.exists());

    // What the run says from here on, kept for the failure messages (and read, so that a full pipe can
    // never be what holds the run up).
    let said = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut reader = tokio::spawn({
        let said = std::sync::Arc::clone(&said);
        async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                said.lock().unwrap().push(line);
            }
        }
    });
    baemin_mesh_server::probe::terminate(bench.id().unwrap());
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(60), bench.wait()).await;
    if stopped.is_err() {
        bench.kill().await.unwrap();
    }
    // A child that outlived the run would hold its stderr open: the rest is not waited for long.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), &mut reader).await;
    reader.abort();
    let said = said.lock().unwrap().join("\n");
    let status = stopped
        .unwrap_or_else(|_| panic!("the run did not stop within 60 s of SIGTERM; after the signal it said:\n{said}"))
        .unwrap();
    assert!(
        !status.success(),
        "an interrupted run does not report success; after the signal it said:\n{said}"
    );

    assert!(!dir.exists(), "{} is left behind", dir.display());
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err(),
        "the run's nats-server still listens on {port}"
    );
    let admin = sea_orm::Database::connect(baemin_mesh_testkit::postgres_admin_url())
        .await
        .unwrap();
    for name in databases {
        use sea_orm::ConnectionTrait;
        let found = admin
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"),
            ))
            .await
            .unwrap();
        assert!(found.is_none(), "database {name} is left behind");
    }
}
