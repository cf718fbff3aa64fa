//! One benchmark run: the breaker micro-benchmark, then per mesh (per database) the echo reference,
//! start-up, the load scenarios and memory; results written as JSON and Markdown.

use std::time::Duration;

use anyhow::Context;

use crate::{
    breaker,
    cli::{DbKind, Options},
    echo::EchoProcess,
    footprint::{self, CpuSample, Rss, Watched},
    load::{Plan, Shape},
    mesh::Mesh,
    report::{CpuRow, Figure, Footprint, Lag, LagRun, Lifecycle, Machine, MeshRun, Placed, Results, Settings},
    scenarios::{self, Route, Target},
};

/// Runs every scenario the options ask for and writes the results.
pub async fn run(options: Options) -> anyhow::Result<()> {
    let options = if options.smoke { options.smoke() } else { options };
    let exe = std::env::current_exe().context("locating this binary")?;
    let plan = Plan {
        warmup: options.warmup,
        duration: options.duration,
        progress: options.progress,
    };
    let concurrency = usize::from(options.concurrency);
    if cfg!(debug_assertions) && !options.smoke {
        eprintln!("note: this is a debug build; run `cargo run --release -p baemin-bench` for figures worth keeping");
    }

    eprintln!(
        "circuit breaker micro-benchmark ({} calls per round)",
        options.breaker_calls
    );
    let breaker = breaker::measure(options.breaker_calls).await?;

    let mut runs = Vec::new();
    if !options.breaker_only {
        let echo = EchoProcess::start(&exe).await?;
        if let Some(data_dir) = &options.running {
            let mesh = Mesh::running(data_dir, &options)?;
            runs.push(measure_mesh(&mesh, &echo, plan, concurrency, options.lag_rate).await?);
        } else {
            for &db in &options.databases {
                eprintln!("starting a mesh on {}", db.as_str());
                let mesh = Mesh::start(&exe, db, options.nats_nodes, &options.postgres_url)
                    .await
                    .with_context(|| format!("starting the mesh on {}", db.as_str()))?;
                let measured = measure_mesh(&mesh, &echo, plan, concurrency, options.lag_rate).await;
                mesh.stop().await;
                runs.push(measured?);
            }
        }
        echo.stop().await;
    }

    let results = Results {
        machine: machine().await,
        settings: Settings {
            duration_s: plan.duration.as_secs_f64(),
            warmup_s: plan.warmup.as_secs_f64(),
            concurrency,
            smoke: options.smoke,
        },
        breaker,
        runs,
    };
    let markdown = results.markdown();
    std::fs::create_dir_all(&options.out).with_context(|| format!("creating {}", options.out.display()))?;
    let json_path = options.out.join("results.json");
    let md_path = options.out.join("results.md");
    std::fs::write(&json_path, serde_json::to_string_pretty(&results)?)?;
    std::fs::write(&md_path, &markdown)?;
    println!("{markdown}");
    println!("written: {} and {}", json_path.display(), md_path.display());
    Ok(())
}

async fn measure_mesh(
    mesh: &Mesh,
    echo: &EchoProcess,
    plan: Plan,
    concurrency: usize,
    lag_rate: Option<f64>,
) -> anyhow::Result<MeshRun> {
    let target = Target::new(plan, concurrency, &mesh.urls, &mesh.jwt_secret)?;
    // Let start-up work (connections, consumers) settle before memory is read.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle: Vec<Option<Rss>> = mesh
        .processes
        .iter()
        .map(|p| p.pid().and_then(footprint::rss))
        .collect();

    let mut pids: Vec<Watched> = mesh
        .pids()
        .into_iter()
        .map(|(name, pids)| Watched::Processes(name, pids))
        .collect();
    if mesh.db == Some(DbKind::Postgres) {
        // The database server works for the mesh too (on this machine, only for it during the run).
        pids.push(Watched::All("postgres"));
    }
    pids.push(Watched::Processes("harness".into(), vec![std::process::id()]));
    if let Some(pid) = echo.pid() {
        pids.push(Watched::Processes("echo".into(), vec![pid]));
    }
    let mut cpu = Vec::new();
    let mut sample = CpuSample::take(&pids);
    let mut account = |scenario: &str, calls: u64| {
        let now = CpuSample::take(&pids);
        cpu.push(CpuRow {
            scenario: scenario.to_owned(),
            ms_per_call: now.per_call_since(&sample, calls),
        });
        sample = now;
    };

    let echo_run = scenarios::echo(&plan, concurrency, echo).await?;
    account("raw tonic echo", echo_run.all);
    let reference = echo_run.throughput();
    let jetstream = match &mesh.nats_url {
        Some(url) => {
            let run = scenarios::jetstream_publish(&plan, concurrency, url, mesh.stream_replicas.into()).await?;
            account("JetStream publish", run.all);
            Some(Figure::of(&run, reference))
        }
        None => None,
    };
    // The lifecycle first: the board of open calls is still small (PlaceCall alone leaves calls open).
    let lifecycle = scenarios::lifecycle(&target).await?;
    account("full lifecycle (per delivery)", lifecycle.deliveries.all);
    let closed = Shape::Closed(concurrency);
    let direct = scenarios::place_calls(&target, Route::Direct, closed).await?;
    account("PlaceCall direct", direct.calls.all);
    let gateway = scenarios::place_calls(&target, Route::Gateway, closed).await?;
    account("PlaceCall via gateway", gateway.calls.all);
    let rate = lag_rate.unwrap_or(direct.calls.throughput() / 2.0).max(1.0);
    let lag = scenarios::place_calls(&target, Route::Direct, Shape::Open(rate)).await?;
    account("PlaceCall at the lag rate", lag.calls.all);
    let get_view = scenarios::get_view(&target).await?;
    account("GetDeliveryView", get_view.all);
    let list_views = scenarios::list_views(&target).await?;
    account("ListDeliveryViews", list_views.all);
    let end: Vec<Option<Rss>> = mesh
        .processes
        .iter()
        .map(|p| p.pid().and_then(footprint::rss))
        .collect();

    let placed = |p: &scenarios::Placed| Placed {
        calls: Figure::of(&p.calls, reference),
        lag: Lag::of(&p.sightings.lags(), p.drain),
    };
    let mib = |kib: u64| kib as f64 / 1024.0;
    Ok(MeshRun {
        database: mesh.label.clone(),
        nats_nodes: mesh.nats_nodes(),
        echo: Figure::of(&echo_run, reference),
        jetstream,
        gateway_to_direct: gateway.calls.throughput() / direct.calls.throughput().max(f64::EPSILON),
        place_gateway: placed(&gateway),
        place_direct: placed(&direct),
        lifecycle: Lifecycle {
            deliveries: Figure::of(&lifecycle.deliveries, reference),
            completed: lifecycle.completed,
            settled_in_report: lifecycle.settled_in_report,
        },
        get_view: Figure::of(&get_view, reference),
        list_views: Figure::of(&list_views, reference),
        lag: LagRun {
            rate,
            calls: Figure::of(&lag.calls, reference),
            lag: Lag::of(&lag.sightings.lags(), lag.drain),
        },
        cpu_ms_per_call: cpu,
        services: mesh
            .processes
            .iter()
            .zip(idle.iter().zip(&end))
            .map(|(p, (idle, end))| Footprint {
                service: p.service.as_str().into(),
                startup_ms: p.startup.as_secs_f64() * 1000.0,
                rss_idle_mib: idle.map(|r| mib(r.now_kib)),
                rss_end_mib: end.map(|r| mib(r.now_kib)),
                rss_peak_mib: end.map(|r| mib(r.peak_kib)),
            })
            .collect(),
    })
}

/// What this machine is.
async fn machine() -> Machine {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or_else(|| "unknown CPU".into(), |m| m.trim().to_owned());
    let memory_mib = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024);
    let nats_server = match baemin_mesh_events::nats_server_binary() {
        Some(bin) => tokio::process::Command::new(&bin)
            .arg("--version")
            .output()
            .await
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|_| bin.display().to_string()),
        None => "nats-server (not found)".into(),
    };
    Machine {
        date: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        cpu,
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        memory_mib,
        kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
        build: if cfg!(debug_assertions) { "debug" } else { "release" },
        nats_server,
    }
}
