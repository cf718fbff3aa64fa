//! The edge gateway in front of the mesh: authentication, the role policy, ownership in the services,
//! rate and size limits, streaming, health and reflection — over real gRPC through a gateway on port 0.
//! Each refusal is checked to have changed nothing in any database.

use std::time::{Duration, SystemTime};

use baemin::clients::{Clients, Credentials, Trust, Urls};
use baemin_gateway::auth::{Role, mint_hs256};
use baemin_mesh_testkit::{DbKind, RunningService};
use baemin_proto::{call::v1 as call, payment::v1 as payment, report::v1 as report, rider::v1 as rider};
use futures::StreamExt;
use tonic::Code;

use crate::support::{PATIENCE, Svc, TestMesh, request_id};

/// The gateway's HS256 secret in these tests.
pub const SECRET: &[u8] = b"test-secret-test-secret-test-secret!";

/// A token for `subject` as `role`, valid for an hour.
pub fn token(role: Role, subject: &str) -> String {
    mint_hs256(SECRET, subject, role, SystemTime::now() + Duration::from_secs(3600)).unwrap()
}

/// The gateway in front of `mesh`, with `extra` settings (on `addr` when given, else port 0).
pub async fn start_gateway(mesh: &TestMesh, extra: &[(&str, &str)]) -> RunningService {
    let url = |svc| format!("http://{}", mesh.addr(svc).expect("service ran"));
    let mut env = vec![
        ("CALL_URL", url(Svc::Call)),
        ("RIDER_URL", url(Svc::Rider)),
        ("PAYMENT_URL", url(Svc::Payment)),
        ("REPORT_URL", url(Svc::Report)),
        ("GATEWAY_JWT_SECRET", String::from_utf8(SECRET.to_vec()).unwrap()),
        ("SHUTDOWN_GRACE", "1s".to_owned()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    RunningService::start::<baemin_gateway::Application>(&env).await
}

/// Clients of every service through the gateway at `url`, sending `token`.
pub fn through(url: &str, token: Option<&str>) -> Clients {
    through_trusting(url, token, &Trust::default())
}

/// [`through`], verifying an `https://` gateway with `trust`.
pub fn through_trusting(url: &str, token: Option<&str>, trust: &Trust) -> Clients {
    let urls = Urls {
        call: url.to_owned(),
        rider: url.to_owned(),
        payment: url.to_owned(),
        report: url.to_owned(),
    };
    Clients::connect(&urls, &Credentials::bearer(token).unwrap(), trust).unwrap()
}

fn place_request(restaurant: &str) -> call::PlaceCallRequest {
    call::PlaceCallRequest {
        request_id: request_id(),
        restaurant_id: restaurant.into(),
        destination: "서울 강남구 테헤란로 427".into(),
        fee: 3_000,
    }
}

/// Every call the call service holds, read directly as an internal backend.
async fn calls_stored(mesh: &TestMesh) -> Vec<call::Call> {
    let mut c = mesh.clients.call.clone();
    c.list_calls(call::ListCallsRequest {
        page_size: 100,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restaurant_places_a_call_through_the_gateway_and_an_admin_watches_its_row_stream_in() {
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let gateway = start_gateway(&mesh, &[]).await;
    let store = through(&gateway.url(), Some(&token(Role::Restaurant, "store-1")));
    let admin = through(&gateway.url(), Some(&token(Role::Admin, "ops")));
    let placed = store
        .call
        .clone()
        .place_call(place_request("store-1"))
        .await
        .unwrap()
        .into_inner()
        .call
        .unwrap();
    let mut watch = admin
        .report
        .clone()
        .watch_delivery_views(report::WatchDeliveryViewsRequest {
            call_id: placed.call_id.clone(),
            include_snapshot: true,
        })
        .await
        .unwrap()
        .into_inner();
    let row = tokio::time::timeout(PATIENCE, watch.next())
        .await
        .expect("the row streams in")
        .expect("stream open")
        .unwrap()
        .view
        .unwrap();
    assert_eq!(
        (row.call_id.as_str(), row.restaurant_id.as_str(), row.fee),
        (placed.call_id.as_str(), "store-1", 3_000)
    );
    let stats = admin
        .report
        .clone()
        .get_stats(report::GetStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.total_fees, 3_000);
    gateway.stop().await;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_expired_forged_and_malformed_credentials_are_unauthenticated_and_store_nothing() {
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let gateway = start_gateway(&mesh, &[]).await;
    let expired = mint_hs256(
        SECRET,
        "store-1",
        Role::Restaurant,
        SystemTime::now() - Duration::from_secs(120),
    )
    .unwrap();
    let forged = mint_hs256(
        b"someone-elses-secret-of-32-bytes!!",
        "store-1",
        Role::Restaurant,
        SystemTime::now() + Duration::from_secs(60),
    )
    .unwrap();
    for (what, credentials) in [
        ("no token", None),
        ("expired", Some(expired.as_str())),
        ("wrong signature", Some(forged.as_str())),
        ("not a JWT", Some("hello")),
    ] {
        let status = through(&gateway.url(), credentials)
            .call
            .clone()
            .place_call(place_request("store-1"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
    }
    assert!(calls_stored(&mesh).await.is_empty(), "nothing was stored");
    gateway.stop().await;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_calling_a_method_not_meant_for_it_is_permission_denied_and_changes_nothing() {
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let gateway = start_gateway(&mesh, &[]).await;
    let store = through(&gateway.url(), Some(&token(Role::Restaurant, "store-1")));
    let rider_r7 = through(&gateway.url(), Some(&token(Role::Rider, "r-7")));
    let admin = through(&gateway.url(), Some(&token(Role::Admin, "ops")));
    let placed = store
        .call
        .clone()
        .place_call(place_request("store-1"))
        .await
        .unwrap()
        .into_inner()
        .call
        .unwrap();

    let denied = |result: Result<(), tonic::Status>, what: &str| {
        let status = result.expect_err(what);
        assert_eq!(status.code(), Code::PermissionDenied, "{what}: {status:?}");
    };
    denied(
        rider_r7
            .call
            .clone()
            .place_call(place_request("store-1"))
            .await
            .map(drop),
        "a rider placing a call",
    );
    denied(
        store
            .rider
            .clone()
            .accept_call(rider::AcceptCallRequest {
                call_id: placed.call_id.clone(),
                rider_id: "store-1".into(),
            })
            .await
            .map(drop),
        "a restaurant accepting a call",
    );
    for (who, clients) in [("restaurant", &store), ("admin", &admin)] {
        denied(
            clients
                .payment
                .clone()
                .settle(payment::SettleRequest {
                    call_id: placed.call_id.clone(),
                    rider_id: "r-7".into(),
                })
                .await
                .map(drop),
            &format!("a {who} settling"),
        );
    }
    denied(
        store
            .report
            .clone()
            .get_stats(report::GetStatsRequest {})
            .await
            .map(drop),
        "a restaurant reading the company's revenue",
    );
    let stored = calls_stored(&mesh).await;
    assert_eq!(stored.len(), 1, "only the restaurant's own call");
    assert_eq!(
        stored[0].status(),
        call::CallStatus::Called,
        "not accepted, not settled"
    );
    let fee = mesh
        .clients
        .payment
        .clone()
        .get_payment(payment::GetPaymentRequest {
            call_id: placed.call_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        fee.payment.unwrap().status(),
        payment::PaymentStatus::Registered,
        "not settled"
    );
    gateway.stop().await;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_restaurants_call_and_another_riders_delivery_are_permission_denied_even_with_forged_identity_headers()
{
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let gateway = start_gateway(&mesh, &[]).await;
    let store1 = through(&gateway.url(), Some(&token(Role::Restaurant, "store-1")));
    let store2 = through(&gateway.url(), Some(&token(Role::Restaurant, "store-2")));
    let r7 = through(&gateway.url(), Some(&token(Role::Rider, "r-7")));
    let r8 = through(&gateway.url(), Some(&token(Role::Rider, "r-8")));
    let placed = store1
        .call
        .clone()
        .place_call(place_request("store-1"))
        .await
        .unwrap()
        .into_inner()
        .call
        .unwrap();
    let id = placed.call_id.clone();

    // store-2 claims to be store-1 in the identity headers: the gateway replaces them.
    let mut cancel = tonic::Request::new(call::CancelCallRequest {
        call_id: id.clone(),
        ..Default::default()
    });
    cancel
        .metadata_mut()
        .insert("x-baemin-subject", "store-1".parse().unwrap());
    cancel.metadata_mut().insert("x-baemin-role", "admin".parse().unwrap());
    let status = store2.call.clone().cancel_call(cancel).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = store2
        .call
        .clone()
        .get_call(call::GetCallRequest { call_id: id.clone() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // r-7 takes the call once the rider service has it; r-8 cannot act on r-7's delivery.
    crate::ledger::wait_for_rider_service(&mesh.clients, &id).await;
    r7.rider
        .clone()
        .accept_call(rider::AcceptCallRequest {
            call_id: id.clone(),
            rider_id: "r-7".into(),
        })
        .await
        .unwrap();
    for (what, result) in [
        (
            "pick up as r-7",
            r8.rider
                .clone()
                .pick_up(rider::PickUpRequest {
                    call_id: id.clone(),
                    rider_id: "r-7".into(),
                })
                .await
                .map(drop),
        ),
        (
            "complete as r-8",
            r8.rider
                .clone()
                .complete_delivery(rider::CompleteDeliveryRequest {
                    call_id: id.clone(),
                    rider_id: "r-8".into(),
                })
                .await
                .map(drop),
        ),
    ] {
        let status = result.expect_err(what);
        assert!(matches!(status.code(), Code::PermissionDenied), "{what}: {status:?}");
    }
    let delivery = mesh
        .clients
        .rider
        .clone()
        .get_delivery(rider::GetDeliveryRequest { call_id: id.clone() })
        .await
        .unwrap()
        .into_inner()
        .delivery
        .unwrap();
    assert_eq!(
        (delivery.rider_id.as_str(), delivery.status()),
        ("r-7", rider::DeliveryStatus::Accepted)
    );
    let stored = calls_stored(&mesh).await;
    assert_ne!(
        stored[0].status(),
        call::CallStatus::Cancelled,
        "not cancelled by store-2"
    );
    gateway.stop().await;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_rate_a_subject_is_resource_exhausted_others_go_on_and_the_gateway_stays_up() {
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let gateway = start_gateway(&mesh, &[("GATEWAY_RATE_LIMIT", "5"), ("GATEWAY_RATE_BURST", "5")]).await;
    let busy = through(&gateway.url(), Some(&token(Role::Admin, "busy")));
    let burst = futures::future::join_all((0..50).map(|_| {
        let mut r = busy.report.clone();
        async move { r.get_stats(report::GetStatsRequest {}).await.map(drop) }
    }))
    .await;
    let limited = burst
        .iter()
        .filter(|r| matches!(r, Err(s) if s.code() == Code::ResourceExhausted))
        .count();
    let ok = burst.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok + limited, 50, "only OK or RESOURCE_EXHAUSTED: {burst:?}");
    assert!((5..=7).contains(&ok), "about the burst passed: {ok}");
    let quiet = through(&gateway.url(), Some(&token(Role::Admin, "quiet")));
    quiet
        .report
        .clone()
        .get_stats(report::GetStatsRequest {})
        .await
        .expect("another subject goes on");
    gateway.stop().await;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_size_limit_is_resource_exhausted_at_the_gateway_and_at_the_service() {
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let gateway = start_gateway(&mesh, &[]).await;
    let store = through(&gateway.url(), Some(&token(Role::Restaurant, "store-1")));
    let mut huge = place_request("store-1");
    huge.destination = "x".repeat(70 * 1024);
    let status = store.call.clone().place_call(huge.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let status = mesh.clients.call.clone().place_call(huge).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "at the service too: {status:?}");
    assert!(calls_stored(&mesh).await.is_empty());
    store
        .call
        .clone()
        .place_call(place_request("store-1"))
        .await
        .expect("the gateway is still up");
    gateway.stop().await;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_answers_health_and_reflection_for_every_routed_service_without_credentials() {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let gateway = start_gateway(&mesh, &[]).await;
    let channel = baemin::clients::channel(&gateway.url()).unwrap();
    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest { service: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);
    let listed = crate::events::reflection::lists_v1(channel).await;
    for name in [
        "baemin.call.v1.CallService",
        "baemin.rider.v1.RiderService",
        "baemin.payment.v1.PaymentService",
        "baemin.report.v1.ReportService",
    ] {
        assert!(listed.contains(&name.to_owned()), "{name} in {listed:?}");
    }
    gateway.stop().await;
    mesh.stop().await;
}

/// Sends `method path` with `body` over plain HTTP/1.1 (what a browser without HTTP/2 sends) and
/// returns the status line, the headers, and the de-chunked body.
pub(crate) async fn http1(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (String, String, Vec<u8>) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    http1_over(stream, &addr.to_string(), method, path, headers, body).await
}

/// [`http1`] over an open connection (plain or TLS) to `host`.
pub(crate) async fn http1_over(
    mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (String, String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut rest = &raw[split + 4..];
    let (status, headers) = head.split_once("\r\n").unwrap_or((&head, ""));
    let mut body = Vec::new();
    if headers.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16).unwrap();
            rest = &rest[line_end + 2..];
            if size == 0 {
                break;
            }
            body.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
    } else {
        body.extend_from_slice(rest);
    }
    (status.to_owned(), headers.to_owned(), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_text_over_http1_is_answered_with_the_message_and_its_status_in_base64() {
    use base64::Engine;
    use prost::Message;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let gateway = start_gateway(&mesh, &[]).await;
    let admin = format!("Bearer {}", token(Role::Admin, "ops"));
    // GetStats has an empty request: one frame, uncompressed, length 0.
    let frame = b64.encode([0u8, 0, 0, 0, 0]);
    let headers = [
        ("content-type", "application/grpc-web-text"),
        ("accept", "application/grpc-web-text"),
        ("x-grpc-web", "1"),
        ("authorization", admin.as_str()),
    ];
    let (status, head, body) = http1(
        gateway.addr(),
        "POST",
        "/baemin.report.v1.ReportService/GetStats",
        &headers,
        frame.as_bytes(),
    )
    .await;
    assert!(status.contains("200"), "{status}\n{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/grpc-web-text"),
        "{head}"
    );
    // The answer is base64 of frames: the message (flag 0x00), then the trailers (flag 0x80). Each
    // frame may be encoded on its own, so decode piece by piece at padding boundaries.
    let text = String::from_utf8(body).unwrap();
    let mut frames = Vec::new();
    for piece in text.split_inclusive('=').filter(|p| !p.trim_matches('=').is_empty()) {
        frames.extend(b64.decode(piece).unwrap());
    }
    assert_eq!(frames[0], 0, "a message frame first");
    let len = u32::from_be_bytes(frames[1..5].try_into().unwrap()) as usize;
    let stats = report::GetStatsResponse::decode(&frames[5..5 + len]).unwrap();
    assert_eq!(stats.called, 0);
    let trailers = &frames[5 + len..];
    assert_eq!(trailers[0], 0x80, "then the trailers frame");
    let trailer_text = String::from_utf8_lossy(&trailers[5..]).to_ascii_lowercase();
    assert!(trailer_text.contains("grpc-status:0"), "{trailer_text}");

    // Without a token, the same request is refused — as a grpc-web answer the browser can read.
    let (status, head, _) = http1(
        gateway.addr(),
        "POST",
        "/baemin.report.v1.ReportService/GetStats",
        &headers[..3],
        frame.as_bytes(),
    )
    .await;
    assert!(status.contains("200"), "{status}");
    assert!(
        head.to_ascii_lowercase().contains("grpc-status: 16"),
        "UNAUTHENTICATED: {head}"
    );
    gateway.stop().await;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_preflight_is_allowed_from_a_configured_origin_only() {
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let gateway = start_gateway(&mesh, &[("GATEWAY_CORS_ORIGINS", "https://ops.example.com")]).await;
    let preflight = |origin: &'static str| {
        let addr = gateway.addr();
        async move {
            let headers = [
                ("origin", origin),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "content-type,authorization,x-grpc-web",
                ),
            ];
            http1(
                addr,
                "OPTIONS",
                "/baemin.report.v1.ReportService/GetStats",
                &headers,
                b"",
            )
            .await
        }
    };
    let (status, head, _) = preflight("https://ops.example.com").await;
    let head = head.to_ascii_lowercase();
    assert!(status.contains("200"), "{status}\n{head}");
    assert!(
        head.contains("access-control-allow-origin: https://ops.example.com"),
        "{head}"
    );
    assert!(head.contains("authorization"), "the token header may be sent: {head}");
    let (_, head, _) = preflight("https://evil.example.com").await;
    assert!(
        !head.to_ascii_lowercase().contains("access-control-allow-origin"),
        "another origin is not allowed: {head}"
    );
    gateway.stop().await;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_through_the_gateway_ends_with_unavailable_when_the_gateway_drains_and_it_stops_at_once() {
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    // A long grace: stopping must not need it.
    let gateway = start_gateway(&mesh, &[("SHUTDOWN_GRACE", "30s")]).await;
    let admin = through(&gateway.url(), Some(&token(Role::Admin, "ops")));
    let mut watch = admin
        .report
        .clone()
        .watch_delivery_views(report::WatchDeliveryViewsRequest {
            call_id: String::new(),
            include_snapshot: true,
        })
        .await
        .expect("the watch opens")
        .into_inner();
    let started = std::time::Instant::now();
    let stopping = tokio::spawn(gateway.stop());
    let ended = tokio::time::timeout(PATIENCE, watch.next())
        .await
        .expect("the watch ends when the gateway drains")
        .expect("with a status, not silently");
    let status = ended.expect_err("an end with a status");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("reconnect"), "{status:?}");
    stopping.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the gateway stopped without waiting out its grace: {:?}",
        started.elapsed()
    );
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_concurrent_stream_limit_a_connection_waits_for_a_free_stream() {
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let gateway = start_gateway(&mesh, &[("GATEWAY_MAX_CONCURRENT_STREAMS", "2")]).await;
    // One client, one HTTP/2 connection: two open watches take both of its streams.
    let admin = through(&gateway.url(), Some(&token(Role::Admin, "ops"))).report;
    let watch = || {
        let mut client = admin.clone();
        async move {
            client
                .watch_delivery_views(report::WatchDeliveryViewsRequest {
                    call_id: String::new(),
                    include_snapshot: false,
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let first = watch().await;
    let _second = watch().await;
    let mut stats = std::pin::pin!({
        let mut client = admin.clone();
        async move { client.get_stats(report::GetStatsRequest {}).await }
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(500), stats.as_mut())
            .await
            .is_err(),
        "a third call on the connection waits while both streams are open"
    );
    drop(first);
    let stats = tokio::time::timeout(PATIENCE, stats)
        .await
        .expect("it goes once a stream is free");
    stats.expect("and is answered");
    // Other connections have their own streams.
    let other = through(&gateway.url(), Some(&token(Role::Admin, "ops"))).report;
    tokio::time::timeout(PATIENCE, other.clone().get_stats(report::GetStatsRequest {}))
        .await
        .expect("answered")
        .unwrap();
    gateway.stop().await;
    mesh.stop().await;
}
