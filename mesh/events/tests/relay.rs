//! Relays of several replicas on one database: each outbox row is published by one relay at a time — the
//! lease holder's — and by another once the holder is gone. Against a real nats-server, on SQLite and
//! PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use baemin_mesh_store::Db;
use std::time::Duration;

use baemin_mesh_events::{Event, EventBus, Outbox, StreamSettings, new_envelope};
use baemin_mesh_telemetry::Metrics;
use baemin_mesh_testkit::{DbKind, NatsServer, TestDatabases};
use sea_orm_migration::{MigrationTrait, MigratorTrait};

struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(baemin_mesh_events::migration::CreateOutbox),
            Box::new(baemin_mesh_events::lease::CreateOutboxLease),
        ]
    }
}

async fn write_events(db: &Db, outbox: &Outbox, n: usize) {
    let txn = baemin_mesh_store::begin_write(db).await.unwrap();
    for i in 0..n {
        let envelope = new_envelope("test", &format!("call-{i}"), Event::CallCancelled(Default::default()));
        outbox.enqueue(&txn, &envelope).await.unwrap();
    }
    txn.commit().await.unwrap();
}

async fn one_relay_at_a_time_and_another_once_it_is_gone(kind: DbKind) {
    let nats = NatsServer::start().await;
    let bus = EventBus::connect(&nats.url(), "test").await.unwrap();
    bus.ensure_stream(&StreamSettings::default()).await.unwrap();
    let mut dbs = TestDatabases::new(kind);
    let url = dbs.url_for("relay").await;
    // Two replicas of one service: two connections to its database, a relay each.
    let (db_a, db_b) = (
        baemin_mesh_store::connect::<Migrator>(&url, 2).await.unwrap(),
        baemin_mesh_store::connect::<Migrator>(&url, 2).await.unwrap(),
    );
    let (outbox_a, outbox_b) = (Outbox::new(), Outbox::new());
    // Long enough that a loaded machine cannot let the holder's lease lapse between two steps below.
    let ttl = Duration::from_secs(2);
    let a = outbox_a
        .relay(db_a.clone(), bus.jetstream().clone(), &Metrics::new())
        .with_lease_ttl(ttl);
    let b = outbox_b
        .relay(db_b.clone(), bus.jetstream().clone(), &Metrics::new())
        .with_lease_ttl(ttl);

    // What waited out an outage: rows written through both replicas.
    write_events(&db_a, &outbox_a, 5).await;
    write_events(&db_b, &outbox_b, 5).await;
    let (first, second) = tokio::join!(a.relay_once(), b.relay_once());
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first + second, 10, "every row published once: {first} + {second}");
    assert!(first == 0 || second == 0, "by one relay only: {first} + {second}");
    let (holder, standby) = if first > 0 { (a, b) } else { (b, a) };
    write_events(&db_a, &outbox_a, 3).await;
    assert_eq!(
        standby.relay_once().await.unwrap(),
        0,
        "the standby waits while the holder lives"
    );
    assert_eq!(
        holder.relay_once().await.unwrap(),
        3,
        "the holder publishes every replica's rows"
    );

    // The holder dies; once its lease expires the standby takes over.
    drop(holder);
    write_events(&db_b, &outbox_b, 4).await;
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    assert_eq!(standby.relay_once().await.unwrap(), 4);

    // A holder that stops cleanly lets the lease go: a new relay (a rolling restart's) takes over at once.
    let stopped = tokio_util::sync::CancellationToken::new();
    stopped.cancel();
    standby.run(stopped).await;
    let successor = outbox_a
        .relay(db_a.clone(), bus.jetstream().clone(), &Metrics::new())
        .with_lease_ttl(ttl);
    write_events(&db_a, &outbox_a, 2).await;
    assert_eq!(
        successor.relay_once().await.unwrap(),
        2,
        "no wait for the lease to expire"
    );

    let mut stream = bus
        .jetstream()
        .get_stream(baemin_mesh_events::STREAM_NAME)
        .await
        .unwrap();
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        19,
        "every row reached the stream"
    );
}

#[tokio::test]
async fn sqlite_one_relay_at_a_time_and_another_once_it_is_gone() {
    one_relay_at_a_time_and_another_once_it_is_gone(DbKind::Sqlite).await;
}

#[tokio::test]
async fn postgres_one_relay_at_a_time_and_another_once_it_is_gone() {
    one_relay_at_a_time_and_another_once_it_is_gone(DbKind::Postgres).await;
}

async fn lease_expiry(db: &Db) -> i64 {
    use sea_orm::ConnectionTrait;
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT expires_at FROM outbox_lease",
        ))
        .await
        .unwrap()
        .expect("the lease row");
    row.try_get::<i64>("", "expires_at").unwrap()
}

#[tokio::test]
async fn a_relay_renews_its_lease_once_a_quarter_of_it_has_passed_not_for_every_batch() {
    let nats = NatsServer::start().await;
    let bus = EventBus::connect(&nats.url(), "test").await.unwrap();
    bus.ensure_stream(&StreamSettings::default()).await.unwrap();
    let mut dbs = TestDatabases::new(DbKind::Sqlite);
    let db = baemin_mesh_store::connect::<Migrator>(&dbs.url_for("renew").await, 1)
        .await
        .unwrap();
    let outbox = Outbox::new();

    let long = outbox
        .relay(db.clone(), bus.jetstream().clone(), &Metrics::new())
        .with_lease_ttl(Duration::from_secs(60));
    write_events(&db, &outbox, 2).await;
    assert_eq!(long.relay_once().await.unwrap(), 2);
    let taken = lease_expiry(&db).await;
    write_events(&db, &outbox, 1).await;
    assert_eq!(long.relay_once().await.unwrap(), 1);
    assert_eq!(
        lease_expiry(&db).await,
        taken,
        "no write for a batch early in the lease"
    );
    drop(long);

    let short = outbox
        .relay(db.clone(), bus.jetstream().clone(), &Metrics::new())
        .with_lease_ttl(Duration::from_millis(400));
    tokio::time::sleep(Duration::from_millis(100)).await;
    write_events(&db, &outbox, 1).await;
    // The first relay's lease is its own still (60 s): the second cannot take it.
    assert_eq!(short.relay_once().await.unwrap(), 0);
    // The first relay is gone without letting go: once its lease lapses the second takes it.
    sea_orm::ConnectionTrait::execute_unprepared(&db, "UPDATE outbox_lease SET expires_at = 0")
        .await
        .unwrap();
    assert_eq!(short.relay_once().await.unwrap(), 1, "the expired lease is taken");
    let taken = lease_expiry(&db).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    write_events(&db, &outbox, 1).await;
    assert_eq!(short.relay_once().await.unwrap(), 1);
    assert!(lease_expiry(&db).await > taken, "renewed past a quarter of the lease");
}
