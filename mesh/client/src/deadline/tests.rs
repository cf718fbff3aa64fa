use std::time::Duration;

use tower::{Service, ServiceExt};

use super::DeadlineLayer;

type Mock = tower_test::mock::Mock<http::Request<()>, &'static str>;
type Handle = tower_test::mock::Handle<http::Request<()>, &'static str>;

fn service() -> (super::Deadline<Mock>, Handle) {
    let (mock, handle) = tower_test::mock::pair();
    (
        tower::Layer::layer(&DeadlineLayer::new("payment", Duration::from_secs(2)), mock),
        handle,
    )
}

#[tokio::test(start_paused = true)]
async fn a_late_answer_becomes_deadline_exceeded_naming_the_dependency() {
    let (mut svc, mut handle) = service();
    let call = svc.ready().await.unwrap().call(http::Request::new(()));
    let _request = handle.next_request().await.unwrap();
    tokio::time::advance(Duration::from_millis(2001)).await;
    let err = call.await.unwrap_err();
    let status = err.downcast::<tonic::Status>().unwrap();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    assert!(status.message().contains("payment"));
}

#[tokio::test(start_paused = true)]
async fn an_answer_in_time_passes_through_and_the_server_is_told_the_budget() {
    let (mut svc, mut handle) = service();
    let call = svc.ready().await.unwrap().call(http::Request::new(()));
    let (request, respond) = handle.next_request().await.unwrap();
    assert_eq!(request.headers()["grpc-timeout"], "2000m");
    tokio::time::advance(Duration::from_millis(1999)).await;
    respond.send_response("ok");
    assert_eq!(call.await.unwrap(), "ok");
}

#[tokio::test(start_paused = true)]
async fn a_callers_tighter_deadline_wins_and_a_looser_one_is_replaced() {
    let (mut svc, mut handle) = service();
    let mut tight = http::Request::new(());
    tight
        .headers_mut()
        .insert("grpc-timeout", http::HeaderValue::from_static("100m"));
    let call = svc.ready().await.unwrap().call(tight);
    let (request, _respond) = handle.next_request().await.unwrap();
    assert_eq!(request.headers()["grpc-timeout"], "100m");
    tokio::time::advance(Duration::from_millis(101)).await;
    let status = call.await.unwrap_err().downcast::<tonic::Status>().unwrap();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded);

    let mut loose = http::Request::new(());
    loose
        .headers_mut()
        .insert("grpc-timeout", http::HeaderValue::from_static("1H"));
    let _call = svc.ready().await.unwrap().call(loose);
    let (request, _respond) = handle.next_request().await.unwrap();
    assert_eq!(
        request.headers()["grpc-timeout"],
        "2000m",
        "the server is told our budget"
    );
}
