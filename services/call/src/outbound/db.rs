//! The `calls` table and the row ⇄ domain conversion.

use baemin_kernel::{CallId, CancelReason, DeliveryStatus, Destination, Fee, Millis, RequestId, RestaurantId, RiderId};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TryInsertResult,
    sea_query::{Expr, OnConflict},
};

use crate::domain::{Call, CallFilter, Fingerprint, PaymentState, RequestKey};

/// The `calls` table: one row per call.
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// One call.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "calls")]
    pub struct Model {
        /// UUIDv7.
        #[sea_orm(primary_key, auto_increment = false)]
        pub call_id: String,
        /// The client's idempotency key, unique per restaurant (index `calls_restaurant_request`).
        pub request_id: String,
        /// `restaurant_id|destination|fee` of the placing request.
        pub request_fingerprint: String,
        /// Who called.
        pub restaurant_id: String,
        /// Where the food goes.
        pub destination: String,
        /// KRW.
        pub fee: i64,
        /// `CALLED` … `CANCELLED`.
        pub status: String,
        /// Once accepted.
        pub rider_id: Option<String>,
        /// `PENDING`, `REGISTERED`, `SETTLED` or `VOIDED`.
        pub payment_state: String,
        /// KRW, the rider's payout once settled.
        pub settled_amount: Option<i64>,
        /// Why it was cancelled.
        pub cancel_reason: Option<String>,
        /// Set while a cancellation voids the fee, ms (kept by a CANCELLED call whose void is owed).
        pub cancel_requested_at: Option<i64>,
        /// Registration attempts of a PENDING fee by the repair worker.
        pub payment_attempts: i64,
        /// When the repair worker next tries to register a PENDING fee, ms.
        pub next_attempt_at: Option<i64>,
        /// ms since the epoch.
        pub created_at: i64,
        /// ms since the epoch.
        pub updated_at: i64,
        /// Bumped by every change (optimistic concurrency).
        pub version: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

use entity::Column;

/// The call `call_id`, if any.
pub async fn find<C: ConnectionTrait>(db: &C, call_id: &CallId) -> Result<Option<Call>, DbErr> {
    entity::Entity::find_by_id(call_id.as_str())
        .one(db)
        .await?
        .map(to_domain)
        .transpose()
}

/// The call placed with idempotency key `key`, if any.
pub async fn find_by_request<C: ConnectionTrait>(db: &C, key: &RequestKey) -> Result<Option<Call>, DbErr> {
    entity::Entity::find()
        .filter(Column::RestaurantId.eq(key.restaurant_id.as_str()))
        .filter(Column::RequestId.eq(key.request_id.as_str()))
        .one(db)
        .await?
        .map(to_domain)
        .transpose()
}

/// Inserts a new call; `false` if its id or idempotency key is taken (a concurrent attempt won).
pub async fn insert<C: ConnectionTrait>(db: &C, call: &Call) -> Result<bool, DbErr> {
    let result = entity::Entity::insert(to_row(call))
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .try_insert()
        .exec_without_returning(db)
        .await?;
    Ok(matches!(result, TryInsertResult::Inserted(n) if n > 0))
}

/// Stores `call` if the row is still at `expected_version`; `false` if another change got there first.
pub async fn update<C: ConnectionTrait>(db: &C, call: &Call, expected_version: i64) -> Result<bool, DbErr> {
    let result = entity::Entity::update_many()
        .col_expr(Column::Status, Expr::value(call.status.as_str()))
        .col_expr(
            Column::RiderId,
            Expr::value(call.rider_id.as_ref().map(ToString::to_string)),
        )
        .col_expr(Column::PaymentState, Expr::value(call.payment_state.as_str()))
        .col_expr(Column::SettledAmount, Expr::value(call.settled_amount))
        .col_expr(
            Column::CancelReason,
            Expr::value(call.cancel_reason.as_ref().map(|r| r.as_str().to_owned())),
        )
        .col_expr(Column::CancelRequestedAt, Expr::value(call.cancel_requested_at))
        .col_expr(Column::PaymentAttempts, Expr::value(attempts(call)))
        .col_expr(Column::NextAttemptAt, Expr::value(call.next_attempt_at))
        .col_expr(Column::UpdatedAt, Expr::value(call.updated_at))
        .col_expr(Column::Version, Expr::value(call.version))
        .filter(Column::CallId.eq(call.call_id.as_str()))
        .filter(Column::Version.eq(expected_version))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Up to `limit` calls matching `filter` with a call id below `before`, newest first.
pub async fn list<C: ConnectionTrait>(
    db: &C,
    filter: &CallFilter,
    before: Option<&str>,
    limit: u64,
) -> Result<Vec<Call>, DbErr> {
    let mut query = entity::Entity::find();
    if let Some(status) = filter.status {
        query = query.filter(Column::Status.eq(status.as_str()));
    }
    if let Some(restaurant) = &filter.restaurant_id {
        query = query.filter(Column::RestaurantId.eq(restaurant.as_str()));
    }
    if let Some(rider) = &filter.rider_id {
        query = query.filter(Column::RiderId.eq(rider.as_str()));
    }
    if let Some(before) = before {
        query = query.filter(Column::CallId.lt(before));
    }
    query
        .order_by_desc(Column::CallId)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(to_domain)
        .collect()
}

/// Calls whose cancellation was marked at or before `cutoff` and never decided (a crash, a lost answer
/// from payment, payment down), oldest mark first.
pub async fn stale_cancellations<C: ConnectionTrait>(db: &C, cutoff: Millis, limit: u64) -> Result<Vec<Call>, DbErr> {
    entity::Entity::find()
        .filter(Column::CancelRequestedAt.lte(cutoff))
        .order_by_asc(Column::CancelRequestedAt)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(to_domain)
        .collect()
}

/// Calls whose PENDING fee the repair worker should try to register at `now` (see
/// `Call::registration_due`), longest waiting first.
pub async fn due_registrations<C: ConnectionTrait>(db: &C, now: Millis, limit: u64) -> Result<Vec<Call>, DbErr> {
    entity::Entity::find()
        .filter(Column::PaymentState.eq(PaymentState::Pending.as_str()))
        .filter(Column::NextAttemptAt.lte(now))
        .filter(Column::CancelRequestedAt.is_null())
        .filter(Column::Status.ne(DeliveryStatus::Cancelled.as_str()))
        .order_by_asc(Column::NextAttemptAt)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(to_domain)
        .collect()
}

/// The attempt count as stored.
fn attempts(c: &Call) -> i64 {
    i64::from(c.payment_attempts)
}

fn to_row(c: &Call) -> entity::ActiveModel {
    entity::ActiveModel {
        call_id: Set(c.call_id.to_string()),
        request_id: Set(c.request_id.to_string()),
        request_fingerprint: Set(c.fingerprint.as_str().to_owned()),
        restaurant_id: Set(c.restaurant_id.to_string()),
        destination: Set(c.destination.to_string()),
        fee: Set(c.fee.krw()),
        status: Set(c.status.as_str().to_owned()),
        rider_id: Set(c.rider_id.as_ref().map(ToString::to_string)),
        payment_state: Set(c.payment_state.as_str().to_owned()),
        settled_amount: Set(c.settled_amount),
        cancel_reason: Set(c.cancel_reason.as_ref().map(|r| r.as_str().to_owned())),
        cancel_requested_at: Set(c.cancel_requested_at),
        payment_attempts: Set(attempts(c)),
        next_attempt_at: Set(c.next_attempt_at),
        created_at: Set(c.created_at),
        updated_at: Set(c.updated_at),
        version: Set(c.version),
    }
}

fn to_domain(row: entity::Model) -> Result<Call, DbErr> {
    let corrupt = |what: &str| DbErr::Custom(format!("calls row {}: invalid {what}", row.call_id));
    Ok(Call {
        call_id: CallId::parse(&row.call_id, "call_id").map_err(|_| corrupt("call_id"))?,
        request_id: RequestId::parse(&row.request_id, "request_id").map_err(|_| corrupt("request_id"))?,
        fingerprint: Fingerprint::stored(row.request_fingerprint.clone()),
        restaurant_id: RestaurantId::parse(&row.restaurant_id, "restaurant_id")
            .map_err(|_| corrupt("restaurant_id"))?,
        destination: Destination::parse(&row.destination, "destination").map_err(|_| corrupt("destination"))?,
        fee: Fee::parse(row.fee, "fee").map_err(|_| corrupt("fee"))?,
        status: DeliveryStatus::from_name(&row.status).ok_or_else(|| corrupt("status"))?,
        rider_id: row
            .rider_id
            .as_deref()
            .map(|r| RiderId::parse(r, "rider_id"))
            .transpose()
            .map_err(|_| corrupt("rider_id"))?,
        payment_state: PaymentState::from_name(&row.payment_state).ok_or_else(|| corrupt("payment_state"))?,
        settled_amount: row.settled_amount,
        cancel_reason: row
            .cancel_reason
            .as_deref()
            .map(|r| CancelReason::parse(r, "reason"))
            .transpose()
            .map_err(|_| corrupt("cancel_reason"))?,
        cancel_requested_at: row.cancel_requested_at,
        payment_attempts: u32::try_from(row.payment_attempts).map_err(|_| corrupt("payment_attempts"))?,
        next_attempt_at: row.next_attempt_at,
        created_at: row.created_at,
        updated_at: row.updated_at,
        version: row.version,
    })
}

#[cfg(test)]
mod tests {
    use baemin_kernel::CallId;

    use super::*;
    use crate::{
        domain::{
            Call,
            testing::{new_call, new_call_of},
        },
        outbound::migration::Migrator,
    };

    #[tokio::test]
    async fn a_second_call_with_the_same_request_id_is_not_inserted() {
        let db = baemin_mesh_store::connect::<Migrator>("sqlite::memory:", 1)
            .await
            .unwrap();
        let new = new_call("req-1", 3_000);
        let first = Call::placed(CallId::generate(), &new, 1);
        let rival = Call::placed(CallId::generate(), &new, 2);
        assert!(insert(&db, &first).await.unwrap());
        assert!(!insert(&db, &rival).await.unwrap());
        assert!(!insert(&db, &first).await.unwrap(), "same call id");
        assert_eq!(find_by_request(&db, &new.key()).await.unwrap(), Some(first));
    }

    #[tokio::test]
    async fn the_same_request_id_of_two_restaurants_names_two_calls() {
        let db = baemin_mesh_store::connect::<Migrator>("sqlite::memory:", 1)
            .await
            .unwrap();
        let (a, b) = (new_call("req-1", 3_000), new_call_of("store-2", "req-1", 3_000));
        let call_a = Call::placed(CallId::generate(), &a, 1);
        let call_b = Call::placed(CallId::generate(), &b, 2);
        assert!(insert(&db, &call_a).await.unwrap());
        assert!(insert(&db, &call_b).await.unwrap());
        assert_eq!(find_by_request(&db, &a.key()).await.unwrap(), Some(call_a));
        assert_eq!(find_by_request(&db, &b.key()).await.unwrap(), Some(call_b));
    }

    #[tokio::test]
    async fn an_update_from_a_stale_version_is_refused() {
        let db = baemin_mesh_store::connect::<Migrator>("sqlite::memory:", 1)
            .await
            .unwrap();
        let call = Call::placed(CallId::generate(), &new_call("req-1", 3_000), 1);
        insert(&db, &call).await.unwrap();
        let next = Call {
            version: 2,
            status: DeliveryStatus::Accepted,
            ..call.clone()
        };
        assert!(update(&db, &next, 1).await.unwrap());
        assert!(!update(&db, &next, 1).await.unwrap(), "version 1 is gone");
        assert_eq!(find(&db, &call.call_id).await.unwrap(), Some(next));
    }
}
