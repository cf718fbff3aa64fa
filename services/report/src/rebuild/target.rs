//! The database a rebuild writes into (fresh, or refused), and reading a report database back in the
//! form ListDeliveryViews answers, to compare a rebuilt model with the live one.

use baemin_mesh_store::Db;

use baemin_proto::report::v1 as pb;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};

use super::RebuildError;
use crate::{
    domain::{DeliveryView, Filter},
    inbound::grpc,
    outbound::{db, migration::Migrator},
};

/// The tables of the report's schema: a target holding any other table belongs to something else.
const OWN_TABLES: [&str; 6] = [
    "seaql_migrations",
    "outbox_events",
    "inbox_events",
    "delivery_views",
    "outbox_lease",
    "event_failures",
];

/// Rows read per query.
const BATCH: u64 = 500;

/// The database at `url`, migrated, holding nothing yet.
pub(super) async fn open_fresh(url: &str) -> Result<Db, RebuildError> {
    // Look before migrating: pointed at another service's database by mistake, the rebuild must not
    // add the report's tables to it.
    let foreign = foreign_tables(url).await?;
    if !foreign.is_empty() {
        return Err(RebuildError::NotEmpty(format!(
            "tables of another schema ({})",
            foreign.join(", ")
        )));
    }
    let db = baemin_mesh_store::connect::<Migrator>(url, 1).await?;
    let holdings = holdings(&db).await;
    match holdings {
        Ok(None) => Ok(db),
        Ok(Some(holds)) => {
            db.close().await.ok();
            Err(RebuildError::NotEmpty(holds))
        }
        Err(err) => {
            db.close().await.ok();
            Err(err.into())
        }
    }
}

/// What a migrated report database holds, if anything.
async fn holdings(db: &Db) -> Result<Option<String>, DbErr> {
    let (shown, hidden) = db::count(db).await?;
    let events = db::applied_events(db).await?;
    let views = shown + hidden;
    Ok((views > 0 || events > 0).then(|| format!("{views} delivery view(s) and {events} applied event(s)")))
}

/// Tables at `url` that are not the report's. None when it cannot be opened yet (a SQLite file in a
/// directory still to be created): `baemin_mesh_store::connect` creates it, or says what is wrong.
async fn foreign_tables(url: &str) -> Result<Vec<String>, RebuildError> {
    let Ok(probe) = baemin_mesh_store::open(url, 1).await else {
        return Ok(Vec::new());
    };
    let backend = probe.get_database_backend();
    let sql = match backend {
        DbBackend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        _ => {
            "SELECT CAST(table_name AS TEXT) AS name FROM information_schema.tables \
             WHERE table_schema = current_schema()"
        }
    };
    let tables = probe.query_all_raw(Statement::from_string(backend, sql)).await;
    probe.close().await.ok();
    let mut foreign = Vec::new();
    for row in tables? {
        let name: String = row.try_get("", "name")?;
        if !OWN_TABLES.contains(&name.as_str()) {
            foreign.push(name);
        }
    }
    foreign.sort();
    Ok(foreign)
}

/// Every row of the deliverylist in the report database at `database_url`, newest call first, exactly
/// as ListDeliveryViews answers them (the same conversion): to compare a rebuilt model with the live one.
pub async fn rows(database_url: &str) -> Result<Vec<pb::DeliveryView>, RebuildError> {
    // Not migrated: a wrong URL fails here instead of getting the report's tables.
    let db = baemin_mesh_store::open(database_url, 1).await?;
    let views = all_rows(&db).await;
    db.close().await.ok();
    Ok(views?.iter().map(grpc::to_pb).collect())
}

async fn all_rows(db: &Db) -> Result<Vec<DeliveryView>, DbErr> {
    let mut views: Vec<DeliveryView> = Vec::new();
    loop {
        let after = views.last().map(|v| v.call_id.to_string());
        let batch = db::list(db, &Filter::default(), after.as_deref(), BATCH).await?;
        let done = (batch.len() as u64) < BATCH;
        views.extend(batch);
        if done {
            return Ok(views);
        }
    }
}
