//! Which relay publishes a database's outbox: the holder of its lease. With several replicas of a
//! service on one database, every replica runs a relay; were each to publish every pending row, the
//! broker's duplicate window would hide the copies only inside it — after a longer NATS outage each row
//! would go out once per replica. The lease is one row, taken or renewed in one statement (an upsert
//! whose update applies only to its holder or once it expired), so exactly one relay holds it at a time
//! on SQLite and PostgreSQL alike; a relay that dies stops renewing, and another takes over after
//! [`LEASE_TTL`]. One holder also keeps rows going out in commit order.

use std::time::Duration;

use sea_orm::{
    ConnectionTrait, DbErr,
    sea_query::{Alias, Expr, OnConflict, Query},
};
use sea_orm_migration::{prelude::*, schema::*};

use crate::envelope::now_millis;

/// How long a lease lasts without renewal: twice the relay's longest pause between rounds (its 5 s retry
/// backoff), so a live holder with work keeps it (an idle one may lose it and take it again when work
/// comes); a holder that stops cleanly lets it go at once ([`release`]), one that dies holds it up this
/// long.
pub const LEASE_TTL: Duration = Duration::from_secs(10);

const TABLE: &str = "outbox_lease";
const NAME: &str = "relay";

/// Takes the lease for `holder`, or renews it, when it is free, expired or already `holder`'s, for
/// `ttl`; whether `holder` holds it now.
pub async fn hold<C: ConnectionTrait>(db: &C, holder: &str, ttl: Duration) -> Result<bool, DbErr> {
    let now = now_millis();
    let expires = now.saturating_add(<i64 as TryFrom<u128>>::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
    let table = Alias::new(TABLE);
    let [name, holder_col, expires_col] = ["name", "holder", "expires_at"].map(Alias::new);
    let statement = Query::insert()
        .into_table(table.clone())
        .columns([name.clone(), holder_col.clone(), expires_col.clone()])
        .values_panic([NAME.into(), holder.into(), expires.into()])
        .on_conflict(
            OnConflict::column(name)
                .update_columns([holder_col.clone(), expires_col.clone()])
                .action_and_where(
                    Expr::col((table.clone(), holder_col))
                        .eq(holder)
                        .or(Expr::col((table, expires_col)).lt(now)),
                )
                .to_owned(),
        )
        .to_owned();
    let done = db.execute(&statement).await?;
    Ok(done.rows_affected() == 1)
}

/// Lets the lease go if `holder` holds it, so another relay takes over without waiting for it to expire.
pub async fn release<C: ConnectionTrait>(db: &C, holder: &str) -> Result<(), DbErr> {
    let statement = Query::update()
        .table(Alias::new(TABLE))
        .value(Alias::new("expires_at"), 0_i64)
        .and_where(Expr::col(Alias::new("name")).eq(NAME))
        .and_where(Expr::col(Alias::new("holder")).eq(holder))
        .to_owned();
    db.execute(&statement).await.map(drop)
}

/// Creates `outbox_lease`: which relay publishes this database's outbox, until when.
pub struct CreateOutboxLease;

impl MigrationName for CreateOutboxLease {
    fn name(&self) -> &str {
        "m20261206_000003_mesh_create_outbox_lease"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateOutboxLease {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TABLE)
                    .if_not_exists()
                    .col(string_len("name", 32).primary_key())
                    .col(string_len("holder", 64))
                    .col(big_integer("expires_at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(TABLE).to_owned()).await
    }
}
