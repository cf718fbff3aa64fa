//! `baemin-bench`: measures the mesh on this machine — PlaceCall through the gateway and straight to the
//! call service, the full delivery lifecycle, the read path, event lag, the circuit breaker's cost,
//! memory and start-up — next to a raw tonic echo measured in the same run, and writes the figures as
//! JSON and as a Markdown table. See BENCHMARKS.md.

mod breaker;
mod cli;
mod echo;
mod footprint;
mod load;
mod mesh;
mod report;
mod run;
mod scenarios;
mod sightings;

use std::process::ExitCode;

use clap::Parser;

/// Allocations are counted only on a thread that asks (the breaker micro-benchmark); for every other
/// thread, and in the service processes this binary runs, it is the system allocator.
#[global_allocator]
static GLOBAL: baemin_mesh_testkit::alloc::Counting = baemin_mesh_testkit::alloc::Counting;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        Some(cli::Hidden::Serve { service }) => baemin::launcher::serve(service).await,
        Some(cli::Hidden::Echo { addr }) => echo::serve_until_signal(&addr).await,
        None => {
            // On Ctrl-C or SIGTERM the run is dropped: its load stops (its tasks are aborted with it),
            // its processes are killed and its databases and temporary directory removed (`Mesh`'s
            // drop). `biased`: the signal is polled first, so its handlers are installed before the run
            // takes its first step — a SIGTERM after that is never met by the default action, which
            // would end the process at once and leave the run's children behind.
            let outcome = tokio::select! {
                biased;
                () = baemin_mesh_server::wait_for_signal() => Err(anyhow::anyhow!("interrupted")),
                outcome = run::run(cli.options) => outcome,
            };
            match outcome {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("baemin-bench: {err:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
