//! A client's mistake is INVALID_ARGUMENT, never a panic, a reset or INTERNAL (DESIGN.md, "Errors"):
//! bytes that do not decode, strings that are not UTF-8, page tokens cut inside a character — sent
//! straight to every service and through the gateway.

use baemin_gateway::auth::Role;
use baemin_mesh_testkit::DbKind;
use baemin_proto::{call::v1 as call, report::v1 as report, rider::v1 as rider};
use bytes::{Buf, BufMut};
use tonic::{
    Code, Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    transport::Channel,
};

use crate::{
    gateway::{start_gateway, through, token},
    support::{Svc, TestMesh},
};

/// Sends and receives message bytes as they are, so a test can send what no generated client would.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        Ok(Some(bytes.to_vec()))
    }
}

/// The status of sending `message` (raw bytes) to `path` on `channel`, with `bearer` if given.
async fn raw_call(channel: Channel, path: &'static str, message: &[u8], bearer: Option<&str>) -> Status {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("channel ready");
    let mut request = tonic::Request::new(message.to_vec());
    if let Some(token) = bearer {
        let value = format!("Bearer {token}").parse().expect("header value");
        request.metadata_mut().insert("authorization", value);
    }
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    match grpc.unary(request, path, RawCodec).await {
        Ok(_) => Status::ok("answered"),
        Err(status) => status,
    }
}

/// Field 1 declared 255 bytes long, then cut off: the bytes of the reproduction.
const TRUNCATED: &[u8] = &[0x0a, 0xff];
/// Field 1 (a string in every request below) holding the byte 0xFF, which is not UTF-8.
const NOT_UTF8: &[u8] = &[0x0a, 0x01, 0xff];

/// One read per service whose first field is a string.
const READS: [(Svc, &str); 4] = [
    (Svc::Call, "/baemin.call.v1.CallService/GetCall"),
    (Svc::Rider, "/baemin.rider.v1.RiderService/GetDelivery"),
    (Svc::Payment, "/baemin.payment.v1.PaymentService/GetPayment"),
    (Svc::Report, "/baemin.report.v1.ReportService/GetDeliveryView"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_bytes_and_strings_that_are_not_utf8_are_invalid_argument_everywhere() {
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let gateway = start_gateway(&mesh, &[]).await;
    let admin = token(Role::Admin, "ops");
    let to_gateway = baemin::clients::channel(&gateway.url()).unwrap();
    for (svc, path) in READS {
        let direct = baemin::clients::channel(&format!("http://{}", mesh.addr(svc).unwrap())).unwrap();
        for (what, message) in [("truncated", TRUNCATED), ("not UTF-8", NOT_UTF8)] {
            let status = raw_call(direct.clone(), path, message, None).await;
            assert_eq!(
                status.code(),
                Code::InvalidArgument,
                "{path} {what}, direct: {status:?}"
            );
            let status = raw_call(to_gateway.clone(), path, message, Some(&admin)).await;
            assert_eq!(
                status.code(),
                Code::InvalidArgument,
                "{path} {what}, via gateway: {status:?}"
            );
        }
    }
    // Health, which the gateway and every service answer themselves.
    for channel in [
        to_gateway.clone(),
        baemin::clients::channel(&format!("http://{}", mesh.addr(Svc::Call).unwrap())).unwrap(),
    ] {
        let status = raw_call(channel, "/grpc.health.v1.Health/Check", NOT_UTF8, None).await;
        assert_eq!(status.code(), Code::InvalidArgument, "health: {status:?}");
    }
    gateway.stop().await;
    mesh.stop().await;
}

/// The gRPC status of posting `body` as it is (frame headers included) to `path`: what no client
/// library would send.
async fn raw_body(channel: Channel, path: &str, body: &'static [u8], bearer: Option<&str>) -> Code {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let mut request = tonic::codegen::http::Request::post(format!("http://mesh{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(token) = bearer {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let body = tonic::body::Body::new(http_body_util::Full::new(bytes::Bytes::from_static(body)));
    let response = channel
        .oneshot(request.body(body).expect("a request"))
        .await
        .expect("an answer");
    let (head, body) = response.into_parts();
    let in_head = head.headers.get("grpc-status").cloned();
    let status = match in_head {
        Some(status) => status,
        None => {
            let collected = body.collect().await.expect("the body");
            collected
                .trailers()
                .and_then(|t| t.get("grpc-status"))
                .cloned()
                .expect("a grpc-status")
        }
    };
    Code::from_bytes(status.as_bytes())
}

/// Requests broken below the message: no message at all, a cut frame, a compressed frame without an
/// encoding — each the client's mistake, INVALID_ARGUMENT, directly and through the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_with_no_message_a_cut_frame_or_an_unannounced_compression_are_invalid_argument() {
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let gateway = start_gateway(&mesh, &[]).await;
    let admin = token(Role::Admin, "ops");
    let to_gateway = baemin::clients::channel(&gateway.url()).unwrap();
    let cases: [(&str, &'static [u8]); 3] = [
        ("no message", b""),
        ("a cut frame", &[0, 0, 0, 0, 9, 0x0a]),
        ("compressed without grpc-encoding", &[1, 0, 0, 0, 0]),
    ];
    for (svc, path) in READS {
        let direct = baemin::clients::channel(&format!("http://{}", mesh.addr(svc).unwrap())).unwrap();
        for (what, body) in cases {
            let code = raw_body(direct.clone(), path, body, None).await;
            assert_eq!(code, Code::InvalidArgument, "{path} {what}, direct");
            let code = raw_body(to_gateway.clone(), path, body, Some(&admin)).await;
            assert_eq!(code, Code::InvalidArgument, "{path} {what}, via gateway");
        }
    }
    gateway.stop().await;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_token_cut_inside_a_character_is_invalid_argument_on_every_list() {
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let gateway = start_gateway(&mesh, &[]).await;
    const CUT: &str = "v1.aé0";
    let admin = through(&gateway.url(), Some(&token(Role::Admin, "ops")));
    for clients in [&mesh.clients, &admin] {
        let calls = clients
            .call
            .clone()
            .list_calls(call::ListCallsRequest {
                page_token: CUT.into(),
                ..Default::default()
            })
            .await;
        let open = clients
            .rider
            .clone()
            .list_open_calls(rider::ListOpenCallsRequest {
                page_token: CUT.into(),
                ..Default::default()
            })
            .await;
        let deliveries = clients
            .rider
            .clone()
            .list_deliveries(rider::ListDeliveriesRequest {
                page_token: CUT.into(),
                ..Default::default()
            })
            .await;
        let views = clients
            .report
            .clone()
            .list_delivery_views(report::ListDeliveryViewsRequest {
                page_token: CUT.into(),
                ..Default::default()
            })
            .await;
        for (rpc, code) in [
            ("ListCalls", calls.map(drop)),
            ("ListOpenCalls", open.map(drop)),
            ("ListDeliveries", deliveries.map(drop)),
            ("ListDeliveryViews", views.map(drop)),
        ]
        .map(|(rpc, answer)| (rpc, answer.err().map(|s| s.code())))
        {
            assert_eq!(code, Some(Code::InvalidArgument), "{rpc}");
        }
    }
    gateway.stop().await;
    mesh.stop().await;
}

/// Every method the mesh serves: its path, the service that owns it, and whether it answers a stream.
fn every_method() -> Vec<(Svc, String, bool)> {
    use prost::Message as _;
    let set = prost_types::FileDescriptorSet::decode(baemin_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
    let mut methods = Vec::new();
    for file in set.file {
        for service in &file.service {
            let full = format!("{}.{}", file.package(), service.name());
            let svc = match file.package() {
                "baemin.call.v1" => Svc::Call,
                "baemin.rider.v1" => Svc::Rider,
                "baemin.payment.v1" => Svc::Payment,
                "baemin.report.v1" => Svc::Report,
                other => panic!("a service of an unknown package {other}"),
            };
            for method in &service.method {
                methods.push((svc, format!("/{full}/{}", method.name()), method.server_streaming()));
            }
        }
    }
    methods
}

/// The status of sending `message` to `path`, reading only the head of a stream's answer.
async fn raw_any(channel: Channel, path: &str, streaming: bool, message: Vec<u8>, bearer: Option<&str>) -> Status {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("channel ready");
    let mut request = tonic::Request::new(message);
    request.set_timeout(std::time::Duration::from_secs(10));
    if let Some(token) = bearer {
        let value = format!("Bearer {token}").parse().expect("header value");
        request.metadata_mut().insert("authorization", value);
    }
    let path = tonic::codegen::http::uri::PathAndQuery::try_from(path).expect("a path");
    let answer = if streaming {
        grpc.server_streaming(request, path, RawCodec).await.map(drop)
    } else {
        grpc.unary(request, path, RawCodec).await.map(drop)
    };
    answer.err().unwrap_or_else(|| Status::ok("answered"))
}

/// Whatever bytes a client sends as a request message, every method of every service answers with a
/// status a client can act on — never INTERNAL or UNKNOWN, never a reset stream (UNAVAILABLE, or a
/// transport error) — directly and through the gateway. The inputs are random (proptest's generator,
/// deterministic seed) around the shapes that reach parsers: empty, short, field tags with wild lengths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_request_bytes_never_crash_a_handler_or_answer_internal() {
    use proptest::{
        collection::vec,
        prelude::any,
        strategy::{Strategy, ValueTree},
        test_runner::TestRunner,
    };
    const CASES: usize = 24;
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let gateway = start_gateway(&mesh, &[("GATEWAY_RATE_LIMIT", "100000")]).await;
    let admin = token(Role::Admin, "ops");
    let to_gateway = baemin::clients::channel(&gateway.url()).unwrap();
    let mut runner = TestRunner::deterministic();
    let bytes = vec(any::<u8>(), 0..48);
    let methods = every_method();
    assert!(methods.len() >= 20, "read the descriptors: {} methods", methods.len());
    for (svc, path, streaming) in methods {
        let direct = baemin::clients::channel(&format!("http://{}", mesh.addr(svc).unwrap())).unwrap();
        for _ in 0..CASES {
            let message = bytes.new_tree(&mut runner).expect("a value").current();
            for (route, channel, bearer) in [
                ("direct", direct.clone(), None),
                ("via gateway", to_gateway.clone(), Some(admin.as_str())),
            ] {
                let status = raw_any(channel, &path, streaming, message.clone(), bearer).await;
                let broken = matches!(status.code(), Code::Internal | Code::Unknown | Code::Unavailable)
                    || std::error::Error::source(&status).is_some();
                assert!(!broken, "{path} {route} {message:02x?}: {status:?}");
            }
        }
    }
    gateway.stop().await;
    mesh.stop().await;
}
