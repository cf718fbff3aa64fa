//! The command line of `baemin-bench`.

use std::{path::PathBuf, time::Duration};

use baemin::cli::ServiceName;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Measures the mesh on this machine next to a raw tonic echo measured in the same run. By default it
/// starts its own mesh (nats-server + every service as its own process) in a temporary directory, once
/// per database; `--running` measures a mesh that `baemin up` started instead.
#[derive(Debug, Parser)]
#[command(name = "baemin-bench", version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Internal: the processes the harness starts.
    #[command(subcommand)]
    pub command: Option<Hidden>,
    /// What to measure and how long.
    #[command(flatten)]
    pub options: Options,
}

/// The processes the harness starts from its own binary (services and the echo server run as separate
/// processes, as they do deployed).
#[derive(Debug, Subcommand)]
pub enum Hidden {
    /// One service of the mesh (`baemin serve`).
    #[command(hide = true)]
    Serve {
        /// The service.
        service: ServiceName,
    },
    /// The raw tonic echo server.
    #[command(hide = true)]
    Echo {
        /// Where to listen; the bound address is printed on stdout.
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: String,
    },
}

/// A database the services of a started mesh run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DbKind {
    /// A SQLite file per service (the embedded default).
    Sqlite,
    /// A PostgreSQL database per service, created on `--postgres-url` and dropped afterwards.
    Postgres,
}

impl DbKind {
    /// The short name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// What to measure and how long.
#[derive(Debug, Clone, Args)]
pub struct Options {
    /// Measured time per load scenario, after its warm-up (e.g. 10s, 500ms).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up per load scenario: calls made but not measured.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Calls in flight in the closed-loop scenarios, over one HTTP/2 connection.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub concurrency: u16,
    /// Rate of the event-lag scenario, calls/s (open loop). Default: half the PlaceCall throughput
    /// measured straight to the call service just before.
    #[arg(long)]
    pub lag_rate: Option<f64>,
    /// Databases to start a mesh on, in turn.
    #[arg(long, value_delimiter = ',', default_values = ["sqlite", "postgres"])]
    pub databases: Vec<DbKind>,
    /// nats-servers to start: 1, or a cluster of 3 or 5 holding the events stream on three of them
    /// (production's topology: its Raft log syncs a batch of messages at once, one server syncs each).
    #[arg(long, default_value_t = 1, value_parser = parse_nats_nodes, conflicts_with = "running")]
    pub nats_nodes: u8,
    /// The PostgreSQL server for `postgres` runs; a database per service is created and dropped.
    #[arg(
        long,
        env = "BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres",
        hide_env_values = true
    )]
    pub postgres_url: String,
    /// Measure a running mesh instead of starting one: the data directory of its `baemin up` (the
    /// gateway's token secret is read there). Its gateway needs `GATEWAY_RATE_LIMIT` well above the
    /// per-restaurant rate, and memory and start-up are not measured.
    #[arg(long)]
    pub running: Option<PathBuf>,
    /// The running mesh's gateway.
    #[arg(long, default_value = "http://127.0.0.1:8080", requires = "running")]
    pub gateway_url: String,
    /// The running mesh's call service.
    #[arg(long, default_value = "http://127.0.0.1:8081", requires = "running")]
    pub call_url: String,
    /// The running mesh's rider service.
    #[arg(long, default_value = "http://127.0.0.1:8082", requires = "running")]
    pub rider_url: String,
    /// The running mesh's payment service.
    #[arg(long, default_value = "http://127.0.0.1:8083", requires = "running")]
    pub payment_url: String,
    /// The running mesh's report service.
    #[arg(long, default_value = "http://127.0.0.1:8084", requires = "running")]
    pub report_url: String,
    /// Calls per round of the breaker micro-benchmark (five rounds per variant).
    #[arg(long, default_value_t = 200_000)]
    pub breaker_calls: u32,
    /// Only the breaker micro-benchmark (no mesh, no echo): for work on the breaker.
    #[arg(long)]
    pub breaker_only: bool,
    /// Where results.json and results.md are written.
    #[arg(long, default_value = "target/bench")]
    pub out: PathBuf,
    /// A progress bar (on a terminal) or a line a second (otherwise).
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
    /// A few seconds in all: every scenario briefly, to check the harness runs (figures meaningless).
    #[arg(long)]
    pub smoke: bool,
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    /// A bar when stderr is a terminal, plain lines otherwise.
    Auto,
    /// Always a bar.
    Bar,
    /// Plain lines.
    Lines,
    /// Nothing until the results.
    Quiet,
}

impl Options {
    /// The options of a smoke run: every scenario, briefly.
    pub fn smoke(mut self) -> Self {
        self.duration = Duration::from_millis(800);
        self.warmup = Duration::from_millis(200);
        self.concurrency = self.concurrency.min(8);
        self.breaker_calls = self.breaker_calls.min(5_000);
        self
    }
}

/// `10s`, `500ms`, `2m`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 10s or 500ms"))?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" | "" => number,
        "m" => number * 60.0,
        _ => return Err(format!("{text:?}: the unit must be ms, s or m")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

fn parse_nats_nodes(text: &str) -> Result<u8, String> {
    match text.trim() {
        "1" => Ok(1),
        "3" => Ok(3),
        "5" => Ok(5),
        _ => Err(format!("{text:?}: 1 nats-server, or a cluster of 3 or 5")),
    }
}
