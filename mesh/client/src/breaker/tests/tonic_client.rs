//! The breaker under a real tonic client, over a real channel (with and without a server).

use std::time::Duration;

use baemin_proto::payment::v1::{
    GetPaymentRequest, GetPaymentResponse, HoldCostRequest, HoldCostResponse, RegisterCostRequest,
    RegisterCostResponse, SettleRequest, SettleResponse, VoidCostRequest, VoidCostResponse,
    payment_service_client::PaymentServiceClient,
    payment_service_server::{PaymentService, PaymentServiceServer},
};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Code, Request, Response, Status, transport::Channel};
use tower::ServiceBuilder;

use super::config;
use crate::{
    breaker::{BreakerConfig, BreakerHandle, CircuitBreaker, CircuitBreakerLayer, GrpcClassifier, State},
    deadline::{Deadline, DeadlineLayer},
};

/// The stack the lead will compose: breaker outside, deadline inside, over a lazy channel.
fn client(
    url: String,
    config: BreakerConfig,
) -> (PaymentServiceClient<CircuitBreaker<Deadline<Channel>>>, BreakerHandle) {
    let breaker = CircuitBreakerLayer::new("payment", config, GrpcClassifier).unwrap();
    let handle = breaker.handle();
    let channel = Channel::from_shared(url).unwrap().connect_lazy();
    let stack = ServiceBuilder::new()
        .layer(breaker)
        .layer(DeadlineLayer::new("payment", Duration::from_secs(2)))
        .service(channel);
    (PaymentServiceClient::new(stack), handle)
}

fn register() -> RegisterCostRequest {
    RegisterCostRequest {
        call_id: "c-1".to_owned(),
        fee: 3000,
    }
}

#[tokio::test]
async fn a_tonic_client_sees_an_open_circuit_as_unavailable_naming_the_dependency() {
    // A port nobody listens on: every call is a transport error.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (mut payment, handle) = client(
        format!("http://{addr}"),
        BreakerConfig {
            minimum_calls: 2,
            ..config()
        },
    );
    for _ in 0..2 {
        let status = payment.register_cost(register()).await.unwrap_err();
        assert!(!status.message().contains("circuit"), "{status:?}");
    }
    assert_eq!(handle.state(), State::Open);
    let status = payment.register_cost(register()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.message().contains("payment circuit is open"), "{status:?}");
}

#[derive(Debug, Clone, Copy)]
struct FakePayment;

#[tonic::async_trait]
impl PaymentService for FakePayment {
    async fn register_cost(&self, _: Request<RegisterCostRequest>) -> Result<Response<RegisterCostResponse>, Status> {
        Ok(Response::new(RegisterCostResponse::default()))
    }

    async fn hold_cost(&self, _: Request<HoldCostRequest>) -> Result<Response<HoldCostResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }

    async fn settle(&self, _: Request<SettleRequest>) -> Result<Response<SettleResponse>, Status> {
        Err(Status::unavailable("database down"))
    }

    async fn void_cost(&self, _: Request<VoidCostRequest>) -> Result<Response<VoidCostResponse>, Status> {
        Err(Status::failed_precondition("already settled"))
    }

    async fn get_payment(&self, _: Request<GetPaymentRequest>) -> Result<Response<GetPaymentResponse>, Status> {
        Err(Status::not_found("no payment"))
    }
}

#[tokio::test]
async fn a_real_server_success_is_recorded_from_its_trailers_and_refusals_are_not_failures() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(PaymentServiceServer::new(FakePayment))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let (mut payment, handle) = client(
        format!("http://{addr}"),
        BreakerConfig {
            window_size: 100,
            minimum_calls: 100,
            ..config()
        },
    );

    payment.register_cost(register()).await.unwrap();
    let metrics = handle.metrics();
    assert_eq!(
        (metrics.buffered_calls, metrics.failed_calls),
        (1, 0),
        "a success has no grpc-status header: only the trailers tell"
    );

    let status = payment.get_payment(GetPaymentRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = payment.void_cost(VoidCostRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    let status = payment.settle(SettleRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    let metrics = handle.metrics();
    assert_eq!((metrics.buffered_calls, metrics.failed_calls), (4, 1));
}
