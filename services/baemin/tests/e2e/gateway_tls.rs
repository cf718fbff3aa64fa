//! The gateway with TLS on its listener (`GATEWAY_TLS_CERT`, `GATEWAY_TLS_KEY`): native gRPC over
//! HTTP/2 and grpc-web over HTTP/1.1 on the one TLS port, chosen by ALPN; plaintext and untrusted
//! clients refused; a client stalling its handshake holds up nobody else.

use std::{sync::Arc, time::Duration};

use baemin::clients::{Clients, Trust};
use baemin_gateway::auth::Role;
use baemin_mesh_testkit::{DbKind, RunningService, tls};
use baemin_proto::{call::v1 as call, report::v1 as report};
use tokio::net::TcpStream;
use tokio_rustls::{
    TlsConnector,
    client::TlsStream,
    rustls::{
        ClientConfig, RootCertStore,
        crypto::ring,
        pki_types::{CertificateDer, ServerName, pem::PemObject},
    },
};

use crate::{
    gateway::{http1_over, start_gateway, through_trusting, token},
    support::{TestMesh, request_id},
};

async fn start_tls_gateway(mesh: &TestMesh) -> RunningService {
    let cert = tls::cert_pem().display().to_string();
    let key = tls::key_pem().display().to_string();
    start_gateway(mesh, &[("GATEWAY_TLS_CERT", &cert), ("GATEWAY_TLS_KEY", &key)]).await
}

/// Clients of every service through the gateway at `url`, as `role` `subject`, trusting `trust`.
fn through(url: &str, role: Role, subject: &str, trust: &Trust) -> Clients {
    through_trusting(url, Some(&token(role, subject)), trust)
}

/// Whether the call failed in the transport (connection, TLS) rather than being answered.
fn from_transport(status: &tonic::Status) -> bool {
    std::error::Error::source(status).is_some_and(|source| source.downcast_ref::<tonic::transport::Error>().is_some())
}

fn test_ca() -> Trust {
    Trust::ca_file(Some(&tls::ca_pem())).unwrap()
}

fn place_request() -> call::PlaceCallRequest {
    call::PlaceCallRequest {
        request_id: request_id(),
        restaurant_id: "store-1".into(),
        destination: "서울 강남구 테헤란로 427".into(),
        fee: 3_000,
    }
}

/// A TLS connection to `addr` offering only `alpn`, verifying the server with the test CA.
async fn tls_connect(addr: std::net::SocketAddr, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(tls::ca_pem()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_native_grpc_and_grpc_web_over_http1_share_the_gateway_port() {
    use prost::Message;
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let gateway = start_tls_gateway(&mesh).await;
    let https = format!("https://localhost:{}", gateway.addr().port());

    // Native gRPC: HTTP/2, negotiated by ALPN, the server verified against the test CA.
    let store = through(&https, Role::Restaurant, "store-1", &test_ca());
    let placed = store
        .call
        .clone()
        .place_call(place_request())
        .await
        .expect("a call placed over TLS")
        .into_inner();
    let mut internal = mesh.clients.call.clone();
    let seen = internal.get_call(call::GetCallRequest {
        call_id: placed.call.unwrap().call_id,
    });
    assert_eq!(seen.await.unwrap().into_inner().call.unwrap().restaurant_id, "store-1");

    // grpc-web from a client that speaks only HTTP/1.1: ALPN settles on http/1.1 on the same port.
    let admin = format!("Bearer {}", token(Role::Admin, "ops"));
    let stream = tls_connect(gateway.addr(), &[b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let headers = [
        ("content-type", "application/grpc-web+proto"),
        ("x-grpc-web", "1"),
        ("authorization", admin.as_str()),
    ];
    let path = "/baemin.report.v1.ReportService/GetStats";
    let (status, head, body) = http1_over(stream, "localhost", "POST", path, &headers, &[0, 0, 0, 0, 0]).await;
    assert!(status.contains("200"), "{status}\n{head}");
    assert_eq!(body[0], 0, "a message frame first: {body:?}");
    let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
    report::GetStatsResponse::decode(&body[5..5 + len]).expect("the stats message");
    assert_eq!(body[5 + len], 0x80, "then the trailers frame");
    let trailers = String::from_utf8_lossy(&body[5 + len + 5..]).to_ascii_lowercase();
    assert!(trailers.contains("grpc-status:0"), "{trailers}");

    // The dashboard page too, over HTTP/1.1 and TLS.
    let stream = tls_connect(gateway.addr(), &[b"http/1.1"]).await;
    let (status, _, page) = http1_over(stream, "localhost", "GET", "/", &[], &[]).await;
    assert!(status.contains("200"), "{status}");
    assert!(String::from_utf8_lossy(&page).contains("<html"), "the dashboard's page");

    // And a client offering only h2 gets h2.
    let stream = tls_connect(gateway.addr(), &[b"h2"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));

    gateway.stop().await;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_plaintext_clients_and_clients_not_trusting_the_certificate_are_refused_and_store_nothing() {
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let gateway = start_tls_gateway(&mesh).await;
    let port = gateway.addr().port();

    let plaintext = through(
        &format!("http://localhost:{port}"),
        Role::Restaurant,
        "store-1",
        &test_ca(),
    );
    let status = plaintext.call.clone().place_call(place_request()).await.unwrap_err();
    // The client reads the server's TLS alert as a broken HTTP/2 frame, or finds the connection closed
    // under it: which code that maps to varies (UNAVAILABLE, INTERNAL, UNKNOWN, CANCELLED), but it is a
    // transport failure, never an answer from the gateway.
    assert!(from_transport(&status), "plaintext to a TLS port: {status:?}");

    // The system's roots alone do not vouch for the test CA's certificate.
    let untrusting = through(
        &format!("https://localhost:{port}"),
        Role::Restaurant,
        "store-1",
        &Trust::default(),
    );
    let status = untrusting.call.clone().place_call(place_request()).await.unwrap_err();
    assert!(from_transport(&status), "unknown issuer: {status:?}");

    let mut internal = mesh.clients.call.clone();
    let stored = internal.list_calls(call::ListCallsRequest {
        page_size: 10,
        ..Default::default()
    });
    assert!(stored.await.unwrap().into_inner().calls.is_empty());
    gateway.stop().await;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_connect_and_never_finish_their_handshake_hold_up_nobody() {
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let gateway = start_tls_gateway(&mesh).await;
    // Connections that never send a ClientHello: the server waits up to its handshake timeout (10 s)
    // for each, but concurrently with everything else.
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(TcpStream::connect(gateway.addr()).await.unwrap());
    }
    let store = through(
        &format!("https://localhost:{}", gateway.addr().port()),
        Role::Restaurant,
        "store-1",
        &test_ca(),
    );
    let placed = tokio::time::timeout(Duration::from_secs(5), store.call.clone().place_call(place_request()))
        .await
        .expect("served while the silent connections wait, well before their handshake timeout");
    placed.expect("the call placed");
    drop(silent);
    gateway.stop().await;
    mesh.stop().await;
}
