//! Keeping the outbox and inbox tables bounded: rows that can no longer matter are deleted, and the
//! sizes of both tables are exported as metrics.
//!
//! - **Outbox.** A published row is never published again (the relay only sends unpublished rows), so it
//!   matters to nobody once published; it is kept `OUTBOX_RETENTION` (default 1 h) for whoever looks at
//!   recent traffic in the table, then deleted.
//! - **Inbox.** A row makes a redelivered event apply nothing. An event applied and acknowledged comes
//!   again only while it is pending on its durable consumer (the acknowledgement was lost), and
//!   JetStream redelivers a pending event `EVENT_ACK_WAIT` after it was handed out whenever any replica
//!   pulls. So a row older than `INBOX_RETENTION` (default 7 days) is deleted only by a replica that has
//!   itself been connected to NATS, pulling, for [`warm_up`] without a break — long enough for every
//!   such redelivery to have happened (after an outage of every replica, or of NATS, the pending
//!   events come at once). The bound: an inbox row
//!   lives at least `INBOX_RETENTION` and at least the warm-up of a running replica after it; a dead
//!   letter redriven later than `INBOX_RETENTION` after a consumer applied it reaches that consumer as
//!   new, where the domain's handlers converge under duplicates (their second line of defence).
//!
//! Deletes go in batches, so a large backlog of old rows never holds a long transaction.

use baemin_mesh_store::Db;
use std::time::Duration;

use baemin_mesh_telemetry::{Gauge, Metrics};
use sea_orm::{ConnectionTrait, DbErr, Statement};
use tokio_util::sync::CancellationToken;

use crate::envelope::now_millis;

/// Rows deleted per statement.
const BATCH: u64 = 5_000;

/// How long each table keeps what no longer matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Published outbox rows are kept this long after publication.
    pub outbox: Duration,
    /// Inbox rows are kept at least this long after their event was applied.
    pub inbox: Duration,
    /// JetStream's ack wait of the service's consumers (`EVENT_ACK_WAIT`).
    pub ack_wait: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            outbox: Duration::from_secs(3_600),
            inbox: Duration::from_secs(7 * 86_400),
            ack_wait: Duration::from_secs(10),
        }
    }
}

/// How long a replica pulls before it deletes inbox rows: any event pending on its consumer has been
/// redelivered by then (ten ack waits, at least ten minutes).
pub fn warm_up(ack_wait: Duration) -> Duration {
    (ack_wait * 10).max(Duration::from_secs(600))
}

/// What one pruning pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Published outbox rows.
    pub outbox: u64,
    /// Inbox rows.
    pub inbox: u64,
}

/// Deletes published outbox rows published before `now - retention.outbox` and, with `inbox`, inbox rows
/// applied before `now - retention.inbox`.
pub async fn prune_once<C: ConnectionTrait>(
    db: &C,
    retention: &Retention,
    inbox: bool,
    now: i64,
) -> Result<Pruned, DbErr> {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let outbox_cutoff = now.saturating_sub(ms(retention.outbox));
    let mut pruned = Pruned {
        outbox: delete_batched(
            db,
            "DELETE FROM outbox_events WHERE id IN (SELECT id FROM outbox_events \
             WHERE published_at IS NOT NULL AND published_at < $1 ORDER BY id LIMIT $2)",
            outbox_cutoff,
        )
        .await?,
        inbox: 0,
    };
    if inbox {
        let inbox_cutoff = now.saturating_sub(ms(retention.inbox));
        pruned.inbox = delete_batched(
            db,
            "DELETE FROM inbox_events WHERE event_id IN (SELECT event_id FROM inbox_events \
             WHERE processed_at < $1 LIMIT $2)",
            inbox_cutoff,
        )
        .await?;
    }
    Ok(pruned)
}

async fn delete_batched<C: ConnectionTrait>(db: &C, sql: &str, cutoff: i64) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    let mut total = 0;
    loop {
        let limit = i64::try_from(BATCH).unwrap_or(i64::MAX);
        let sql = match backend {
            sea_orm::DatabaseBackend::Postgres => sql.to_owned(),
            _ => sql.replace("$1", "?").replace("$2", "?"),
        };
        let deleted = db
            .execute_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [cutoff.into(), limit.into()],
            ))
            .await?
            .rows_affected();
        total += deleted;
        if deleted < BATCH {
            return Ok(total);
        }
    }
}

/// Rows in the outbox and, with `inbox`, the inbox.
pub async fn sizes<C: ConnectionTrait>(db: &C, inbox: bool) -> Result<(u64, Option<u64>), DbErr> {
    let outbox = count(db, "SELECT COUNT(*) AS n FROM outbox_events").await?;
    let inbox = if inbox {
        Some(count(db, "SELECT COUNT(*) AS n FROM inbox_events").await?)
    } else {
        None
    };
    Ok((outbox, inbox))
}

async fn count<C: ConnectionTrait>(db: &C, sql: &str) -> Result<u64, DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql.to_owned()))
        .await?;
    let n: i64 = row.map(|r| r.try_get("", "n")).transpose()?.unwrap_or(0);
    Ok(u64::try_from(n).unwrap_or(0))
}

/// `baemin_outbox_rows`, `baemin_inbox_rows`, `baemin_events_pruned_total{table}`.
struct RetentionMetrics {
    outbox_rows: Gauge,
    inbox_rows: Gauge,
    outbox_pruned: baemin_mesh_telemetry::Counter,
    inbox_pruned: baemin_mesh_telemetry::Counter,
}

impl RetentionMetrics {
    fn new(metrics: &Metrics) -> Self {
        Self {
            outbox_rows: metrics.gauge("outbox_rows", "Rows in the outbox table, published or not"),
            inbox_rows: metrics.gauge(
                "inbox_rows",
                "Rows in the inbox table (events applied, kept for dedupe)",
            ),
            outbox_pruned: metrics.counter("outbox_pruned", "Published outbox rows deleted after OUTBOX_RETENTION"),
            inbox_pruned: metrics.counter("inbox_pruned", "Inbox rows deleted after INBOX_RETENTION"),
        }
    }
}

/// Prunes every `interval` until `stop`, and samples the table sizes; inbox rows only with `inbox` (a
/// service that consumes events) and only once this replica has been connected to NATS through `nats`
/// for [`warm_up`] without a break (checked every second).
pub async fn run(
    db: Db,
    nats: async_nats::Client,
    retention: Retention,
    inbox: bool,
    interval: Duration,
    metrics: &Metrics,
    stop: CancellationToken,
) {
    let metrics = RetentionMetrics::new(metrics);
    let mut connected_since = tokio::time::Instant::now();
    let mut next_prune = tokio::time::Instant::now();
    let warm = warm_up(retention.ack_wait);
    loop {
        if nats.connection_state() != async_nats::connection::State::Connected {
            connected_since = tokio::time::Instant::now();
        }
        if tokio::time::Instant::now() < next_prune {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                () = stop.cancelled() => return,
            }
        }
        next_prune = tokio::time::Instant::now() + interval;
        let prune_inbox = inbox && connected_since.elapsed() >= warm;
        match prune_once(&db, &retention, prune_inbox, now_millis()).await {
            Ok(pruned) => {
                metrics.outbox_pruned.inc_by(pruned.outbox);
                metrics.inbox_pruned.inc_by(pruned.inbox);
                if pruned != Pruned::default() {
                    tracing::debug!(outbox = pruned.outbox, inbox = pruned.inbox, "pruned event tables");
                }
            }
            Err(err) => tracing::warn!(error = %err, "cannot prune the event tables; retrying later"),
        }
        if let Ok((outbox, inbox_rows)) = sizes(&db, inbox).await {
            metrics.outbox_rows.set(i64::try_from(outbox).unwrap_or(i64::MAX));
            if let Some(n) = inbox_rows {
                metrics.inbox_rows.set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use sea_orm_migration::{MigrationTrait, MigratorTrait};

    use super::*;

    struct Migrator;

    impl MigratorTrait for Migrator {
        fn migrations() -> Vec<Box<dyn MigrationTrait>> {
            vec![
                Box::new(crate::migration::CreateOutbox),
                Box::new(crate::migration::CreateInbox),
            ]
        }
    }

    async fn outbox_row(db: &Db, id: i64, published_at: Option<i64>) {
        db.execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "INSERT INTO outbox_events (id, event_id, subject, payload, created_at, published_at) \
             VALUES (?, ?, 's', x'00', 0, ?)",
            [id.into(), format!("e-{id}").into(), published_at.into()],
        ))
        .await
        .unwrap();
    }

    async fn inbox_row(db: &Db, id: &str, processed_at: i64) {
        db.execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "INSERT INTO inbox_events (event_id, subject, processed_at) VALUES (?, 's', ?)",
            [id.into(), processed_at.into()],
        ))
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn only_published_outbox_rows_and_inbox_rows_past_their_retention_are_deleted() {
        let db = baemin_mesh_store::connect::<Migrator>("sqlite::memory:", 1)
            .await
            .unwrap();
        let retention = Retention {
            outbox: Duration::from_secs(60),
            inbox: Duration::from_secs(600),
            ack_wait: Duration::from_secs(10),
        };
        let now = 1_000_000;
        outbox_row(&db, 1, Some(now - 61_000)).await; // published long ago: goes
        outbox_row(&db, 2, Some(now - 1_000)).await; // published recently: stays
        outbox_row(&db, 3, None).await; // never published: stays, whatever its age
        inbox_row(&db, "old", now - 601_000).await;
        inbox_row(&db, "new", now - 1_000).await;

        let kept_inbox = prune_once(&db, &retention, false, now).await.unwrap();
        assert_eq!(
            kept_inbox,
            Pruned { outbox: 1, inbox: 0 },
            "no inbox pruning before the warm-up"
        );
        assert_eq!(sizes(&db, true).await.unwrap(), (2, Some(2)));

        let pruned = prune_once(&db, &retention, true, now).await.unwrap();
        assert_eq!(pruned, Pruned { outbox: 0, inbox: 1 });
        assert_eq!(sizes(&db, true).await.unwrap(), (2, Some(1)));
        let unpublished = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) AS n FROM outbox_events WHERE published_at IS NULL",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap();
        assert_eq!(unpublished, 1, "an unpublished event is never pruned");
    }

    #[tokio::test]
    async fn large_backlogs_are_deleted_in_batches() {
        let db = baemin_mesh_store::connect::<Migrator>("sqlite::memory:", 1)
            .await
            .unwrap();
        for i in 0..(BATCH as i64 + 7) {
            inbox_row(&db, &format!("e-{i}"), 0).await;
        }
        let pruned = prune_once(&db, &Retention::default(), true, i64::MAX / 2)
            .await
            .unwrap();
        assert_eq!(pruned.inbox, BATCH + 7);
        assert_eq!(sizes(&db, true).await.unwrap().1, Some(0));
    }

    #[test]
    fn the_inbox_warm_up_outlasts_every_redelivery_of_a_pending_event() {
        assert_eq!(warm_up(Duration::from_secs(10)), Duration::from_secs(600));
        assert_eq!(warm_up(Duration::from_secs(120)), Duration::from_secs(1_200));
    }
}
