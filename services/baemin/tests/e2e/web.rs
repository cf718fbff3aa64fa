//! The gateway seen from the npm ecosystem: a real grpc-web client (`@connectrpc/connect-node`) and the
//! dashboard in headless Chromium (Debian's, driven by playwright-core), each a Node script under
//! `services/gateway/dashboard/tests/`, run here against a real mesh and gateway. `scripts/test` installs
//! Node's packages (`npm ci`) and Chromium first.

use std::{path::PathBuf, process::Stdio, time::Duration};

use baemin_gateway::auth::{Role, mint_hs256};
use baemin_mesh_testkit::DbKind;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::Command,
};

use crate::{
    gateway::{SECRET, start_gateway, token},
    support::TestMesh,
};

/// Longest a Node script may run.
const SCRIPT_LIMIT: Duration = Duration::from_secs(240);

fn dashboard_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../gateway/dashboard")
}

/// Where screenshots and other artifacts of a test run go.
fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/e2e-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `node <script>` in the dashboard directory with the gateway's URL and tokens in its environment.
fn node(script: &str, gateway_url: &str) -> Command {
    let dir = dashboard_dir();
    assert!(
        dir.join("node_modules/@connectrpc/connect-node").exists(),
        "Node packages are missing: run `npm ci` in {} (scripts/test does)",
        dir.display()
    );
    let expired = mint_hs256(
        SECRET,
        "store-1",
        Role::Restaurant,
        std::time::SystemTime::now() - Duration::from_secs(300),
    )
    .unwrap();
    let mut command = Command::new("node");
    command
        .arg(script)
        .current_dir(&dir)
        .env("GATEWAY_URL", gateway_url)
        .env("ADMIN_TOKEN", token(Role::Admin, "ops"))
        .env("RESTAURANT_TOKEN", token(Role::Restaurant, "store-1"))
        .env("OTHER_RESTAURANT_TOKEN", token(Role::Restaurant, "store-2"))
        .env("RIDER_TOKEN", token(Role::Rider, "r-7"))
        .env("EXPIRED_TOKEN", expired)
        .env("SCREENSHOT", artifacts().join("dashboard.png"))
        .kill_on_drop(true);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_npm_grpc_web_client_gets_the_right_data_and_the_right_codes_through_the_gateway() {
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let gateway = start_gateway(&mesh, &[]).await;
    let output = tokio::time::timeout(SCRIPT_LIMIT, node("tests/grpc-web-client.mjs", &gateway.url()).output())
        .await
        .expect("the grpc-web client finished in time")
        .expect("node runs");
    print!("{}", String::from_utf8_lossy(&output.stdout));
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "grpc-web client checks failed: {}",
        output.status
    );
    gateway.stop().await;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_headless_chromium_follows_deliveries_live_and_survives_a_gateway_restart() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "Chromium is missing at {chromium}: `apt-get install chromium` (scripts/test does) or set CHROMIUM"
    );
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let gateway = start_gateway(&mesh, &[]).await;
    let addr = gateway.addr().to_string();
    let mut child = node("tests/dashboard-browser.mjs", &gateway.url())
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node runs");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mesh_ref = &mesh;
    let drive = async move {
        let mut gateway = gateway;
        while let Some(line) = lines.next_line().await.unwrap() {
            println!("{line}");
            if line.trim() == "RESTART_GATEWAY" {
                gateway.stop().await;
                gateway = start_gateway(mesh_ref, &[("GRPC_ADDR", addr.as_str())]).await;
                stdin.write_all(b"RESTARTED\n").await.unwrap();
                stdin.flush().await.unwrap();
            }
        }
        (child.wait().await.unwrap(), gateway)
    };
    let (status, gateway) = tokio::time::timeout(SCRIPT_LIMIT, drive)
        .await
        .expect("the browser test finished in time");
    assert!(status.success(), "dashboard checks failed: {status}");
    println!("screenshot: {}", artifacts().join("dashboard.png").display());
    gateway.stop().await;
    mesh.stop().await;
}
