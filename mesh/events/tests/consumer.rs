//! The consumer against a real nats-server: an event whose handler keeps failing is tried exactly the
//! configured number of times, then dead-lettered with its reason; an unavailable dependency is retried
//! past that limit until it comes back; nothing is lost either way.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use baemin_mesh_store::Db;
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use baemin_mesh_events::{
    ConsumerMetrics, ConsumerSpec, Envelope, Event, EventBus, EventHandler, HandleError, StreamSettings, deadletter,
    new_envelope, spawn_consumer,
};
use baemin_mesh_telemetry::Metrics;
use baemin_mesh_testkit::{DbKind, NatsServer, TestDatabases};
use baemin_proto::events::v1::CallCancelled;
use prost::Message;
use sea_orm::{ConnectionTrait, Statement};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use tokio_util::sync::CancellationToken;

/// Fails each event transiently `outage` times (its database is down), then with a statement timeout
/// `timeouts` times, then `failures` times (transiently or not), then applies it; remembers what it
/// applied.
struct Flaky {
    outage: u32,
    timeouts: u32,
    failures: u32,
    transient: bool,
    tries: AtomicU32,
    applied: Mutex<Vec<String>>,
}

impl EventHandler for Flaky {
    async fn handle(&self, _subject: &str, envelope: Envelope) -> Result<(), HandleError> {
        let tried = self.tries.fetch_add(1, Ordering::SeqCst);
        if tried < self.outage {
            return Err(HandleError::Transient("the database is down".into()));
        }
        let tried = tried - self.outage;
        if tried < self.timeouts {
            return Err(HandleError::TimedOut(
                "canceling statement due to statement timeout".into(),
            ));
        }
        if tried - self.timeouts < self.failures {
            return Err(if self.transient {
                HandleError::Transient("the database is down".into())
            } else {
                HandleError::Failed("an unclassified error".into())
            });
        }
        self.applied.lock().unwrap().push(envelope.event_id);
        Ok(())
    }
}

const SUBJECT: &str = "baemin.events.call.cancelled";

/// A bus on a fresh nats-server, with the events stream.
async fn bus_on(nats: &NatsServer) -> EventBus {
    let bus = EventBus::connect(&nats.url(), "test").await.unwrap();
    bus.ensure_stream(&StreamSettings::default()).await.unwrap();
    bus
}

/// Publishes a CallCancelled of `call_id` with `reason` (the tests' marker); returns its event id.
async fn publish(bus: &EventBus, call_id: &str, reason: &str) -> String {
    let envelope = new_envelope(
        "test",
        call_id,
        Event::CallCancelled(CallCancelled { reason: reason.into() }),
    );
    bus.jetstream()
        .publish(SUBJECT, envelope.encode_to_vec().into())
        .await
        .unwrap()
        .await
        .unwrap();
    envelope.event_id
}

/// The failure counts' table, on a database of the test's own.
struct FailureCounts;

impl MigratorTrait for FailureCounts {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(baemin_mesh_events::failures::CreateEventFailures)]
    }
}

/// A database with the failure counts' table (removed with the returned guard).
async fn failure_counts() -> (TestDatabases, Db) {
    let mut dbs = TestDatabases::new(DbKind::Sqlite);
    let url = dbs.url_for("consumer").await;
    let db = baemin_mesh_store::connect::<FailureCounts>(&url, 2).await.unwrap();
    (dbs, db)
}

/// Runs a consumer of `spec` feeding `handler`, reporting into `metrics`, until the token is cancelled;
/// the last item keeps its database.
async fn consume<H: EventHandler>(
    bus: &EventBus,
    spec: ConsumerSpec,
    handler: &Arc<H>,
    metrics: &Metrics,
) -> (CancellationToken, tokio::task::JoinHandle<()>, (TestDatabases, Db)) {
    let (dbs, db) = failure_counts().await;
    let stop = CancellationToken::new();
    let task = spawn_consumer(
        bus,
        db.clone(),
        spec,
        Arc::clone(handler),
        ConsumerMetrics::new(metrics),
        stop.clone(),
    )
    .await
    .unwrap();
    (stop, task, (dbs, db))
}

async fn run(
    failures: u32,
    transient: bool,
    max_attempts: u32,
) -> (Arc<Flaky>, Vec<deadletter::DeadLetter>, String, Metrics) {
    run_after_outage(0, failures, transient, max_attempts).await
}

async fn run_timing_out(
    timeouts: u32,
    max_attempts: u32,
) -> (Arc<Flaky>, Vec<deadletter::DeadLetter>, String, Metrics) {
    run_handler(0, timeouts, 0, false, max_attempts).await
}

async fn run_after_outage(
    outage: u32,
    failures: u32,
    transient: bool,
    max_attempts: u32,
) -> (Arc<Flaky>, Vec<deadletter::DeadLetter>, String, Metrics) {
    run_handler(outage, 0, failures, transient, max_attempts).await
}

async fn run_handler(
    outage: u32,
    timeouts: u32,
    failures: u32,
    transient: bool,
    max_attempts: u32,
) -> (Arc<Flaky>, Vec<deadletter::DeadLetter>, String, Metrics) {
    let nats = NatsServer::start().await;
    let bus = bus_on(&nats).await;
    let handler = Arc::new(Flaky {
        outage,
        timeouts,
        failures,
        transient,
        tries: AtomicU32::new(0),
        applied: Mutex::new(Vec::new()),
    });
    let mut spec = ConsumerSpec::new("test", SUBJECT).with_max_attempts(max_attempts);
    spec.max_backoff = Duration::from_millis(20);
    let metrics = Metrics::new();
    let (stop, task, (_dbs, db)) = consume(&bus, spec, &handler, &metrics).await;
    let event_id = publish(&bus, "call-1", "x").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let dead = loop {
        let dead = deadletter::list(bus.jetstream()).await.unwrap();
        if !dead.is_empty() || !handler.applied.lock().unwrap().is_empty() {
            break dead;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the event was neither applied nor dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Let any wrong extra delivery show up before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    task.await.unwrap();
    // Applied or dead-lettered, the event is done with: no failure count is left for it.
    let left = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM event_failures",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(left, 0, "failure counts of events done with are forgotten");
    (handler, dead, event_id, metrics)
}

#[tokio::test]
async fn a_failing_event_is_tried_the_configured_number_of_times_then_dead_lettered_with_its_reason() {
    let (handler, dead, _, metrics) = run(u32::MAX, false, 3).await;
    assert_eq!(
        handler.tries.load(Ordering::SeqCst),
        3,
        "exactly the configured attempts"
    );
    assert!(handler.applied.lock().unwrap().is_empty());
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].delivered, 3);
    assert!(
        dead[0].reason.contains("failed 3 times") && dead[0].reason.contains("an unclassified error"),
        "{}",
        dead[0].reason
    );
    let text = metrics.encode();
    for line in [
        r#"baemin_events_processed_total{consumer="test__baemin_events_call_cancelled",outcome="retried"} 2"#,
        r#"baemin_events_processed_total{consumer="test__baemin_events_call_cancelled",outcome="dead_lettered"} 1"#,
        r#"baemin_events_redelivered_total{consumer="test__baemin_events_call_cancelled"} 2"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
}

#[tokio::test]
async fn a_failure_that_clears_within_the_attempts_is_applied_once() {
    let (handler, dead, id, _) = run(2, false, 3).await;
    assert!(dead.is_empty(), "{dead:?}");
    assert_eq!(*handler.applied.lock().unwrap(), vec![id]);
}

#[tokio::test]
async fn an_unavailable_dependency_is_retried_past_the_attempt_limit_and_nothing_is_dead_lettered() {
    let (handler, dead, id, _) = run(6, true, 2).await;
    assert!(dead.is_empty(), "{dead:?}");
    assert_eq!(handler.tries.load(Ordering::SeqCst), 7);
    assert_eq!(*handler.applied.lock().unwrap(), vec![id]);
}

#[tokio::test]
async fn a_statement_that_always_times_out_is_dead_lettered_after_ten_times_the_attempts_not_retried_for_ever() {
    let (handler, dead, _, _) = run_timing_out(u32::MAX, 2).await;
    assert_eq!(handler.tries.load(Ordering::SeqCst), 20);
    assert_eq!(dead.len(), 1);
    assert!(dead[0].reason.contains("failed 20 times"), "{}", dead[0].reason);
}

#[tokio::test]
async fn timeouts_do_not_use_up_the_attempts_of_other_failures() {
    // Fifteen timeouts (allowed: 20), then one unclassified failure (allowed: 2), then it applies.
    let (handler, dead, id, _) = run_handler(0, 15, 1, false, 2).await;
    assert!(
        dead.is_empty(),
        "each kind is counted against its own allowance: {dead:?}"
    );
    assert_eq!(*handler.applied.lock().unwrap(), vec![id]);
}

#[tokio::test]
async fn statement_timeouts_that_pass_within_their_allowance_are_applied_once() {
    let (handler, dead, id, _) = run_timing_out(5, 2).await;
    assert!(dead.is_empty(), "load passes: {dead:?}");
    assert_eq!(*handler.applied.lock().unwrap(), vec![id]);
}

#[tokio::test]
async fn deliveries_during_an_outage_do_not_count_toward_dead_lettering_only_the_handlers_failures_do() {
    // Six deliveries in all before the first real failure, with two allowed: applied on the next try.
    let (handler, dead, id, _) = run_after_outage(5, 1, false, 2).await;
    assert!(dead.is_empty(), "an outage's redeliveries are not failures: {dead:?}");
    assert_eq!(*handler.applied.lock().unwrap(), vec![id]);

    // A handler that keeps failing after the outage: dead-lettered after its own two failures.
    let (handler, dead, _, _) = run_after_outage(4, u32::MAX, false, 2).await;
    assert_eq!(handler.tries.load(Ordering::SeqCst), 4 + 2);
    assert_eq!(dead.len(), 1);
    assert!(dead[0].reason.contains("failed 2 times"), "{}", dead[0].reason);
    assert_eq!(dead[0].delivered, 6, "JetStream's count, kept for the record");
}

/// Takes a while per event and records, per call, the order it applied them in and how many it was
/// applying at once.
#[derive(Default)]
struct Slow {
    delay: Duration,
    in_flight: AtomicU32,
    most_at_once: AtomicU32,
    applied: Mutex<Vec<(String, String)>>,
}

impl EventHandler for Slow {
    async fn handle(&self, _subject: &str, envelope: Envelope) -> Result<(), HandleError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_at_once.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let Some(Event::CallCancelled(c)) = envelope.event else {
            return Err(HandleError::Rejected("unexpected event".into()));
        };
        self.applied.lock().unwrap().push((envelope.call_id, c.reason));
        Ok(())
    }
}

#[tokio::test]
async fn events_of_different_calls_apply_concurrently_and_each_calls_events_in_order() {
    const CALLS: usize = 16;
    const PER_CALL: usize = 5;
    let nats = NatsServer::start().await;
    let bus = bus_on(&nats).await;
    for step in 0..PER_CALL {
        for call in 0..CALLS {
            publish(&bus, &format!("call-{call}"), &step.to_string()).await;
        }
    }
    let handler = Arc::new(Slow {
        delay: Duration::from_millis(20),
        ..Slow::default()
    });
    let (stop, task, _db) = consume(&bus, ConsumerSpec::new("test", SUBJECT), &handler, &Metrics::new()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while handler.applied.lock().unwrap().len() < CALLS * PER_CALL {
        assert!(tokio::time::Instant::now() < deadline, "not every event was applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    task.await.unwrap();

    let applied = handler.applied.lock().unwrap().clone();
    for call in 0..CALLS {
        let call_id = format!("call-{call}");
        let steps: Vec<&str> = applied
            .iter()
            .filter(|(c, _)| *c == call_id)
            .map(|(_, step)| step.as_str())
            .collect();
        assert_eq!(steps, ["0", "1", "2", "3", "4"], "{call_id}'s events out of order");
    }
    let most = handler.most_at_once.load(Ordering::SeqCst);
    assert!(most > 1, "applied {most} at once; expected several lanes at work");
}

#[tokio::test]
async fn events_queued_when_a_consumer_stops_go_to_the_next_one_at_once_not_after_the_ack_wait() {
    const EVENTS: usize = 20;
    let nats = NatsServer::start().await;
    let bus = bus_on(&nats).await;
    // One call: every event in the same lane, most of them queued behind a slow first one.
    for step in 0..EVENTS {
        publish(&bus, "call-1", &step.to_string()).await;
    }
    let spec = || ConsumerSpec::new("test", SUBJECT);
    let first = Arc::new(Slow {
        delay: Duration::from_millis(300),
        ..Slow::default()
    });
    let (stop, task, _db) = consume(&bus, spec(), &first, &Metrics::new()).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.cancel();
    task.await.unwrap();
    let done_first = first.applied.lock().unwrap().len();
    assert!(
        done_first < EVENTS,
        "the first consumer applied everything before it stopped"
    );

    let restarted = tokio::time::Instant::now();
    let second = Arc::new(Slow::default());
    let (stop, task, _db) = consume(&bus, spec(), &second, &Metrics::new()).await;
    // Every event, counted once however often it came: a give-back is a nak, and JetStream may hand a
    // nak'ed event to the stopping consumer's pull request once more before it expires, which naks it
    // again — delivery is at least once, and the handlers' inbox is what applies each event once.
    let seen = || {
        let mut steps: Vec<usize> = first
            .applied
            .lock()
            .unwrap()
            .iter()
            .map(|(_, s)| s.parse().unwrap())
            .collect();
        steps.extend(
            second
                .applied
                .lock()
                .unwrap()
                .iter()
                .map(|(_, s)| s.parse::<usize>().unwrap()),
        );
        steps.sort_unstable();
        steps.dedup();
        steps
    };
    while seen().len() < EVENTS {
        assert!(
            restarted.elapsed() < Duration::from_secs(5),
            "the events the first consumer held came back only after its ack wait (10 s): {:?}",
            seen()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    task.await.unwrap();
    // None lost. (Not in order: a redelivered event comes after ones JetStream had not delivered yet —
    // the handlers' inbox and state checks are what make that safe.)
    assert_eq!(seen(), (0..EVENTS).collect::<Vec<_>>(), "every event applied");
}

/// Applies what a lane has queued as one unit; refuses a batch holding `refuse` (as a transaction
/// would fail whole), which then goes one by one.
#[derive(Default)]
struct Batching {
    refuse: Option<String>,
    refused: AtomicU32,
    batches: Mutex<Vec<usize>>,
    applied: Mutex<Vec<String>>,
}

impl EventHandler for Batching {
    const HANDLES_ALL: bool = true;

    async fn handle(&self, _subject: &str, envelope: Envelope) -> Result<(), HandleError> {
        let Some(Event::CallCancelled(c)) = envelope.event else {
            return Err(HandleError::Rejected("unexpected event".into()));
        };
        self.applied.lock().unwrap().push(c.reason);
        Ok(())
    }

    async fn handle_all(&self, events: &[(String, Envelope)]) -> Result<(), HandleError> {
        // The first batch takes a while, so the lane's queue fills behind it.
        let first = self.batches.lock().unwrap().is_empty();
        if first {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        self.batches.lock().unwrap().push(events.len());
        let reasons: Vec<String> = events
            .iter()
            .map(|(_, e)| match &e.event {
                Some(Event::CallCancelled(c)) => c.reason.clone(),
                _ => String::new(),
            })
            .collect();
        if self.refuse.as_ref().is_some_and(|r| reasons.contains(r)) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(HandleError::Failed("one of them cannot apply".into()));
        }
        self.applied.lock().unwrap().extend(reasons);
        Ok(())
    }
}

async fn consume_in_one_lane(handler: &Arc<Batching>, events: usize) -> Vec<String> {
    let nats = NatsServer::start().await;
    let bus = bus_on(&nats).await;
    for step in 0..events {
        publish(&bus, "call-1", &step.to_string()).await;
    }
    let spec = ConsumerSpec {
        lanes: 1,
        ..ConsumerSpec::new("test", SUBJECT)
    };
    let (stop, task, _db) = consume(&bus, spec, handler, &Metrics::new()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while handler.applied.lock().unwrap().len() < events {
        assert!(tokio::time::Instant::now() < deadline, "not every event was applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Acked: nothing comes again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    task.await.unwrap();
    handler.applied.lock().unwrap().clone()
}

#[tokio::test]
async fn a_lane_applies_the_events_it_has_queued_together_in_order_each_once() {
    let handler = Arc::new(Batching::default());
    let applied = consume_in_one_lane(&handler, 12).await;
    let expected: Vec<String> = (0..12).map(|n| n.to_string()).collect();
    assert_eq!(applied, expected);
    let batches = handler.batches.lock().unwrap().clone();
    assert!(
        batches.iter().any(|&n| n > 1),
        "no events applied together: {batches:?}"
    );
}

#[tokio::test]
async fn a_batch_that_fails_is_applied_one_by_one_instead() {
    let handler = Arc::new(Batching {
        refuse: Some("5".into()),
        ..Batching::default()
    });
    let applied = consume_in_one_lane(&handler, 12).await;
    let expected: Vec<String> = (0..12).map(|n| n.to_string()).collect();
    assert_eq!(applied, expected, "in order, each once");
    assert!(
        handler.refused.load(Ordering::SeqCst) > 0,
        "no batch held the refused event"
    );
}
