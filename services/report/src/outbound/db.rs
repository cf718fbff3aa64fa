//! The `delivery_views` table, the row ⇄ domain conversion, and the stats aggregates.

use baemin_kernel::{CallId, DeliveryStatus, Destination, Fee, RestaurantId, RiderId};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QueryResult, QuerySelect, Statement,
};

use crate::domain::{DeliveryView, Filter, PaymentState, Totals};

/// The `delivery_views` table: one row per call.
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// One row of the deliverylist.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "delivery_views")]
    pub struct Model {
        /// The call.
        #[sea_orm(primary_key, auto_increment = false)]
        pub call_id: String,
        /// Who placed it.
        pub restaurant_id: Option<String>,
        /// Where the food goes.
        pub destination: Option<String>,
        /// KRW.
        pub fee: Option<i64>,
        /// `CALLED` .. `CANCELLED`; NULL while only payment has spoken about the call (hidden).
        pub status: Option<String>,
        /// The status's merge rank.
        pub status_rank: Option<i16>,
        /// The rider.
        pub rider_id: Option<String>,
        /// `REGISTERED`, `SETTLED` or `VOIDED`.
        pub payment_state: Option<String>,
        /// Rider payout, KRW.
        pub settled_amount: Option<i64>,
        /// Company commission, KRW.
        pub commission: Option<i64>,
        /// ms since the epoch.
        pub called_at: Option<i64>,
        /// ms since the epoch.
        pub accepted_at: Option<i64>,
        /// ms since the epoch.
        pub picked_at: Option<i64>,
        /// ms since the epoch.
        pub completed_at: Option<i64>,
        /// ms since the epoch.
        pub cancelled_at: Option<i64>,
        /// ms since the epoch.
        pub updated_at: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

use entity::Column;

/// The row of `call_id`, created empty if missing, locked until `txn` ends (PostgreSQL; SQLite has
/// one writer anyway).
pub async fn lock_or_create<C: ConnectionTrait>(txn: &C, call_id: &CallId) -> Result<DeliveryView, DbErr> {
    // One statement: insert the row of a call seen for the first time, or "update" the existing row to
    // itself — which locks it as SELECT … FOR UPDATE would on PostgreSQL (a concurrent transaction
    // projecting the same call waits here for our commit, then sees our row) — and return it.
    let row = entity::Entity::insert(to_row(&DeliveryView::unseen(call_id.clone())))
        .on_conflict(
            sea_orm::sea_query::OnConflict::column(Column::CallId)
                .update_column(Column::CallId)
                .to_owned(),
        )
        .exec_with_returning(txn)
        .await?;
    to_domain(row)
}

/// Stores `view` over its existing row.
pub async fn store<C: ConnectionTrait>(txn: &C, view: &DeliveryView) -> Result<(), DbErr> {
    entity::Entity::update_many()
        .set(to_row(view))
        .filter(Column::CallId.eq(view.call_id.as_str()))
        .exec(txn)
        .await?;
    Ok(())
}

/// The row of `call_id`, if it is shown.
pub async fn find_visible<C: ConnectionTrait>(db: &C, call_id: &CallId) -> Result<Option<DeliveryView>, DbErr> {
    entity::Entity::find_by_id(call_id.as_str())
        .filter(Column::Status.is_not_null())
        .one(db)
        .await?
        .map(to_domain)
        .transpose()
}

/// Up to `limit` shown rows matching `filter`, newest call first, older than call `after` if set.
pub async fn list<C: ConnectionTrait>(
    db: &C,
    filter: &Filter,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<DeliveryView>, DbErr> {
    let mut select = entity::Entity::find().filter(Column::Status.is_not_null());
    if let Some(after) = after {
        select = select.filter(Column::CallId.lt(after));
    }
    if let Some(status) = filter.status {
        select = select.filter(Column::Status.eq(status.as_str()));
    }
    if let Some(restaurant) = &filter.restaurant_id {
        select = select.filter(Column::RestaurantId.eq(restaurant.as_str()));
    }
    if let Some(rider) = &filter.rider_id {
        select = select.filter(Column::RiderId.eq(rider.as_str()));
    }
    select
        .order_by_desc(Column::CallId)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(to_domain)
        .collect()
}

/// How many rows there are: shown ones, and hidden ones (only payment has spoken about the call).
pub async fn count<C: ConnectionTrait>(db: &C) -> Result<(u64, u64), DbErr> {
    let all = entity::Entity::find().count(db).await?;
    let shown = entity::Entity::find()
        .filter(Column::Status.is_not_null())
        .count(db)
        .await?;
    Ok((shown, all.saturating_sub(shown)))
}

/// How many events were applied (each event id once).
pub async fn applied_events<C: ConnectionTrait>(db: &C) -> Result<u64, DbErr> {
    baemin_mesh_events::inbox::entity::Entity::find().count(db).await
}

/// Counts and fees per status of the shown rows. Sums are cast to BIGINT because PostgreSQL sums
/// BIGINT into NUMERIC.
const PER_STATUS: &str = "SELECT status, \
       CAST(COUNT(*) AS BIGINT) AS n, \
       CAST(COALESCE(SUM(fee), 0) AS BIGINT) AS fees \
     FROM delivery_views WHERE status IS NOT NULL GROUP BY status";

/// Settlement sums and the durations behind the means, over the shown rows.
const SETTLED_AND_DURATIONS: &str = "SELECT \
       CAST(COALESCE(SUM(CASE WHEN payment_state = 'SETTLED' THEN 1 ELSE 0 END), 0) AS BIGINT) AS settled_count, \
       CAST(COALESCE(SUM(CASE WHEN payment_state = 'SETTLED' THEN COALESCE(commission, 0) ELSE 0 END), 0) AS BIGINT) AS revenue, \
       CAST(COALESCE(SUM(CASE WHEN payment_state = 'SETTLED' THEN COALESCE(settled_amount, 0) ELSE 0 END), 0) AS BIGINT) AS payouts, \
       CAST(COALESCE(SUM(CASE WHEN picked_at IS NOT NULL AND called_at IS NOT NULL THEN picked_at - called_at ELSE 0 END), 0) AS BIGINT) AS pick_up_sum, \
       CAST(COALESCE(SUM(CASE WHEN picked_at IS NOT NULL AND called_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS BIGINT) AS pick_up_count, \
       CAST(COALESCE(SUM(CASE WHEN completed_at IS NOT NULL AND called_at IS NOT NULL THEN completed_at - called_at ELSE 0 END), 0) AS BIGINT) AS complete_sum, \
       CAST(COALESCE(SUM(CASE WHEN completed_at IS NOT NULL AND called_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS BIGINT) AS complete_count \
     FROM delivery_views WHERE status IS NOT NULL";

/// The sums behind GetStats, computed by the database in two aggregate queries.
pub async fn totals<C: ConnectionTrait>(db: &C) -> Result<Totals, DbErr> {
    let backend = db.get_database_backend();
    let mut per_status = Vec::new();
    for row in db.query_all_raw(Statement::from_string(backend, PER_STATUS)).await? {
        let name: String = row.try_get("", "status")?;
        let status = DeliveryStatus::from_name(&name)
            .ok_or_else(|| DbErr::Custom(format!("delivery_views: invalid status {name:?}")))?;
        per_status.push((status, row.try_get("", "n")?, row.try_get("", "fees")?));
    }
    let sums = db
        .query_one_raw(Statement::from_string(backend, SETTLED_AND_DURATIONS))
        .await?
        .ok_or_else(|| DbErr::Custom("an aggregate query returned no row".into()))?;
    let get = |column: &str| -> Result<i64, DbErr> { QueryResult::try_get(&sums, "", column) };
    Ok(Totals {
        per_status,
        settled_count: get("settled_count")?,
        revenue: get("revenue")?,
        total_payouts: get("payouts")?,
        pick_up: (get("pick_up_sum")?, get("pick_up_count")?),
        complete: (get("complete_sum")?, get("complete_count")?),
    })
}

fn to_row(v: &DeliveryView) -> entity::ActiveModel {
    entity::ActiveModel {
        call_id: Set(v.call_id.to_string()),
        restaurant_id: Set(v.restaurant_id.as_ref().map(ToString::to_string)),
        destination: Set(v.destination.as_ref().map(ToString::to_string)),
        fee: Set(v.fee.map(Fee::krw)),
        status: Set(v.status.map(|s| s.as_str().to_owned())),
        status_rank: Set(v.status.map(|s| i16::from(s.rank()))),
        rider_id: Set(v.rider_id.as_ref().map(ToString::to_string)),
        payment_state: Set(v.payment_state.map(|s| s.as_str().to_owned())),
        settled_amount: Set(v.settled_amount),
        commission: Set(v.commission),
        called_at: Set(v.called_at),
        accepted_at: Set(v.accepted_at),
        picked_at: Set(v.picked_at),
        completed_at: Set(v.completed_at),
        cancelled_at: Set(v.cancelled_at),
        updated_at: Set(v.updated_at),
    }
}

fn to_domain(row: entity::Model) -> Result<DeliveryView, DbErr> {
    let corrupt = |what: &str| DbErr::Custom(format!("delivery_views row {}: invalid {what}", row.call_id));
    Ok(DeliveryView {
        call_id: CallId::parse(&row.call_id, "call_id").map_err(|_| corrupt("call_id"))?,
        restaurant_id: row
            .restaurant_id
            .as_deref()
            .map(|r| RestaurantId::parse(r, "restaurant_id"))
            .transpose()
            .map_err(|_| corrupt("restaurant_id"))?,
        destination: row
            .destination
            .as_deref()
            .map(|d| Destination::parse(d, "destination"))
            .transpose()
            .map_err(|_| corrupt("destination"))?,
        fee: row
            .fee
            .map(|f| Fee::parse(f, "fee"))
            .transpose()
            .map_err(|_| corrupt("fee"))?,
        status: row
            .status
            .as_deref()
            .map(|s| DeliveryStatus::from_name(s).ok_or_else(|| corrupt("status")))
            .transpose()?,
        rider_id: row
            .rider_id
            .as_deref()
            .map(|r| RiderId::parse(r, "rider_id"))
            .transpose()
            .map_err(|_| corrupt("rider_id"))?,
        payment_state: row
            .payment_state
            .as_deref()
            .map(|s| PaymentState::from_name(s).ok_or_else(|| corrupt("payment_state")))
            .transpose()?,
        settled_amount: row.settled_amount,
        commission: row.commission,
        called_at: row.called_at,
        accepted_at: row.accepted_at,
        picked_at: row.picked_at,
        completed_at: row.completed_at,
        cancelled_at: row.cancelled_at,
        updated_at: row.updated_at,
    })
}
