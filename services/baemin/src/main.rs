//! `baemin`: run the mesh locally, run one service, drive the mesh.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    baemin::run(baemin::cli::Cli::parse()).await
}
