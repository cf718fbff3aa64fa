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
