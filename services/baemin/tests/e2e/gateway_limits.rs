//! The gateway's limits on what unauthenticated clients can hold (OWASP API4): stalled requests, refused
//! requests whose body never ends, connections, token-less streams and refused credentials per client
//! address, watches per subject — over real connections to a gateway on port 0.

use std::time::{Duration, Instant};

use baemin_mesh_testkit::DbKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    gateway::start_gateway,
    support::{PATIENCE, TestMesh},
};

/// A grpc-web POST over HTTP/1.1, without a token and without `Connection: close`, declaring a body of
/// `length` bytes of which only `sent` is ever sent. Returns what the gateway answered once it closed
/// the connection, or `None` if it still held it open after [`PATIENCE`].
async fn stalled_grpc_web(addr: std::net::SocketAddr, length: usize, sent: &[u8]) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /baemin.report.v1.ReportService/GetStats HTTP/1.1\r\nHost: {addr}\r\n\
         content-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\ncontent-length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(sent).await.unwrap();
    let mut answer = Vec::new();
    match tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer)).await {
        Ok(_) => Some(String::from_utf8_lossy(&answer).to_ascii_lowercase()),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_send_headers_and_never_a_body_are_answered_deadline_exceeded_and_their_connections_closed() {
    /// Enough to show it is every connection, few enough for a default open-files limit.
    const STALLED: usize = 200;
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let gateway = start_gateway(
        &mesh,
        &[
            ("REQUEST_READ_TIMEOUT", "1s"),
            // All from one address: this test is about the time limit, not the connection limit.
            ("GATEWAY_MAX_CONNECTIONS_PER_PEER", "1000"),
        ],
    )
    .await;
    let started = Instant::now();
    let answers = futures::future::join_all((0..STALLED).map(|_| stalled_grpc_web(gateway.addr(), 5, b""))).await;
    let held = answers.iter().filter(|a| a.is_none()).count();
    assert_eq!(held, 0, "{held} of {STALLED} connections still open after {PATIENCE:?}");
    for answer in answers.into_iter().flatten() {
        assert!(answer.contains("grpc-status: 4"), "DEADLINE_EXCEEDED: {answer}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "closed soon after the 1 s limit: {:?}",
        started.elapsed()
    );
    gateway.stop().await;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_whose_body_never_ends_is_answered_and_its_connection_closed() {
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let gateway = start_gateway(&mesh, &[]).await;
    // A complete (empty) first message, so the request reaches the edge, which refuses it for want of
    // a token; the rest of the declared body never comes.
    let started = Instant::now();
    let answer = stalled_grpc_web(gateway.addr(), 100, &[0, 0, 0, 0, 0])
        .await
        .expect("the connection was closed");
    assert!(answer.contains("grpc-status: 16"), "UNAUTHENTICATED: {answer}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered after a short drain: {:?}",
        started.elapsed()
    );
    gateway.stop().await;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_connection_limit_a_peers_next_connection_is_closed_at_accept_and_a_closed_one_frees_its_slot() {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let gateway = start_gateway(&mesh, &[("GATEWAY_MAX_CONNECTIONS_PER_PEER", "3")]).await;
    // Connections that say nothing at all: each holds a slot for as long as it is open.
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(tokio::net::TcpStream::connect(gateway.addr()).await.unwrap());
    }
    let mut fourth = tokio::net::TcpStream::connect(gateway.addr()).await.unwrap();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), fourth.read(&mut buf))
        .await
        .expect("the fourth connection is closed, not held");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

    open.pop();
    let check = async {
        loop {
            let channel = baemin::clients::channel(&gateway.url()).unwrap();
            let answer = HealthClient::new(channel)
                .check(HealthCheckRequest { service: String::new() })
                .await;
            if answer.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(PATIENCE, check)
        .await
        .expect("a closed connection gave its slot back");
    gateway.stop().await;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_anonymous_stream_limit_a_peer_is_resource_exhausted_while_probes_and_callers_with_tokens_go_on() {
    use baemin_gateway::auth::Role;
    use baemin_proto::report::v1 as report;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    use crate::gateway::{through, token};
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let gateway = start_gateway(&mesh, &[("GATEWAY_MAX_ANONYMOUS_STREAMS_PER_PEER", "2")]).await;
    let health = HealthClient::new(baemin::clients::channel(&gateway.url()).unwrap());
    let watch = || {
        let mut health = health.clone();
        async move { health.watch(HealthCheckRequest { service: String::new() }).await }
    };
    let first = watch().await.expect("a first watch without a token");
    let _second = watch().await.expect("a second");
    let status = watch().await.expect_err("a third is refused");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");

    health
        .clone()
        .check(HealthCheckRequest { service: String::new() })
        .await
        .expect("health Check is never refused");
    let admin = through(&gateway.url(), Some(&token(Role::Admin, "ops")));
    admin
        .report
        .clone()
        .get_stats(report::GetStatsRequest {})
        .await
        .expect("calls with a token go on");

    drop(first);
    let again = async {
        loop {
            if watch().await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(PATIENCE, again)
        .await
        .expect("an ended watch gave its slot back");
    gateway.stop().await;
    mesh.stop().await;
}

/// Behind an ingress every connection comes from the proxy: with one trusted hop the budget of refused
/// credentials is the forwarded client's, so one client sending bad tokens locks out only itself, and an
/// address a client writes into X-Forwarded-For itself is never believed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget_of_refused_credentials() {
    use baemin_gateway::auth::Role;
    use baemin_proto::report::v1 as report;
    use tonic::Request;

    use crate::gateway::{through, token};
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let gateway = start_gateway(
        &mesh,
        &[
            ("GATEWAY_AUTH_FAILURES_PER_PEER", "3"),
            ("GATEWAY_TRUSTED_PROXY_HOPS", "1"),
        ],
    )
    .await;
    // What the ingress sends on: whatever the client wrote, then the address it came from.
    let stats = |forwarded_for: &'static str, token: String| {
        let mut report = through(&gateway.url(), Some(&token)).report;
        async move {
            let mut request = Request::new(report::GetStatsRequest {});
            request
                .metadata_mut()
                .insert("x-forwarded-for", forwarded_for.parse().unwrap());
            report.get_stats(request).await.map(drop)
        }
    };
    for _ in 0..3 {
        let status = stats("203.0.113.66", "forged".into()).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    }
    let status = stats("203.0.113.66", token(Role::Admin, "ops")).await.unwrap_err();
    assert_eq!(
        status.code(),
        tonic::Code::ResourceExhausted,
        "the noisy client is held back: {status:?}"
    );
    stats("203.0.113.7", token(Role::Admin, "ops"))
        .await
        .expect("another client behind the same proxy is served");
    // Claiming to be another client does not help: only the proxy's own entry is believed.
    let status = stats("203.0.113.7, 203.0.113.66", token(Role::Admin, "ops"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    gateway.stop().await;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_budget_of_refused_credentials_a_peers_credentials_are_refused_unchecked_and_other_peers_go_on() {
    use baemin_gateway::auth::Role;
    use baemin_proto::report::v1 as report;

    use crate::gateway::{http1_over, through, token};
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let gateway = start_gateway(&mesh, &[("GATEWAY_AUTH_FAILURES_PER_PEER", "3")]).await;
    let stats = |token: Option<&str>| {
        let mut report = through(&gateway.url(), token).report;
        async move { report.get_stats(report::GetStatsRequest {}).await.map(drop) }
    };
    for _ in 0..3 {
        let status = stats(Some("forged")).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    }
    let status = stats(Some("forged")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    let good = token(Role::Admin, "ops");
    let status = stats(Some(&good)).await.unwrap_err();
    assert_eq!(
        status.code(),
        tonic::Code::ResourceExhausted,
        "not even a good token is checked from this peer now: {status:?}"
    );
    let status = stats(None).await.unwrap_err();
    assert_eq!(
        status.code(),
        tonic::Code::Unauthenticated,
        "no credentials cost nothing: {status:?}"
    );

    // Another address (all of 127/8 is loopback on Linux) has its own budget.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let stream = socket.connect(gateway.addr()).await.unwrap();
    let authorization = format!("Bearer {good}");
    let headers = [
        ("content-type", "application/grpc-web+proto"),
        ("x-grpc-web", "1"),
        ("authorization", authorization.as_str()),
    ];
    let (_, head, body) = http1_over(
        stream,
        &gateway.addr().to_string(),
        "POST",
        "/baemin.report.v1.ReportService/GetStats",
        &headers,
        &[0, 0, 0, 0, 0],
    )
    .await;
    // Answered OK: grpc-web carries the status in a trailers frame at the end of the body.
    let trailers = String::from_utf8_lossy(&body).to_ascii_lowercase();
    assert!(
        trailers.contains("grpc-status:0"),
        "another peer's token is checked and good: {head}\n{trailers}"
    );
    gateway.stop().await;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_watch_limit_a_subject_is_resource_exhausted_until_one_of_its_watches_ends() {
    use baemin_gateway::auth::Role;
    use baemin_proto::report::v1 as report;

    use crate::gateway::{through, token};
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let gateway = start_gateway(&mesh, &[("GATEWAY_MAX_WATCHES_PER_SUBJECT", "2")]).await;
    let ops = through(&gateway.url(), Some(&token(Role::Admin, "ops"))).report;
    type Client = report::report_service_client::ReportServiceClient<baemin::clients::Transport>;
    let watch = |client: &Client| {
        let mut client = client.clone();
        async move {
            client
                .watch_delivery_views(report::WatchDeliveryViewsRequest {
                    call_id: String::new(),
                    include_snapshot: false,
                })
                .await
                .map(tonic::Response::into_inner)
        }
    };
    let first = watch(&ops).await.expect("a first watch");
    let _second = watch(&ops).await.expect("a second");
    let status = watch(&ops).await.expect_err("a third is refused");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("GATEWAY_MAX_WATCHES_PER_SUBJECT"),
        "{status:?}"
    );

    ops.clone()
        .get_stats(report::GetStatsRequest {})
        .await
        .expect("the subject's other calls go on");
    let other = through(&gateway.url(), Some(&token(Role::Admin, "ops-2"))).report;
    let _others = watch(&other).await.expect("another subject has its own watches");

    drop(first);
    let again = async {
        loop {
            if watch(&ops).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(PATIENCE, again)
        .await
        .expect("an ended watch gave its slot back");
    gateway.stop().await;
    mesh.stop().await;
}

/// An authenticated grpc-web GetStats over HTTP/1.1 whose chunked body starts with one complete (empty)
/// message and then goes on with `more` chunks of 16 KiB, one every 10 ms, without ever ending. Returns
/// what the gateway answered once it closed the connection, or `None` if it still held it after
/// [`PATIENCE`].
async fn endless_authenticated_grpc_web(addr: std::net::SocketAddr, more: usize) -> Option<String> {
    let token = crate::gateway::token(baemin_gateway::auth::Role::Admin, "ops");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /baemin.report.v1.ReportService/GetStats HTTP/1.1\r\nHost: {addr}\r\n\
         authorization: Bearer {token}\r\ncontent-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\n\
         transfer-encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(b"5\r\n\0\0\0\0\0\r\n").await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let feeding = tokio::spawn(async move {
        let chunk = vec![0u8; 16 * 1024];
        for _ in 0..more {
            let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
            if write.write_all(&framed).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Then nothing more, the body still open.
        std::future::pending::<()>().await;
    });
    let mut answer = Vec::new();
    let answered = tokio::time::timeout(PATIENCE, read.read_to_end(&mut answer)).await;
    feeding.abort();
    answered
        .ok()
        .map(|_| String::from_utf8_lossy(&answer).to_ascii_lowercase())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authenticated_request_whose_body_grows_or_never_ends_is_refused_not_buffered() {
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let gateway = start_gateway(&mesh, &[("REQUEST_READ_TIMEOUT", "1s")]).await;
    // Past one message's worth (64 KiB) the request is refused: nothing more is held for it.
    let answer = endless_authenticated_grpc_web(gateway.addr(), 1_000)
        .await
        .expect("answered and closed");
    assert!(
        answer.contains("grpc-status: 8") || answer.contains("grpc-status: 3"),
        "RESOURCE_EXHAUSTED (or INVALID_ARGUMENT for a second message): {answer}"
    );
    // One message and then an open body that never ends: refused once the read timeout passes.
    let started = Instant::now();
    let answer = endless_authenticated_grpc_web(gateway.addr(), 0)
        .await
        .expect("answered and closed");
    assert!(answer.contains("grpc-status: 4"), "DEADLINE_EXCEEDED: {answer}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    gateway.stop().await;
    mesh.stop().await;
}
