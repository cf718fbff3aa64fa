//! How often a consumer's handler failed on an event: what counts toward dead-lettering it.
//!
//! JetStream's delivery count says how often an event was delivered, not how often it failed: it also
//! counts redeliveries after a database outage (transient failures are retried as long as it takes), ack
//! waits that expired while the event queued in a lane, and events given back by a stopping consumer. An
//! event that merely waited out a 20 s outage must not be dead-lettered by its first real failure. So each
//! consumer counts its handler's failures itself, per event, in the service's database — shared by the
//! service's replicas and kept across restarts, like the inbox. A row exists only for an event that
//! failed and is not done with yet: it is removed once the event is acked after a redelivery (applied at
//! last) or dead-lettered, so the table holds the events failing now.

use sea_orm::{
    ConnectionTrait, DbErr,
    sea_query::{Alias, Expr, OnConflict, Query},
};
use sea_orm_migration::{prelude::*, schema::*};

const TABLE: &str = "event_failures";

/// Records one more failure of `consumer`'s handler on `event_id`; how many there have been in all.
pub async fn record<C: ConnectionTrait>(db: &C, consumer: &str, event_id: &str, now: i64) -> Result<u32, DbErr> {
    let table = Alias::new(TABLE);
    let [consumer_col, event_col, failures_col, at_col] =
        ["consumer", "event_id", "failures", "last_failed_at"].map(Alias::new);
    let statement = Query::insert()
        .into_table(table.clone())
        .columns([
            consumer_col.clone(),
            event_col.clone(),
            failures_col.clone(),
            at_col.clone(),
        ])
        .values_panic([consumer.into(), event_id.into(), 1_i64.into(), now.into()])
        .on_conflict(
            OnConflict::columns([consumer_col, event_col])
                .value(failures_col.clone(), Expr::col((table, failures_col.clone())).add(1))
                .value(at_col, now)
                .to_owned(),
        )
        .returning_col(failures_col)
        .to_owned();
    let row = db
        .query_one_raw(db.get_database_backend().build(&statement))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("{TABLE}: no row returned for {event_id}")))?;
    let failures: i64 = row.try_get("", "failures")?;
    Ok(<u32 as TryFrom<i64>>::try_from(failures).unwrap_or(u32::MAX))
}

/// Forgets the failures of `consumer` on `event_id` (applied at last, or dead-lettered).
pub async fn forget<C: ConnectionTrait>(db: &C, consumer: &str, event_id: &str) -> Result<(), DbErr> {
    let statement = Query::delete()
        .from_table(Alias::new(TABLE))
        .and_where(Expr::col(Alias::new("consumer")).is_in([consumer.to_owned(), timeouts_of(consumer)]))
        .and_where(Expr::col(Alias::new("event_id")).eq(event_id))
        .to_owned();
    db.execute(&statement).await.map(drop)
}

/// The counter under which `consumer`'s statement timeouts are counted: apart from its other failures,
/// each kind against its own allowance ([`forget`] clears both).
pub fn timeouts_of(consumer: &str) -> String {
    format!("{consumer}/timeouts")
}

/// `event_failures.failures` as an `i64` on PostgreSQL too (one integer width: see
/// `baemin_mesh_store::WidenToBigint`).
pub fn widen_event_failures() -> baemin_mesh_store::WidenToBigint {
    baemin_mesh_store::WidenToBigint {
        name: "m20261208_000005_mesh_widen_event_failures",
        table: TABLE,
        columns: &["failures"],
    }
}

/// Creates `event_failures`: per consumer and event, how often its handler failed.
pub struct CreateEventFailures;

impl MigrationName for CreateEventFailures {
    fn name(&self) -> &str {
        "m20261207_000004_mesh_create_event_failures"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateEventFailures {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TABLE)
                    .if_not_exists()
                    .col(string_len("consumer", 128))
                    .col(string_len("event_id", 64))
                    .col(integer("failures"))
                    .col(big_integer("last_failed_at"))
                    .primary_key(Index::create().col("consumer").col("event_id"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(TABLE).to_owned()).await
    }
}
