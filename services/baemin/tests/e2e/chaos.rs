//! Chaos: load on the mesh, a fault injected and recovered, then a ledger check — every PlaceCall that
//! answered OK is in the report with its right final state, nothing appears that was never placed, every
//! completed delivery is settled exactly once, revenue equals the sum of commissions. Each scenario prints
//! its ledger figures. Every service runs as its own `baemin serve` process; "killed" is SIGKILL.

use std::time::Duration;

use baemin_mesh_testkit::DbKind;
use baemin_proto::call::v1 as call;

use crate::{
    ledger::Ledger,
    support::{QUICK_REPAIRS, Svc, TestMesh, request_id},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_rider_killed_and_restarted_mid_flow_loses_nothing() {
    let mut mesh = TestMesh::processes(DbKind::Sqlite, &[]).await;
    let clients = mesh.clients.clone();
    let mut ledger = Ledger::default();
    let first = ledger.place(&clients, 8).await;
    ledger.deliver(&clients, &first[..5]).await;
    // Three deliveries under way (accepted, picked up) and new calls still arriving when it dies.
    for (id, rider_id) in first[5..].iter().zip(["r-a", "r-b", "r-c"]) {
        ledger.pick(&clients, id, rider_id).await;
    }
    ledger.offer(&clients, 5).await;
    mesh.kill_service(Svc::Rider).await;
    ledger.offer(&mesh.clients, 10).await;
    assert_eq!(
        ledger.refused, 0,
        "the call service keeps taking calls while the rider service is down"
    );
    mesh.start_service(Svc::Rider).await;
    // The deliveries under way finish with their riders; the rider service caught up on the rest.
    for (id, rider_id) in first[5..].iter().zip(["r-a", "r-b", "r-c"]) {
        ledger.complete(&mesh.clients, id, rider_id).await;
    }
    ledger.complete_all(&mesh.clients).await;
    ledger.check("rider killed", &mesh).await;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_report_killed_and_restarted_converges() {
    let mut mesh = TestMesh::processes(DbKind::Sqlite, &[]).await;
    let mut ledger = Ledger::default();
    ledger.offer(&mesh.clients, 10).await;
    mesh.kill_service(Svc::Report).await;
    ledger.complete_all(&mesh.clients).await;
    ledger.offer(&mesh.clients, 10).await;
    mesh.start_service(Svc::Report).await;
    ledger.check("report killed", &mesh).await;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_nats_killed_and_restarted_mid_load_drains_the_outbox_and_loses_nothing() {
    let mut mesh = TestMesh::processes(DbKind::Sqlite, &[]).await;
    let mut ledger = Ledger::default();
    ledger.offer(&mesh.clients, 10).await;
    ledger.complete_all(&mesh.clients).await;
    mesh.nats.stop();
    // PlaceCall needs only payment and the call database: it goes on; the events wait in the outbox.
    ledger.offer(&mesh.clients, 10).await;
    assert_eq!(ledger.refused, 0, "calls are taken while NATS is down");
    tokio::time::sleep(Duration::from_millis(500)).await;
    mesh.nats.restart().await;
    ledger.complete_all(&mesh.clients).await;
    ledger.check("nats killed", &mesh).await;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_payment_killed_opens_the_breaker_rejects_fast_and_recovers_through_half_open() {
    let mut settings = vec![
        ("PLACE_CALL_FALLBACK", "reject"),
        ("PAYMENT_BREAKER_MINIMUM_CALLS", "5"),
        ("PAYMENT_BREAKER_WINDOW_SIZE", "10"),
        ("PAYMENT_BREAKER_OPEN_WAIT", "1s"),
        ("PAYMENT_BREAKER_HALF_OPEN_CALLS", "1"),
    ];
    settings.extend(QUICK_REPAIRS);
    let mut mesh = TestMesh::processes(DbKind::Sqlite, &settings).await;
    let mut ledger = Ledger::default();
    ledger.offer(&mesh.clients, 5).await;
    ledger.complete_all(&mesh.clients).await;
    mesh.kill_service(Svc::Payment).await;
    // `reject`: every PlaceCall is UNAVAILABLE; once the window judged, the breaker answers without
    // touching the network.
    let mut refusals = Vec::new();
    for _ in 0..20 {
        let mut c = mesh.clients.call.clone();
        let started = std::time::Instant::now();
        let status = c
            .place_call(call::PlaceCallRequest {
                request_id: request_id(),
                restaurant_id: "chaos".into(),
                destination: "Seoul".into(),
                fee: 1_000,
            })
            .await
            .expect_err("payment is down");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        refusals.push((started.elapsed(), status.message().to_owned()));
    }
    let open: Vec<_> = refusals.iter().filter(|(_, m)| m.contains("circuit is open")).collect();
    assert!(open.len() >= 10, "the breaker opened within the window: {refusals:?}");
    let mut fast: Vec<Duration> = open.iter().map(|(d, _)| *d).collect();
    fast.sort();
    println!(
        "payment down, reject: {} refusals, {} by the open breaker, fail-fast p50 {:?} max {:?}",
        refusals.len(),
        open.len(),
        fast[fast.len() / 2],
        fast[fast.len() - 1]
    );
    // Payment returns; after the open wait one trial call closes the circuit and calls flow again.
    mesh.start_service(Svc::Payment).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    ledger.offer(&mesh.clients, 5).await;
    assert_eq!(ledger.refused, 0, "calls are taken again once payment is back");
    ledger.complete_all(&mesh.clients).await;
    ledger.check("payment killed (reject)", &mesh).await;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_payment_killed_with_defer_keeps_accepting_and_settles_everything_once_when_it_returns() {
    let mut settings = vec![("PLACE_CALL_FALLBACK", "defer"), ("PAYMENT_BREAKER_OPEN_WAIT", "1s")];
    settings.extend(QUICK_REPAIRS);
    let mut mesh = TestMesh::processes(DbKind::Sqlite, &settings).await;
    let mut ledger = Ledger::default();
    ledger.offer(&mesh.clients, 5).await;
    ledger.complete_all(&mesh.clients).await;
    // Picked up while payment is up: payment holds their fees for their riders.
    let on_the_road = ledger.place(&mesh.clients, 3).await;
    for (n, id) in on_the_road.iter().enumerate() {
        ledger.pick(&mesh.clients, id, &format!("r-{n}")).await;
    }
    mesh.kill_service(Svc::Payment).await;
    // `defer`: calls are taken with their fee pending, and deliveries picked up before the outage
    // complete with their settlement pending. (A pick-up waits for payment: it decides against a cancel.)
    ledger.offer(&mesh.clients, 10).await;
    assert_eq!(ledger.refused, 0, "defer keeps accepting while payment is down");
    for (n, id) in on_the_road.iter().enumerate() {
        ledger.complete(&mesh.clients, id, &format!("r-{n}")).await;
    }
    let mut c = mesh.clients.call.clone();
    let pending = c
        .list_calls(call::ListCallsRequest {
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .calls
        .into_iter()
        .filter(|x| x.payment_state() == call::PaymentState::Pending)
        .count();
    assert!(
        pending > 0,
        "calls placed while payment was down show their fee pending"
    );
    mesh.start_service(Svc::Payment).await;
    // The workers register every deferred fee and settle every deferred settlement, each exactly once;
    // the calls taken during the outage are picked up and delivered now.
    ledger.complete_all(&mesh.clients).await;
    ledger.check("payment killed (defer)", &mesh).await;
    mesh.stop().await;
}

/// Deliveries picked up, then payment killed while restaurants cancel them (the call service has not
/// learned of the pick-ups: NATS is stopped too) and riders complete them: every cancel is UNAVAILABLE
/// (payment must decide; never OK), every completion OK; once payment and NATS are back the repair
/// workers race, and the pick-ups — held at payment first — win: every delivery completed and settled
/// exactly once, none cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_payment_killed_with_cancels_pending_over_picked_up_deliveries_settles_each_once_and_cancels_none() {
    let mut settings = vec![("PAYMENT_BREAKER_OPEN_WAIT", "1s")];
    settings.extend(QUICK_REPAIRS);
    let mut mesh = TestMesh::processes(DbKind::Postgres, &settings).await;
    let mut ledger = Ledger::default();
    let ids = ledger.place(&mesh.clients, 6).await;
    for id in &ids {
        crate::ledger::wait_for_rider_service(&mesh.clients, id).await;
    }
    mesh.nats.stop();
    for (n, id) in ids.iter().enumerate() {
        ledger.pick(&mesh.clients, id, &format!("r-{n}")).await;
    }
    mesh.kill_service(Svc::Payment).await;
    for (n, id) in ids.iter().enumerate() {
        let refused = mesh
            .clients
            .call
            .clone()
            .cancel_call(call::CancelCallRequest {
                call_id: id.clone(),
                reason: "the customer left".into(),
            })
            .await
            .expect_err("payment must decide the cancel");
        assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
        ledger.complete(&mesh.clients, id, &format!("r-{n}")).await;
    }
    mesh.nats.restart().await;
    mesh.start_service(Svc::Payment).await;
    ledger
        .check("payment killed, cancels pending over picked-up deliveries", &mesh)
        .await;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_payment_slow_opens_the_breaker_on_slow_calls_and_deadlines_hold() {
    let settings = [
        ("PLACE_CALL_FALLBACK", "reject"),
        ("PAYMENT_DEADLINE", "1s"),
        ("CALL_REPAIR_AFTER", "2s"),
        ("CALL_REPAIR_INTERVAL", "200ms"),
        ("RIDER_REPAIR_AFTER", "2s"),
        ("RIDER_REPAIR_INTERVAL", "200ms"),
        ("PAYMENT_BREAKER_SLOW_CALL_DURATION", "150ms"),
        ("PAYMENT_BREAKER_SLOW_CALL_RATE", "80"),
        ("PAYMENT_BREAKER_MINIMUM_CALLS", "4"),
        ("PAYMENT_BREAKER_WINDOW_SIZE", "4"),
        ("PAYMENT_BREAKER_OPEN_WAIT", "1s"),
        ("PAYMENT_BREAKER_HALF_OPEN_CALLS", "1"),
    ];
    let mut mesh = TestMesh::processes(DbKind::Sqlite, &settings).await;
    let proxy = baemin_mesh_testkit::SlowProxy::start(mesh.addr(Svc::Payment).expect("payment runs")).await;
    mesh.set("PAYMENT_URL", proxy.url());
    mesh.stop_service(Svc::Call).await;
    mesh.start_service(Svc::Call).await;
    let mut ledger = Ledger::default();
    ledger.offer(&mesh.clients, 4).await;
    assert_eq!(ledger.refused, 0);
    // Payment answers, but slowly: beyond the slow-call threshold, within the deadline.
    proxy.set_delay(Duration::from_millis(300));
    let mut latencies = Vec::new();
    let mut fast_refusals = 0;
    for _ in 0..12 {
        let started = std::time::Instant::now();
        let placed = ledger.try_place(&mesh.clients).await;
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(1_500),
            "the payment deadline holds: {took:?}"
        );
        match placed {
            Ok(_) => {}
            Err(status) if status.message().contains("circuit is open") => fast_refusals += 1,
            // Slow calls before the window judged may still time out; they are not the breaker's doing.
            Err(status) => assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}"),
        }
        latencies.push(took);
    }
    assert!(fast_refusals >= 5, "the breaker opened on slow calls: {latencies:?}");
    // While it is open, payment receives nothing: not a byte goes through the proxy.
    let sent = proxy.bytes_to_upstream();
    ledger.offer(&mesh.clients, 3).await;
    assert_eq!(
        proxy.bytes_to_upstream(),
        sent,
        "an open breaker does not touch the network"
    );
    println!(
        "payment slow: {fast_refusals} of 12 refused by the open breaker (UNAVAILABLE, circuit open); latencies {latencies:?}"
    );
    // Latency gone: after the open wait a trial call closes the circuit again.
    proxy.set_delay(Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let refused_before = ledger.refused;
    ledger.offer(&mesh.clients, 4).await;
    assert_eq!(ledger.refused, refused_before, "calls flow again once payment is fast");
    ledger.complete_all(&mesh.clients).await;
    ledger.check("payment slow", &mesh).await;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_call_service_sigkilled_between_commit_and_publish_publishes_once_after_restart() {
    let mut mesh = TestMesh::processes(DbKind::Sqlite, &[]).await;
    let mut ledger = Ledger::default();
    ledger.offer(&mesh.clients, 5).await;
    // NATS down: the next calls commit with their events in the outbox, unpublished...
    mesh.nats.stop();
    ledger.offer(&mesh.clients, 5).await;
    assert_eq!(ledger.refused, 0);
    // ...and the process dies before it can publish them.
    mesh.kill_service(Svc::Call).await;
    mesh.nats.restart().await;
    mesh.start_service(Svc::Call).await;
    ledger.check("call SIGKILLed before publish", &mesh).await;
    // Published exactly once: the stream holds one CallPlaced per call.
    let client = async_nats::connect(mesh.nats.url()).await.unwrap();
    let stream = async_nats::jetstream::new(client)
        .get_stream(baemin_mesh_events::STREAM_NAME)
        .await
        .unwrap();
    let counter = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: "baemin.events.call.placed".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let pending = counter.cached_info().num_pending;
    println!(
        "call.placed events in the stream: {pending} for {} calls",
        ledger.placed.len()
    );
    assert_eq!(pending, ledger.placed.len() as u64, "each CallPlaced published once");
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_every_event_delivered_again_twice_in_reverse_order_changes_nothing() {
    let mesh = TestMesh::processes(DbKind::Sqlite, &[]).await;
    let mut ledger = Ledger::default();
    ledger.offer(&mesh.clients, 10).await;
    ledger.complete_all(&mesh.clients).await;
    ledger.offer(&mesh.clients, 3).await;
    // Everything the services published, re-published twice, newest first and without Nats-Msg-Id (so
    // the broker cannot dedupe): every consumer sees each event three times, mostly out of order.
    let jetstream = async_nats::jetstream::new(async_nats::connect(mesh.nats.url()).await.unwrap());
    let published = stream_messages(&jetstream).await;
    for _ in 0..2 {
        for (subject, payload) in published.iter().rev() {
            jetstream
                .publish(subject.clone(), payload.clone())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    }
    wait_consumed(&jetstream).await;
    println!("redelivered: {} events, each twice more, newest first", published.len());
    ledger.check("duplicates and reordering", &mesh).await;
    mesh.stop().await;
}

/// Every message of the events stream, in order.
async fn stream_messages(jetstream: &async_nats::jetstream::Context) -> Vec<(String, bytes::Bytes)> {
    use futures::StreamExt;
    let stream = jetstream.get_stream(baemin_mesh_events::STREAM_NAME).await.unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let total = consumer.cached_info().num_pending as usize;
    let mut messages = consumer.messages().await.unwrap();
    let mut out = Vec::with_capacity(total);
    while out.len() < total {
        let message = messages.next().await.unwrap().unwrap();
        out.push((message.subject.to_string(), message.payload.clone()));
    }
    out
}

/// Waits until every service's durable consumer (`<service>__<subject>`) has acknowledged everything.
async fn wait_consumed(jetstream: &async_nats::jetstream::Context) {
    let deadline = std::time::Instant::now() + crate::support::PATIENCE;
    loop {
        let (_, lags) = baemin_mesh_events::consumer_lag(jetstream).await.unwrap();
        let durables = lags.iter().filter(|l| l.name.contains("__"));
        if durables.clone().all(|l| l.pending == 0 && l.ack_pending == 0) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "consumers still behind: {lags:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
