//! The rider service as a process runs it: a real `nats-server`, a fresh SQLite or PostgreSQL database, a
//! fake payment service over gRPC. Calls come in through JetStream; events go out through the outbox.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use baemin_mesh_testkit::as_caller;
use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_nats::jetstream;
use baemin_mesh_testkit::{DbKind, NatsServer, RunningService, TestDatabases};
use baemin_proto::{
    events::v1::{CallCancelled, CallPlaced, Envelope, envelope::Event},
    payment::v1::{
        self as pay,
        payment_service_server::{PaymentService, PaymentServiceServer},
    },
    rider::v1::{self as pb, rider_service_client::RiderServiceClient},
};
use futures::StreamExt;
use prost::Message;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Code, Request, Response, Status, transport::Channel};
use tonic_types::{ErrorDetails, StatusExt};

/// How long anything asynchronous may take before a test gives up.
const PATIENCE: Duration = Duration::from_secs(10);

/// Payment that settles everything at 10 % commission, except the calls whose fee it voided or
/// settled with another rider, and except while it is down.
#[derive(Clone, Default)]
struct FakePayment {
    voided: Arc<Mutex<Vec<String>>>,
    settled_elsewhere: Arc<Mutex<Vec<String>>>,
    /// Answers UNAVAILABLE while set.
    down: Arc<AtomicBool>,
    /// Settle requests that reached it.
    settles: Arc<AtomicUsize>,
    /// Settle requests it answered with a settlement (riders paid: every test settles a call once).
    paid: Arc<AtomicUsize>,
}

/// A FAILED_PRECONDITION carrying payment's machine-readable reason, as payment answers.
fn refusal(reason: &str, message: &str) -> Status {
    Status::with_error_details(
        Code::FailedPrecondition,
        message,
        ErrorDetails::with_error_info(reason, baemin_proto::payment::reasons::DOMAIN, HashMap::new()),
    )
}

#[tonic::async_trait]
impl PaymentService for FakePayment {
    async fn register_cost(
        &self,
        _: Request<pay::RegisterCostRequest>,
    ) -> Result<Response<pay::RegisterCostResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }

    async fn hold_cost(
        &self,
        request: Request<pay::HoldCostRequest>,
    ) -> Result<Response<pay::HoldCostResponse>, Status> {
        let req = request.into_inner();
        if self.down.load(Ordering::SeqCst) {
            return Err(Status::unavailable("payment is restarting"));
        }
        if self.voided.lock().unwrap().contains(&req.call_id) {
            return Err(refusal(
                baemin_proto::payment::reasons::FEE_VOIDED,
                "the fee was voided",
            ));
        }
        Ok(Response::new(pay::HoldCostResponse {
            payment: Some(pay::Payment {
                call_id: req.call_id,
                fee: 3_000,
                status: pay::PaymentStatus::Registered as i32,
                rider_id: req.rider_id,
                ..Default::default()
            }),
        }))
    }

    async fn settle(&self, request: Request<pay::SettleRequest>) -> Result<Response<pay::SettleResponse>, Status> {
        let req = request.into_inner();
        self.settles.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(Status::unavailable("payment is restarting"));
        }
        if self.voided.lock().unwrap().contains(&req.call_id) {
            return Err(refusal(
                baemin_proto::payment::reasons::FEE_VOIDED,
                "the fee was voided",
            ));
        }
        if self.settled_elsewhere.lock().unwrap().contains(&req.call_id) {
            return Err(refusal(
                "SETTLED_WITH_ANOTHER_RIDER",
                "already settled with another rider",
            ));
        }
        self.paid.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(pay::SettleResponse {
            payment: Some(pay::Payment {
                call_id: req.call_id,
                fee: 3_000,
                status: pay::PaymentStatus::Settled as i32,
                rider_id: req.rider_id,
                commission: 300,
                rider_payout: 2_700,
                ..Default::default()
            }),
        }))
    }

    async fn void_cost(&self, _: Request<pay::VoidCostRequest>) -> Result<Response<pay::VoidCostResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }

    async fn get_payment(
        &self,
        _: Request<pay::GetPaymentRequest>,
    ) -> Result<Response<pay::GetPaymentResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }
}

async fn serve_payment(payment: FakePayment) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(PaymentServiceServer::new(payment))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    addr
}

/// The rider service with everything it talks to.
struct Harness {
    rider: RiderServiceClient<Channel>,
    jetstream: jetstream::Context,
    nats: async_nats::Client,
    payment: FakePayment,
    service: RunningService,
    _dbs: TestDatabases,
    _nats_server: NatsServer,
}

impl Harness {
    async fn start(kind: DbKind) -> Self {
        let nats_server = NatsServer::start().await;
        let payment = FakePayment::default();
        let payment_addr = serve_payment(payment.clone()).await;
        let mut dbs = TestDatabases::new(kind);
        // Repair rounds quickly, so a test sees the worker finish a settlement within its patience.
        let env = [
            ("DATABASE_URL", dbs.url_for("rider").await),
            ("NATS_URL", nats_server.url()),
            ("PAYMENT_URL", format!("http://{payment_addr}")),
            ("PAYMENT_DEADLINE", "500ms".to_owned()),
            ("RIDER_REPAIR_AFTER", "1s".to_owned()),
            ("RIDER_REPAIR_INTERVAL", "100ms".to_owned()),
        ];
        let service = RunningService::start::<baemin_rider::Application>(&env).await;
        let channel = Channel::from_shared(service.url()).unwrap().connect().await.unwrap();
        let nats = async_nats::connect(nats_server.url()).await.unwrap();
        Self {
            rider: RiderServiceClient::new(channel),
            jetstream: jetstream::new(nats.clone()),
            nats,
            payment,
            service,
            _dbs: dbs,
            _nats_server: nats_server,
        }
    }

    /// Publishes `event` about `call_id` as the call service's outbox relay does.
    async fn publish(&self, call_id: &str, event: Event) {
        let subject = baemin_proto::events::subject_of(&event);
        let envelope = Envelope {
            event_id: uuid::Uuid::now_v7().to_string(),
            occurred_at: Some(baemin_proto::time::from_millis(1_700_000_000_000)),
            call_id: call_id.to_owned(),
            producer: "call".into(),
            event: Some(event),
        };
        self.jetstream
            .publish(subject, envelope.encode_to_vec().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    /// Publishes a CallPlaced for a new call and waits until the rider service has it.
    async fn place(&self, restaurant: &str, fee: i64) -> String {
        let call_id = uuid::Uuid::now_v7().to_string();
        self.publish(&call_id, placed(restaurant, fee)).await;
        self.delivery_when(&call_id, |_| true).await;
        call_id
    }

    /// The delivery of `call_id` once it satisfies `ready`.
    async fn delivery_when(&self, call_id: &str, ready: impl Fn(&pb::Delivery) -> bool) -> pb::Delivery {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let found = self
                .rider
                .clone()
                .get_delivery(pb::GetDeliveryRequest {
                    call_id: call_id.to_owned(),
                })
                .await
                .ok()
                .and_then(|r| r.into_inner().delivery);
            if let Some(d) = found.filter(|d| ready(d)) {
                return d;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for call {call_id}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn stop(self) {
        self.service.stop().await;
    }
}

fn placed(restaurant: &str, fee: i64) -> Event {
    Event::CallPlaced(CallPlaced {
        restaurant_id: restaurant.into(),
        destination: "서울 강남구 테헤란로 1".into(),
        fee,
        ..CallPlaced::default()
    })
}

fn accept(call_id: &str, rider_id: &str) -> pb::AcceptCallRequest {
    pb::AcceptCallRequest {
        call_id: call_id.into(),
        rider_id: rider_id.into(),
    }
}

fn pick_up(call_id: &str, rider_id: &str) -> pb::PickUpRequest {
    pb::PickUpRequest {
        call_id: call_id.into(),
        rider_id: rider_id.into(),
    }
}

fn complete(call_id: &str, rider_id: &str) -> pb::CompleteDeliveryRequest {
    pb::CompleteDeliveryRequest {
        call_id: call_id.into(),
        rider_id: rider_id.into(),
    }
}

async fn a_delivery_goes_from_the_board_to_completed_and_is_announced(kind: DbKind) {
    let h = Harness::start(kind).await;
    let mut rider = h.rider.clone();
    let mut board = rider
        .watch_open_calls(pb::WatchOpenCallsRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut other_riders_board = rider
        .watch_open_calls(as_caller("rider", "rider-8", pb::WatchOpenCallsRequest {}))
        .await
        .unwrap()
        .into_inner();
    let mut completed = h.nats.subscribe("baemin.events.delivery.completed").await.unwrap();

    let call_id = h.place("store-1", 3_000).await;
    let opened = tokio::time::timeout(PATIENCE, board.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(opened.change(), pb::watch_open_calls_response::Change::Opened);
    assert_eq!(opened.call.unwrap().call_id, call_id);
    let open = rider
        .list_open_calls(pb::ListOpenCallsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(open.calls.len(), 1);
    assert_eq!(open.calls[0].destination, "서울 강남구 테헤란로 1");

    rider.accept_call(accept(&call_id, "rider-7")).await.unwrap();
    let closed = tokio::time::timeout(PATIENCE, board.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(closed.change(), pb::watch_open_calls_response::Change::Closed);
    // Another rider watching the board learns the call closed, not who took it or what it paid them.
    let mut seen_by_rider_8 = Vec::new();
    while seen_by_rider_8.len() < 2 {
        let item = tokio::time::timeout(PATIENCE, other_riders_board.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen_by_rider_8.push(item);
    }
    let notice = seen_by_rider_8[1].clone();
    assert_eq!(notice.change(), pb::watch_open_calls_response::Change::Closed);
    let notice = notice.call.unwrap();
    assert_eq!(notice.call_id, call_id);
    assert_eq!(
        notice.rider_id, "",
        "the taker is not named to other riders: {notice:?}"
    );
    let lost = rider.accept_call(accept(&call_id, "rider-8")).await.unwrap_err();
    assert_eq!(lost.code(), Code::FailedPrecondition);
    // A rider the gateway authenticated as rider-8 cannot act as rider-7 ...
    let impostor = as_caller("rider", "rider-8", pick_up(&call_id, "rider-7"));
    assert_eq!(
        rider.pick_up(impostor).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    // ... nor act on rider-7's delivery as itself.
    let bola = rider.pick_up(pick_up(&call_id, "rider-8")).await.unwrap_err();
    assert_eq!(bola.code(), Code::PermissionDenied);
    // ... nor read it: not by its call id, not by naming rider-7, and not in its own list.
    let get = as_caller(
        "rider",
        "rider-8",
        pb::GetDeliveryRequest {
            call_id: call_id.clone(),
        },
    );
    assert_eq!(
        rider.get_delivery(get).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let theirs = pb::ListDeliveriesRequest {
        rider_id: "rider-7".into(),
        ..Default::default()
    };
    let named = rider.list_deliveries(as_caller("rider", "rider-8", theirs)).await;
    assert_eq!(named.unwrap_err().code(), Code::PermissionDenied);
    let mine = rider
        .list_deliveries(as_caller("rider", "rider-8", pb::ListDeliveriesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(mine.deliveries.iter().all(|d| d.rider_id == "rider-8"), "{mine:?}");
    let own = as_caller(
        "rider",
        "rider-7",
        pb::GetDeliveryRequest {
            call_id: call_id.clone(),
        },
    );
    assert_eq!(
        rider
            .get_delivery(own)
            .await
            .unwrap()
            .into_inner()
            .delivery
            .unwrap()
            .rider_id,
        "rider-7"
    );
    rider.pick_up(pick_up(&call_id, "rider-7")).await.unwrap();
    let done = rider
        .complete_delivery(complete(&call_id, "rider-7"))
        .await
        .unwrap()
        .into_inner()
        .delivery
        .unwrap();
    assert_eq!((done.status(), done.payout), (pb::DeliveryStatus::Completed, 2_700));

    let message = tokio::time::timeout(PATIENCE, completed.next())
        .await
        .expect("DeliveryCompleted published by the outbox relay")
        .unwrap();
    let published = Envelope::decode(message.payload.as_ref()).unwrap();
    assert_eq!(
        (published.call_id.as_str(), published.producer.as_str()),
        (call_id.as_str(), "rider")
    );
    match published.event {
        Some(Event::DeliveryCompleted(e)) => assert_eq!(
            (e.rider_id.as_str(), e.fee, e.commission, e.rider_payout),
            ("rider-7", 3_000, 300, 2_700)
        ),
        other => panic!("expected DeliveryCompleted, got {other:?}"),
    }

    let mine = rider
        .list_deliveries(pb::ListDeliveriesRequest {
            rider_id: "rider-7".into(),
            status: pb::DeliveryStatus::Completed as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.deliveries.len(), 1);

    // Shutdown ends the watch stream, and the service stops cleanly while a watcher is connected.
    let stopping = tokio::spawn(h.stop());
    let ended = tokio::time::timeout(PATIENCE, async { while let Some(Ok(_)) = board.next().await {} }).await;
    assert!(ended.is_ok(), "the watch stream ends at shutdown");
    tokio::time::timeout(Duration::from_secs(30), stopping)
        .await
        .unwrap()
        .unwrap();
}

async fn cancellations_win_in_any_order(kind: DbKind) {
    let h = Harness::start(kind).await;
    let mut rider = h.rider.clone();
    let cancelled = || {
        Event::CallCancelled(CallCancelled {
            reason: "closed".into(),
        })
    };

    // The cancellation arrives before its call: the tombstone keeps the call off the board.
    let ghost = uuid::Uuid::now_v7().to_string();
    h.publish(&ghost, cancelled()).await;
    // The two subjects have independent consumers: wait for the tombstone to pin the order down.
    let tombstone = h.delivery_when(&ghost, |_| true).await;
    assert_eq!((tombstone.status(), tombstone.fee), (pb::DeliveryStatus::Cancelled, 0));
    h.publish(&ghost, placed("store-1", 1_000)).await;
    let d = h.delivery_when(&ghost, |d| d.fee == 1_000).await;
    assert_eq!(d.status(), pb::DeliveryStatus::Cancelled);
    let open = rider
        .list_open_calls(pb::ListOpenCallsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(open.calls.is_empty());

    // Both at once, in either order: the two consumers race to create the row, and still converge.
    let mut racing = Vec::new();
    for i in 0..6 {
        let call_id = uuid::Uuid::now_v7().to_string();
        if i % 2 == 0 {
            h.publish(&call_id, cancelled()).await;
            h.publish(&call_id, placed("store-1", 1_000)).await;
        } else {
            h.publish(&call_id, placed("store-1", 1_000)).await;
            h.publish(&call_id, cancelled()).await;
        }
        racing.push(call_id);
    }
    for call_id in &racing {
        h.delivery_when(call_id, |d| {
            d.fee == 1_000 && d.status() == pb::DeliveryStatus::Cancelled
        })
        .await;
    }

    // Cancelled after a rider accepted: the call service is the authority.
    let taken = h.place("store-1", 3_000).await;
    rider.accept_call(accept(&taken, "rider-1")).await.unwrap();
    h.publish(&taken, cancelled()).await;
    h.delivery_when(&taken, |d| d.status() == pb::DeliveryStatus::Cancelled)
        .await;
    let refused = rider.pick_up(pick_up(&taken, "rider-1")).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);

    // Payment voided the fee (the cancel won) before the rider picked up, and CallCancelled has not
    // arrived: the pick-up is refused and the delivery cancelled.
    let voided = h.place("store-2", 3_000).await;
    h.payment.voided.lock().unwrap().push(voided.clone());
    rider.accept_call(accept(&voided, "rider-9")).await.unwrap();
    let refused = rider.pick_up(pick_up(&voided, "rider-9")).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("cancelled"), "{}", refused.message());
    h.delivery_when(&voided, |d| d.status() == pb::DeliveryStatus::Cancelled)
        .await;

    // Any other refusal (settled with another rider) leaves the delivery as it is.
    let elsewhere = h.place("store-2", 3_000).await;
    h.payment.settled_elsewhere.lock().unwrap().push(elsewhere.clone());
    rider.accept_call(accept(&elsewhere, "rider-9")).await.unwrap();
    rider.pick_up(pick_up(&elsewhere, "rider-9")).await.unwrap();
    let refused = rider
        .complete_delivery(complete(&elsewhere, "rider-9"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let d = h.delivery_when(&elsewhere, |_| true).await;
    assert_eq!(d.status(), pb::DeliveryStatus::Picked, "not cancelled");
    h.stop().await;
}

async fn a_delivery_completed_while_payment_is_down_is_settled_once_by_the_repair_worker(kind: DbKind) {
    let h = Harness::start(kind).await;
    let mut rider = h.rider.clone();
    let mut completed = h.nats.subscribe("baemin.events.delivery.completed").await.unwrap();
    let call_id = h.place("store-4", 3_000).await;
    rider.accept_call(accept(&call_id, "rider-3")).await.unwrap();
    rider.pick_up(pick_up(&call_id, "rider-3")).await.unwrap();
    // A second delivery whose call gets cancelled (its fee voided) while payment is down.
    let voided = h.place("store-4", 3_000).await;
    rider.accept_call(accept(&voided, "rider-4")).await.unwrap();
    rider.pick_up(pick_up(&voided, "rider-4")).await.unwrap();

    h.payment.down.store(true, Ordering::SeqCst);
    for (id, who) in [(&call_id, "rider-3"), (&voided, "rider-4")] {
        let done = rider
            .complete_delivery(complete(id, who))
            .await
            .expect("the food was delivered: the delivery completes while payment is down")
            .into_inner()
            .delivery
            .unwrap();
        assert_eq!((done.status(), done.payout), (pb::DeliveryStatus::Completed, 0));
    }
    let message = tokio::time::timeout(PATIENCE, completed.next())
        .await
        .expect("DeliveryCompleted published")
        .unwrap();
    let first = Envelope::decode(message.payload.as_ref()).unwrap();
    match first.event {
        Some(Event::DeliveryCompleted(e)) => assert_eq!(
            (e.fee, e.commission, e.rider_payout, e.settlement_pending),
            (3_000, 0, 0, true),
            "settlement pending"
        ),
        other => panic!("expected DeliveryCompleted, got {other:?}"),
    }
    // The rider's retry (its answer lost) is answered with the pending completion (that it reaches no
    // payment is the domain tests'; the repair worker's Settles run meanwhile here).
    let again = rider
        .complete_delivery(complete(&call_id, "rider-3"))
        .await
        .unwrap()
        .into_inner()
        .delivery
        .unwrap();
    assert_eq!((again.status(), again.payout), (pb::DeliveryStatus::Completed, 0));

    // Payment returns saying the second fee was voided (the real one never voids a held fee; the rider
    // service follows payment all the same); nobody retries CompleteDelivery: the repair worker
    // settles the first once and cancels the second.
    h.payment.voided.lock().unwrap().push(voided.clone());
    h.payment.down.store(false, Ordering::SeqCst);
    let done = h.delivery_when(&call_id, |d| d.payout == 2_700).await;
    assert_eq!(done.status(), pb::DeliveryStatus::Completed);
    h.delivery_when(&voided, |d| d.status() == pb::DeliveryStatus::Cancelled)
        .await;
    assert!(h.payment.settles.load(Ordering::SeqCst) >= 4, "Settle was sent again");
    // A few more repair rounds: the recorded settlement is never sent again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.payment.paid.load(Ordering::SeqCst), 1, "paid exactly once");
    let mut completions = vec![first.call_id];
    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_millis(200), completed.next()).await {
        completions.push(Envelope::decode(message.payload.as_ref()).unwrap().call_id);
    }
    completions.sort();
    let mut expected = vec![call_id.clone(), voided.clone()];
    expected.sort();
    assert_eq!(
        completions, expected,
        "one DeliveryCompleted each, no second one when settled"
    );
    h.stop().await;
}

async fn a_watcher_is_told_to_watch_again_when_the_service_drains(kind: DbKind) {
    let h = Harness::start(kind).await;
    let mut board = h
        .rider
        .clone()
        .watch_open_calls(pb::WatchOpenCallsRequest {})
        .await
        .unwrap()
        .into_inner();
    let call_id = h.place("store-5", 1_000).await;
    let opened = tokio::time::timeout(PATIENCE, board.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(opened.call.unwrap().call_id, call_id);
    let stopping = tokio::spawn(h.stop());
    let last = tokio::time::timeout(PATIENCE, board.next())
        .await
        .expect("the stream ends when draining starts")
        .expect("a last status")
        .unwrap_err();
    assert_eq!(last.code(), Code::Unavailable);
    assert_eq!(last.message(), "the rider service is shutting down; watch again");
    tokio::time::timeout(Duration::from_secs(30), stopping)
        .await
        .unwrap()
        .unwrap();
}

async fn of_ten_riders_racing_over_grpc_exactly_one_wins(kind: DbKind) {
    let h = Harness::start(kind).await;
    let call_id = h.place("store-3", 5_000).await;
    let attempts = (0..10).map(|i| {
        let mut rider = h.rider.clone();
        let call_id = call_id.clone();
        tokio::spawn(async move {
            let rider_id = format!("racer-{i}");
            let outcome = rider.accept_call(accept(&call_id, &rider_id)).await;
            (rider_id, outcome)
        })
    });
    let mut winners = Vec::new();
    for attempt in futures::future::join_all(attempts).await {
        match attempt.unwrap() {
            (rider_id, Ok(_)) => winners.push(rider_id),
            (_, Err(status)) => assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let d = h.delivery_when(&call_id, |_| true).await;
    assert_eq!(d.rider_id, winners[0]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_delivery_goes_from_the_board_to_completed_and_is_announced() {
    a_delivery_goes_from_the_board_to_completed_and_is_announced(DbKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_delivery_goes_from_the_board_to_completed_and_is_announced() {
    a_delivery_goes_from_the_board_to_completed_and_is_announced(DbKind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_cancellations_win_in_any_order() {
    cancellations_win_in_any_order(DbKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cancellations_win_in_any_order() {
    cancellations_win_in_any_order(DbKind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_of_ten_riders_racing_over_grpc_exactly_one_wins() {
    of_ten_riders_racing_over_grpc_exactly_one_wins(DbKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_of_ten_riders_racing_over_grpc_exactly_one_wins() {
    of_ten_riders_racing_over_grpc_exactly_one_wins(DbKind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_delivery_completed_while_payment_is_down_is_settled_once_by_the_repair_worker() {
    a_delivery_completed_while_payment_is_down_is_settled_once_by_the_repair_worker(DbKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_delivery_completed_while_payment_is_down_is_settled_once_by_the_repair_worker() {
    a_delivery_completed_while_payment_is_down_is_settled_once_by_the_repair_worker(DbKind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_watcher_is_told_to_watch_again_when_the_service_drains() {
    a_watcher_is_told_to_watch_again_when_the_service_drains(DbKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_watcher_is_told_to_watch_again_when_the_service_drains() {
    a_watcher_is_told_to_watch_again_when_the_service_drains(DbKind::Postgres).await;
}
