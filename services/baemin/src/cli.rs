//! The command line of `baemin`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Baemin Riders mesh: run it locally, run one service, drive it.
#[derive(Debug, Parser)]
#[command(name = "baemin", version, about)]
pub struct Cli {
    /// Where the services are (for the commands that drive the mesh).
    #[command(flatten)]
    pub urls: UrlArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Service addresses, from flags or the environment.
#[derive(Debug, Args)]
pub struct UrlArgs {
    /// Call service URL.
    #[arg(long, env = "CALL_URL", default_value = "http://127.0.0.1:8081", global = true)]
    pub call_url: String,
    /// Rider service URL.
    #[arg(long, env = "RIDER_URL", default_value = "http://127.0.0.1:8082", global = true)]
    pub rider_url: String,
    /// Payment service URL.
    #[arg(long, env = "PAYMENT_URL", default_value = "http://127.0.0.1:8083", global = true)]
    pub payment_url: String,
    /// Report service URL.
    #[arg(long, env = "REPORT_URL", default_value = "http://127.0.0.1:8084", global = true)]
    pub report_url: String,
    /// Call every service through the edge gateway at this URL instead (e.g. http://127.0.0.1:8080).
    #[arg(long, env = "BAEMIN_GATEWAY", global = true)]
    pub gateway: Option<String>,
    /// Bearer token sent with every call (needed through the gateway; see `baemin token`).
    #[arg(long, env = "BAEMIN_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// PEM file of a CA to trust, besides the system's roots, for https:// URLs (a gateway with a
    /// private or development certificate).
    #[arg(long, env = "BAEMIN_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
}

/// A service of the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServiceName {
    /// Calls (port 8081).
    Call,
    /// Riders (port 8082).
    Rider,
    /// Payment (port 8083).
    Payment,
    /// Report (port 8084).
    Report,
    /// The edge gateway (port 8080): gRPC, grpc-web and the dashboard.
    Gateway,
}

impl ServiceName {
    /// Every service, in start-up order (payment first: the others call it; the gateway last).
    pub const ALL: [Self; 5] = [Self::Payment, Self::Call, Self::Rider, Self::Report, Self::Gateway];

    /// The short name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Call => "call",
            Self::Rider => "rider",
            Self::Payment => "payment",
            Self::Report => "report",
            Self::Gateway => "gateway",
        }
    }

    /// The gRPC port of DESIGN.md's runtime contract.
    pub const fn port(self) -> u16 {
        match self {
            Self::Call => 8081,
            Self::Rider => 8082,
            Self::Payment => 8083,
            Self::Report => 8084,
            Self::Gateway => 8080,
        }
    }
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole mesh on this machine: nats-server (if needed) and every service as its own process.
    Up {
        /// Where SQLite files, NATS storage and logs go.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        /// Added to every port (8081..8084 + N), to run a second mesh beside the first.
        #[arg(long, default_value_t = 0)]
        port_offset: u16,
        /// Replicas of every service, as a Deployment scales them. Above 1, each service's port is a
        /// balancer in front of its replicas (on port + 100, + 200, ...), and the services keep their state
        /// in PostgreSQL (--postgres).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=9))]
        replicas: u16,
        /// Run NATS as a JetStream cluster of this many nodes of our own (3 or 5), the events stream
        /// replicated on 3 of them (when NATS_URL names no running server).
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["3", "5"]))]
        nats_cluster: Option<String>,
        /// A PostgreSQL server for the services' databases (baemin_call, ...; created when missing),
        /// instead of SQLite files. Default with --replicas above 1: postgres://postgres@127.0.0.1:5432/postgres.
        #[arg(long, env = "BAEMIN_POSTGRES", hide_env_values = true)]
        postgres: Option<String>,
    },
    /// Run one service in the foreground (what a container runs); configured by environment.
    Serve {
        /// The service.
        service: ServiceName,
    },
    /// Mint a development token for the gateway, signed with its HS256 secret (`GATEWAY_JWT_SECRET`, or
    /// the one `baemin up` keeps in `<data-dir>/jwt-secret`).
    Token {
        /// The role: restaurant, rider or admin.
        #[arg(long)]
        role: baemin_mesh_server::identity::Role,
        /// Who: a restaurant id, a rider id, or a staff member's name.
        #[arg(long)]
        subject: String,
        /// How long it is valid, e.g. 30m, 12h (default 12h).
        #[arg(long, default_value = "12h")]
        ttl: String,
        /// The data directory of `baemin up`, for its secret.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
    },
    /// Play the seed's scenario against a running mesh, printing each step.
    Scenario {
        /// Restaurant placing the call.
        #[arg(long, default_value = "store-1")]
        restaurant: String,
        /// Destination.
        #[arg(long, default_value = "서울 강남구 테헤란로 427")]
        destination: String,
        /// Fee in KRW.
        #[arg(long, default_value_t = 3_000)]
        fee: i64,
        /// Rider taking the call.
        #[arg(long, default_value = "rider-7")]
        rider: String,
    },
    /// Restaurants' calls.
    #[command(subcommand)]
    Call(CallCommand),
    /// Riders' board and deliveries.
    #[command(subcommand)]
    Rider(RiderCommand),
    /// Payments.
    #[command(subcommand)]
    Payment(PaymentCommand),
    /// The company's report.
    #[command(subcommand)]
    Report(ReportCommand),
    /// Events a consumer could never apply: list them, re-drive them.
    DeadLetters {
        /// Where the mesh's NATS is.
        #[command(flatten)]
        nats: NatsArgs,
        /// What to do.
        #[command(subcommand)]
        command: DeadLetterCommand,
    },
    /// Check `grpc.health.v1` of each URL: prints each answer, fails unless every one is SERVING
    /// (the Helm chart's `helm test`).
    Health {
        /// gRPC URLs, e.g. http://baemin-call:8081.
        #[arg(required = true)]
        urls: Vec<String>,
    },
    /// How far behind each consumer is, dead letters, and the outbox backlog of a local mesh.
    Status {
        /// Where the mesh's NATS is, and the data directory of `baemin up` (the outbox backlog of its
        /// SQLite files).
        #[command(flatten)]
        nats: NatsArgs,
    },
}

/// Where the mesh's NATS is.
#[derive(Debug, Args)]
pub struct NatsArgs {
    /// NATS URL (default: NATS_URL, else the one `baemin up` recorded in <data-dir>/nats.url, else
    /// nats://127.0.0.1:4222).
    #[arg(long, env = "NATS_URL")]
    pub nats_url: Option<String>,
    /// The data directory of the `baemin up` whose mesh this is: its NATS (`nats.url`) and SQLite files.
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,
}

impl NatsArgs {
    /// The URL to use: the one given, else the one `baemin up` recorded in the data directory.
    pub fn resolve(&self) -> String {
        self.nats_url
            .clone()
            .or_else(|| {
                std::fs::read_to_string(self.data_dir.join("nats.url"))
                    .ok()
                    .map(|u| u.trim().to_owned())
                    .filter(|u| !u.is_empty())
            })
            .unwrap_or_else(|| "nats://127.0.0.1:4222".into())
    }
}

/// `baemin dead-letters ...`
#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// List every dead letter, oldest first.
    List,
    /// Publish dead letters again on their original subject and remove them.
    Redrive {
        /// Dead-letter sequence numbers (from `list`).
        sequences: Vec<u64>,
        /// Every dead letter.
        #[arg(long, conflicts_with = "sequences")]
        all: bool,
    },
}

/// Paging and filters of list commands.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Status filter (CALLED/OPEN, ACCEPTED, PICKED, COMPLETED, CANCELLED).
    #[arg(long)]
    pub status: Option<String>,
    /// Restaurant filter.
    #[arg(long)]
    pub restaurant: Option<String>,
    /// Rider filter.
    #[arg(long)]
    pub rider: Option<String>,
    /// Items per page (default 20, at most 100).
    #[arg(long, default_value_t = 20)]
    pub page_size: i32,
    /// Token from a previous page.
    #[arg(long, default_value = "")]
    pub page_token: String,
}

/// `baemin call ...`
#[derive(Debug, Subcommand)]
pub enum CallCommand {
    /// Place a call.
    Place {
        /// Restaurant id.
        #[arg(long)]
        restaurant: String,
        /// Destination.
        #[arg(long)]
        destination: String,
        /// Fee in KRW.
        #[arg(long)]
        fee: i64,
        /// Idempotency key (default: a fresh one).
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Show one call.
    Get {
        /// Call id.
        call_id: String,
    },
    /// List calls, newest first.
    List(ListArgs),
    /// Cancel a call before pick-up.
    Cancel {
        /// Call id.
        call_id: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Follow one call's changes.
    Watch {
        /// Call id.
        call_id: String,
    },
}

/// `baemin rider ...`
#[derive(Debug, Subcommand)]
pub enum RiderCommand {
    /// List open calls, oldest first.
    Open {
        /// Items per page.
        #[arg(long, default_value_t = 20)]
        page_size: i32,
    },
    /// Follow the open-call board.
    Watch,
    /// Accept a call.
    Accept {
        /// Call id.
        call_id: String,
        /// Rider id.
        #[arg(long)]
        rider: String,
    },
    /// Pick the food up.
    Pickup {
        /// Call id.
        call_id: String,
        /// Rider id.
        #[arg(long)]
        rider: String,
    },
    /// Complete the delivery (settles the fee).
    Complete {
        /// Call id.
        call_id: String,
        /// Rider id.
        #[arg(long)]
        rider: String,
    },
    /// Show one delivery.
    Get {
        /// Call id.
        call_id: String,
    },
    /// List deliveries, newest first.
    List(ListArgs),
}

/// `baemin payment ...`
#[derive(Debug, Subcommand)]
pub enum PaymentCommand {
    /// Show a call's payment.
    Get {
        /// Call id.
        call_id: String,
    },
}

/// `baemin report ...`
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Show one row of the deliverylist.
    Get {
        /// Call id.
        call_id: String,
    },
    /// List the deliverylist, newest first.
    List(ListArgs),
    /// Counts per status, fees, revenue, mean times.
    Stats,
    /// Follow the deliverylist as it changes.
    Watch {
        /// Only this call.
        #[arg(long)]
        call_id: Option<String>,
    },
    /// Rebuild the deliverylist from the events stream into a fresh database (the live report is not
    /// touched), printing what was replayed.
    Rebuild {
        /// Where the mesh's NATS is.
        #[command(flatten)]
        nats: NatsArgs,
        /// The new database: a DATABASE_URL holding nothing yet (sqlite://PATH?mode=rwc,
        /// postgres://...), or the path of a new SQLite file.
        #[arg(long, value_name = "DATABASE_URL")]
        into: String,
        /// Also list the live report (REPORT_URL) and count the rows that differ; fails if any do.
        #[arg(long)]
        compare: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_given_a_data_dir_finds_the_nats_that_baemin_up_recorded_there() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nats.url"), "nats://127.0.0.1:41234\n").unwrap();
        let from_dir = NatsArgs {
            nats_url: None,
            data_dir: dir.path().to_owned(),
        };
        assert_eq!(from_dir.resolve(), "nats://127.0.0.1:41234");
        let given = NatsArgs {
            nats_url: Some("nats://elsewhere:4222".into()),
            data_dir: dir.path().to_owned(),
        };
        assert_eq!(given.resolve(), "nats://elsewhere:4222", "NATS_URL or --nats-url wins");
        let nothing_recorded = NatsArgs {
            nats_url: None,
            data_dir: dir.path().join("nowhere"),
        };
        assert_eq!(nothing_recorded.resolve(), "nats://127.0.0.1:4222");
    }
}
