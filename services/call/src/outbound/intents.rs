//! The `registrations` table: write-ahead intents of PlaceCall ((restaurant, request id) → call id chosen).
//!
//! Every write is conditional on the row's call id and on `void_requested_at`, so a request storing its
//! call and the repair worker voiding the fee can never both win.

use baemin_kernel::{CallId, Millis, RequestId, RestaurantId};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TryInsertResult, sea_query::Expr,
};

use crate::domain::{Fingerprint, Registration, RequestKey};

/// The `registrations` table: at most one intent per idempotency key (restaurant, request id).
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// One intent.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "registrations")]
    pub struct Model {
        /// Whose idempotency key it is.
        #[sea_orm(primary_key, auto_increment = false)]
        pub restaurant_id: String,
        /// The idempotency key, unique per restaurant.
        #[sea_orm(primary_key, auto_increment = false)]
        pub request_id: String,
        /// The call id the fee is registered under.
        pub call_id: String,
        /// `restaurant_id|destination|fee` of the request.
        pub request_fingerprint: String,
        /// When made or last reused, ms.
        pub created_at: i64,
        /// When its fee started to be voided, ms.
        pub void_requested_at: Option<i64>,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

use entity::Column;

/// The intent of `key`, if any.
pub async fn find<C: ConnectionTrait>(db: &C, key: &RequestKey) -> Result<Option<Registration>, DbErr> {
    entity::Entity::find_by_id((key.restaurant_id.to_string(), key.request_id.to_string()))
        .one(db)
        .await?
        .map(to_domain)
        .transpose()
}

/// Inserts a new intent; `false` if the key has one already (a concurrent attempt won).
pub async fn insert<C: ConnectionTrait>(db: &C, intent: &Registration) -> Result<bool, DbErr> {
    let row = entity::ActiveModel {
        restaurant_id: Set(intent.key.restaurant_id.to_string()),
        request_id: Set(intent.key.request_id.to_string()),
        call_id: Set(intent.call_id.to_string()),
        request_fingerprint: Set(intent.fingerprint.as_str().to_owned()),
        created_at: Set(intent.created_at),
        void_requested_at: Set(intent.void_requested_at),
    };
    let result = entity::Entity::insert(row)
        .on_conflict_do_nothing_on([Column::RestaurantId, Column::RequestId])
        .exec_without_returning(db)
        .await?;
    Ok(matches!(result, TryInsertResult::Inserted(n) if n > 0))
}

/// Marks the intent as reused at `now` (so the repair worker leaves it alone for a while);
/// `false` if it is gone or being voided.
pub async fn touch<C: ConnectionTrait>(db: &C, key: &RequestKey, call_id: &CallId, now: Millis) -> Result<bool, DbErr> {
    let result = entity::Entity::update_many()
        .col_expr(Column::CreatedAt, Expr::value(now))
        .filter(live(key, call_id))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Removes the intent as its call is stored; `false` if it is gone or being voided.
pub async fn take<C: ConnectionTrait>(db: &C, key: &RequestKey, call_id: &CallId) -> Result<bool, DbErr> {
    let result = entity::Entity::delete_many()
        .filter(live(key, call_id))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Takes the intent over to void its fee: from now on no request stores a call under it. With a
/// `cutoff`, only an intent made or reused at or before it. `false` if it is gone, newer or taken.
pub async fn claim<C: ConnectionTrait>(
    db: &C,
    key: &RequestKey,
    call_id: &CallId,
    cutoff: Option<Millis>,
    now: Millis,
) -> Result<bool, DbErr> {
    let mut condition = live(key, call_id);
    if let Some(cutoff) = cutoff {
        condition = condition.add(Column::CreatedAt.lte(cutoff));
    }
    let result = entity::Entity::update_many()
        .col_expr(Column::VoidRequestedAt, Expr::value(now))
        .filter(condition)
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Moves the time an intent taken over for voiding was claimed to `now`: its void could not be
/// decided, so the repair worker looks again `CALL_REPAIR_AFTER` later, behind older intents.
pub async fn postpone_void<C: ConnectionTrait>(
    db: &C,
    key: &RequestKey,
    call_id: &CallId,
    now: Millis,
) -> Result<(), DbErr> {
    entity::Entity::update_many()
        .col_expr(Column::VoidRequestedAt, Expr::value(now))
        .filter(of(key))
        .filter(Column::CallId.eq(call_id.as_str()))
        .filter(Column::VoidRequestedAt.is_not_null())
        .exec(db)
        .await?;
    Ok(())
}

/// Deletes the intent (its fee is voided, or a call stands for it).
pub async fn delete<C: ConnectionTrait>(db: &C, key: &RequestKey, call_id: &CallId) -> Result<(), DbErr> {
    entity::Entity::delete_many()
        .filter(of(key))
        .filter(Column::CallId.eq(call_id.as_str()))
        .exec(db)
        .await?;
    Ok(())
}

/// Intents the repair worker should look at: made at or before `cutoff` and never taken over, or taken
/// over for voiding at or before it (a void payment could not answer waits that long again).
pub async fn due<C: ConnectionTrait>(db: &C, cutoff: Millis, limit: u64) -> Result<Vec<Registration>, DbErr> {
    entity::Entity::find()
        .filter(
            Condition::any().add(Column::VoidRequestedAt.lte(cutoff)).add(
                Condition::all()
                    .add(Column::VoidRequestedAt.is_null())
                    .add(Column::CreatedAt.lte(cutoff)),
            ),
        )
        .order_by_asc(Column::CreatedAt)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(to_domain)
        .collect()
}

/// The row of `key`.
fn of(key: &RequestKey) -> Condition {
    Condition::all()
        .add(Column::RestaurantId.eq(key.restaurant_id.as_str()))
        .add(Column::RequestId.eq(key.request_id.as_str()))
}

/// The intent of `key` under `call_id` while no one is voiding it.
fn live(key: &RequestKey, call_id: &CallId) -> Condition {
    of(key)
        .add(Column::CallId.eq(call_id.as_str()))
        .add(Column::VoidRequestedAt.is_null())
}

fn to_domain(row: entity::Model) -> Result<Registration, DbErr> {
    let corrupt = |what: &str| {
        DbErr::Custom(format!(
            "registrations row {}/{}: invalid {what}",
            row.restaurant_id, row.request_id
        ))
    };
    Ok(Registration {
        key: RequestKey {
            restaurant_id: RestaurantId::parse(&row.restaurant_id, "restaurant_id")
                .map_err(|_| corrupt("restaurant_id"))?,
            request_id: RequestId::parse(&row.request_id, "request_id").map_err(|_| corrupt("request_id"))?,
        },
        call_id: CallId::parse(&row.call_id, "call_id").map_err(|_| corrupt("call_id"))?,
        fingerprint: Fingerprint::stored(row.request_fingerprint.clone()),
        created_at: row.created_at,
        void_requested_at: row.void_requested_at,
    })
}
