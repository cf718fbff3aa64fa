//! `baemin-gateway`: the edge gateway as its own process.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    baemin_mesh_runtime::serve_until_signal::<baemin_gateway::Application>().await
}
