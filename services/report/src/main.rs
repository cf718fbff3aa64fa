//! `baemin-report`: the report service as its own process.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    baemin_mesh_runtime::serve_until_signal::<baemin_report::Application>().await
}
