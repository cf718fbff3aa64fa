//! The results: figures as JSON (for tools) and as Markdown tables (for BENCHMARKS.md), every
//! throughput next to its ratio to the raw tonic echo of the same run.

use std::{fmt::Write as _, time::Duration};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::{breaker::BreakerCost, load::Measured, sightings::Lags};

/// Everything one run measured.
#[derive(Debug, Serialize)]
pub struct Results {
    /// Where it ran.
    pub machine: Machine,
    /// How long and how hard.
    pub settings: Settings,
    /// The circuit breaker's cost.
    pub breaker: BreakerCost,
    /// One per mesh measured (per database).
    pub runs: Vec<MeshRun>,
}

/// The machine and build.
#[derive(Debug, Serialize)]
pub struct Machine {
    /// UTC, RFC 3339.
    pub date: String,
    /// CPU model.
    pub cpu: String,
    /// Cores this process may use.
    pub cores: usize,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Kernel release.
    pub kernel: String,
    /// `release` or `debug` (a debug build's figures say little).
    pub build: &'static str,
    /// `nats-server --version`.
    pub nats_server: String,
}

/// The load settings.
#[derive(Debug, Serialize)]
pub struct Settings {
    /// Measured seconds per scenario.
    pub duration_s: f64,
    /// Warm-up seconds per scenario.
    pub warmup_s: f64,
    /// Callers of the closed-loop scenarios.
    pub concurrency: usize,
    /// A smoke run (figures meaningless).
    pub smoke: bool,
}

/// The figures of one mesh.
#[derive(Debug, Serialize)]
pub struct MeshRun {
    /// sqlite, postgres or running (with ", NATS ×3" when the mesh's NATS was a cluster).
    pub database: String,
    /// nats-servers the harness started for this mesh (0 for a running mesh).
    pub nats_nodes: usize,
    /// Raw tonic echo, measured just before this mesh's scenarios.
    pub echo: Figure,
    /// JetStream publishes (256 bytes, acked) into a scratch stream on the mesh's nats-server: the
    /// floor under the event figures (None for a running mesh).
    pub jetstream: Option<Figure>,
    /// PlaceCall through the gateway.
    pub place_gateway: Placed,
    /// PlaceCall straight to the call service.
    pub place_direct: Placed,
    /// Place → accept → pick up → complete (settled).
    pub lifecycle: Lifecycle,
    /// GetDeliveryView.
    pub get_view: Figure,
    /// ListDeliveryViews, first page of 20.
    pub list_views: Figure,
    /// PlaceCall at a fixed rate, event lag measured.
    pub lag: LagRun,
    /// Through the gateway as a share of direct.
    pub gateway_to_direct: f64,
    /// CPU time per call of each process, by scenario (services and nats-server only when started
    /// by the harness).
    pub cpu_ms_per_call: Vec<CpuRow>,
    /// Per service process (empty for a running mesh).
    pub services: Vec<Footprint>,
}

/// Where the CPU went in one scenario: milliseconds of CPU per call, by process, warm-up and the
/// event pipeline's catching up included.
#[derive(Debug, Serialize)]
pub struct CpuRow {
    /// The scenario.
    pub scenario: String,
    /// (process, CPU ms per call; null when the process was gone or no call ended).
    pub ms_per_call: Vec<(String, Option<f64>)>,
}

/// Throughput and latency of one scenario.
#[derive(Debug, Serialize)]
pub struct Figure {
    /// Successful calls per second.
    pub throughput: f64,
    /// Throughput as a share of the echo's.
    pub ratio_to_echo: f64,
    /// Successful calls measured.
    pub ok: u64,
    /// Failed calls measured.
    pub errors: u64,
    /// The first failure.
    pub first_error: Option<String>,
    /// Latency of the successful calls, milliseconds (null when none succeeded).
    pub latency_ms: Option<Percentiles>,
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th.
    pub p90: f64,
    /// 99th.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    /// From a histogram of microseconds; None when it holds nothing (nothing to report, rather than 0).
    pub fn of_micros(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Some(Self {
            p50: ms(0.50),
            p90: ms(0.90),
            p99: ms(0.99),
            max: h.max() as f64 / 1000.0,
        })
    }
}

impl Figure {
    /// The figure of `m`, against the echo's throughput.
    pub fn of(m: &Measured, echo_throughput: f64) -> Self {
        Self {
            throughput: m.throughput(),
            ratio_to_echo: m.throughput() / echo_throughput.max(f64::EPSILON),
            ok: m.ok,
            errors: m.errors,
            first_error: m.first_error.clone(),
            latency_ms: Percentiles::of_micros(&m.latency),
        }
    }
}

/// PlaceCall under load, and the event pipeline behind it.
#[derive(Debug, Serialize)]
pub struct Placed {
    /// The calls.
    pub calls: Figure,
    /// PlaceCall OK → the row on the report's stream.
    pub lag: Lag,
}

/// Event lag: PlaceCall answered OK → the report's stream shows the row.
#[derive(Debug, Serialize)]
pub struct Lag {
    /// Calls whose lag was measured (warm-up included).
    pub calls: u64,
    /// Placed calls the report had not shown 30 s after the load ended.
    pub unseen: u64,
    /// Shown before the PlaceCall answer arrived (counted as 0).
    pub seen_first: u64,
    /// Over all calls, milliseconds.
    pub latency_ms: Option<Percentiles>,
    /// p99 of the calls placed in the first third of the run, milliseconds.
    pub first_third_p99_ms: Option<f64>,
    /// p99 of the calls placed in the last third (growing lag: the pipeline falls behind).
    pub last_third_p99_ms: Option<f64>,
    /// From the end of the load until the report showed every call, milliseconds.
    pub drain_ms: Option<f64>,
}

impl Lag {
    /// The lag figures of `lags`, `drain` after the load.
    pub fn of(lags: &Lags, drain: Option<Duration>) -> Self {
        let mut sorted = lags.lags.clone();
        sorted.sort_by_key(|(placed, _)| *placed);
        let third = sorted.len() / 3;
        let histogram_of = |part: &[(tokio::time::Instant, Duration)]| {
            let mut h = crate::load::histogram();
            for (_, lag) in part {
                crate::load::record(&mut h, *lag);
            }
            h
        };
        let all = histogram_of(&sorted);
        let p99_ms =
            |part: &[(tokio::time::Instant, Duration)]| Percentiles::of_micros(&histogram_of(part)).map(|p| p.p99);
        Self {
            calls: sorted.len() as u64,
            unseen: lags.unseen,
            seen_first: lags.seen_first,
            latency_ms: Percentiles::of_micros(&all),
            first_third_p99_ms: p99_ms(&sorted[..third]),
            last_third_p99_ms: p99_ms(&sorted[sorted.len() - third..]),
            drain_ms: drain.map(|d| d.as_secs_f64() * 1000.0),
        }
    }
}

/// The full lifecycle.
#[derive(Debug, Serialize)]
pub struct Lifecycle {
    /// Completed deliveries per second (latency: the whole lifecycle).
    pub deliveries: Figure,
    /// Completed in the run, warm-up included.
    pub completed: u64,
    /// Of those, settled in the report.
    pub settled_in_report: u64,
}

/// PlaceCall at a stated rate.
#[derive(Debug, Serialize)]
pub struct LagRun {
    /// Calls per second offered.
    pub rate: f64,
    /// The calls.
    pub calls: Figure,
    /// Their lag.
    pub lag: Lag,
}

/// One service process.
#[derive(Debug, Serialize)]
pub struct Footprint {
    /// The service.
    pub service: String,
    /// Spawn → health SERVING, fresh database (migrations included), milliseconds.
    pub startup_ms: f64,
    /// Resident memory before the load, MiB.
    pub rss_idle_mib: Option<f64>,
    /// Resident memory at the end of the load, MiB.
    pub rss_end_mib: Option<f64>,
    /// Peak resident memory, MiB.
    pub rss_peak_mib: Option<f64>,
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.digits$}"))
}

fn row(out: &mut String, name: &str, f: &Figure) {
    let l = f.latency_ms.as_ref();
    let _ = writeln!(
        out,
        "| {name} | {:.0} | {:.1} % | {} | {} | {} | {} |",
        f.throughput,
        f.ratio_to_echo * 100.0,
        opt(l.map(|l| l.p50), 2),
        opt(l.map(|l| l.p99), 2),
        opt(l.map(|l| l.max), 2),
        f.errors
    );
}

fn lag_row(out: &mut String, name: &str, l: &Lag) {
    let p = l.latency_ms.as_ref();
    let _ = writeln!(
        out,
        "| {name} | {} | {} | {} | {} | {} → {} | {} | {} | {} |",
        l.calls,
        opt(p.map(|p| p.p50), 1),
        opt(p.map(|p| p.p99), 1),
        opt(p.map(|p| p.max), 1),
        opt(l.first_third_p99_ms, 1),
        opt(l.last_third_p99_ms, 1),
        opt(l.drain_ms, 0),
        l.unseen,
        l.seen_first
    );
}

impl Results {
    /// The figures as Markdown tables.
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Measured {} on {} ({} cores, {} MiB, Linux {}), {} build, {}; {} s per scenario after {} s warm-up, {} callers over one connection{}.\n",
            m.date,
            m.cpu,
            m.cores,
            m.memory_mib,
            m.kernel,
            m.build,
            m.nats_server,
            self.settings.duration_s,
            self.settings.warmup_s,
            self.settings.concurrency,
            if self.settings.smoke {
                " — SMOKE RUN, figures meaningless"
            } else {
                ""
            }
        );
        for run in &self.runs {
            let _ = writeln!(out, "### Mesh on {}\n", run.database);
            out.push_str("| figure | throughput /s | × echo | p50 ms | p99 ms | max ms | errors |\n");
            out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
            row(&mut out, "raw tonic echo (reference)", &run.echo);
            if let Some(jetstream) = &run.jetstream {
                // One server syncs each message of a stream in turn: what the events cannot exceed. A
                // cluster syncs per Raft append, so more publishes in flight than here can go faster.
                let name = match run.nats_nodes {
                    1 => "JetStream publish, acked (events' floor)",
                    _ => "JetStream publish, acked",
                };
                row(&mut out, name, jetstream);
            }
            row(&mut out, "PlaceCall via gateway", &run.place_gateway.calls);
            row(&mut out, "PlaceCall direct", &run.place_direct.calls);
            row(&mut out, "full lifecycle (deliveries)", &run.lifecycle.deliveries);
            row(&mut out, "GetDeliveryView", &run.get_view);
            row(&mut out, "ListDeliveryViews (20 rows)", &run.list_views);
            row(
                &mut out,
                &format!("PlaceCall @ {:.0}/s (open loop)", run.lag.rate),
                &run.lag.calls,
            );
            let _ = writeln!(
                out,
                "\nGateway hop: via gateway = {:.1} % of direct. Lifecycle: {} completed, {} settled in the report.\n",
                run.gateway_to_direct * 100.0,
                run.lifecycle.completed,
                run.lifecycle.settled_in_report
            );
            out.push_str(
                "| event lag (PlaceCall OK → report stream) | calls | p50 ms | p99 ms | max ms | p99 first → last third | drain ms | unseen | shown before OK |\n",
            );
            out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
            lag_row(&mut out, "during PlaceCall via gateway", &run.place_gateway.lag);
            lag_row(&mut out, "during PlaceCall direct", &run.place_direct.lag);
            lag_row(&mut out, &format!("at {:.0}/s", run.lag.rate), &run.lag.lag);
            if let Some(first) = run.cpu_ms_per_call.first() {
                out.push_str("\n| CPU ms per call |");
                for (process, _) in &first.ms_per_call {
                    let _ = write!(out, " {process} |");
                }
                out.push_str(" total |\n| --- |");
                out.push_str(&" ---: |".repeat(first.ms_per_call.len() + 1));
                out.push('\n');
                for row in &run.cpu_ms_per_call {
                    let _ = write!(out, "| {} |", row.scenario);
                    for (_, ms) in &row.ms_per_call {
                        let _ = write!(out, " {} |", opt(*ms, 3));
                    }
                    let total: Option<f64> = row.ms_per_call.iter().map(|(_, ms)| *ms).sum();
                    let _ = writeln!(out, " {} |", opt(total, 3));
                }
            }
            if !run.services.is_empty() {
                out.push_str(
                    "\n| service | start-up to SERVING ms | RSS idle MiB | RSS end of load MiB | RSS peak MiB |\n",
                );
                out.push_str("| --- | ---: | ---: | ---: | ---: |\n");
                for s in &run.services {
                    let _ = writeln!(
                        out,
                        "| {} | {:.0} | {} | {} | {} |",
                        s.service,
                        s.startup_ms,
                        opt(s.rss_idle_mib, 1),
                        opt(s.rss_end_mib, 1),
                        opt(s.rss_peak_mib, 1)
                    );
                }
            }
            out.push('\n');
        }
        let b = &self.breaker;
        let _ = writeln!(
            out,
            "### Circuit breaker (client stack on an in-memory dependency, {} calls per round)\n",
            b.calls
        );
        out.push_str("| figure | value |\n| --- | ---: |\n");
        let _ = writeln!(out, "| stack without breaker, ns/call | {:.0} |", b.without_ns);
        let _ = writeln!(out, "| stack with closed breaker, ns/call | {:.0} |", b.with_ns);
        let _ = writeln!(out, "| breaker cost, ns/call | {:.0} |", b.overhead_ns());
        let _ = writeln!(
            out,
            "| allocations/call without → with | {:.2} → {:.2} (+{:.2}) |",
            b.without_allocs,
            b.with_allocs,
            b.added_allocs()
        );
        let _ = writeln!(
            out,
            "| throughput with / without | {:.1} % |",
            b.throughput_ratio() * 100.0
        );
        let _ = writeln!(
            out,
            "| open: fail-fast p50 / p99 / max µs | {:.1} / {:.1} / {:.1} |",
            b.open_p50_ns as f64 / 1000.0,
            b.open_p99_ns as f64 / 1000.0,
            b.open_max_ns as f64 / 1000.0
        );
        out
    }
}
