//! The pruning task as the runtime runs it: on its interval it deletes published outbox rows past their
//! retention and exports both tables' sizes; it leaves inbox rows alone until its replica has been
//! connected to NATS for the warm-up.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use baemin_mesh_store::Db;
use std::time::Duration;

use baemin_mesh_events::retention::{self, Retention};
use baemin_mesh_telemetry::Metrics;
use baemin_mesh_testkit::{DbKind, NatsServer, TestDatabases};
use sea_orm::ConnectionTrait;
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use tokio_util::sync::CancellationToken;

struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(baemin_mesh_events::migration::CreateOutbox),
            Box::new(baemin_mesh_events::migration::CreateInbox),
        ]
    }
}

async fn exec(db: &Db, sql: &str) {
    db.execute_unprepared(sql).await.unwrap();
}

#[tokio::test]
async fn the_running_task_prunes_published_outbox_rows_exports_sizes_and_keeps_inbox_rows_until_warm() {
    let nats = NatsServer::start().await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut dbs = TestDatabases::new(DbKind::Sqlite);
    let db = baemin_mesh_store::connect::<Migrator>(&dbs.url_for("retention").await, 1)
        .await
        .unwrap();
    // Published an hour and a half ago, published just now, never published; an inbox row a year old.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let ago = |secs: i64| now - secs * 1_000;
    exec(
        &db,
        &format!(
            "INSERT INTO outbox_events (event_id, subject, payload, created_at, published_at) VALUES \
         ('old', 's', x'00', 0, {}), ('new', 's', x'00', 0, {}), ('unsent', 's', x'00', 0, NULL)",
            ago(5_400),
            ago(1)
        ),
    )
    .await;
    exec(
        &db,
        &format!(
            "INSERT INTO inbox_events (event_id, subject, processed_at) VALUES ('applied', 's', {})",
            ago(365 * 86_400)
        ),
    )
    .await;

    let metrics = Metrics::new();
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let (db, metrics, stop) = (db.clone(), metrics.clone(), stop.clone());
        async move {
            retention::run(
                db,
                client,
                Retention::default(),
                true,
                Duration::from_millis(50),
                &metrics,
                stop,
            )
            .await;
        }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = metrics.encode();
        if text.lines().any(|l| l == "baemin_outbox_rows 2") {
            break text;
        }
        assert!(tokio::time::Instant::now() < deadline, "no pruning seen:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.cancel();
    task.await.unwrap();
    for line in [
        "baemin_inbox_rows 1",
        "baemin_outbox_pruned_total 1",
        "baemin_inbox_pruned_total 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    let left: i64 = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM inbox_events",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "n")
        .unwrap();
    assert_eq!(left, 1, "not before the replica has pulled for the warm-up");
}
