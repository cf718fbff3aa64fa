//! The `payments` table and the row ⇄ domain conversion.

use baemin_kernel::{CallId, Fee, RiderId, Settlement};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, sea_query::Expr};

use crate::domain::{Payment, PaymentStatus};

/// The `payments` table: one row per call.
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// One payment.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "payments")]
    pub struct Model {
        /// The call it pays for.
        #[sea_orm(primary_key, auto_increment = false)]
        pub call_id: String,
        /// The payment's own id.
        #[sea_orm(unique)]
        pub payment_id: String,
        /// KRW.
        pub fee: i64,
        /// `REGISTERED`, `SETTLED` or `VOIDED`.
        pub status: String,
        /// Who was paid.
        pub rider_id: Option<String>,
        /// KRW, once settled.
        pub commission: Option<i64>,
        /// KRW, once settled.
        pub rider_payout: Option<i64>,
        /// ms since the epoch.
        pub registered_at: i64,
        /// ms since the epoch.
        pub settled_at: Option<i64>,
        /// ms since the epoch.
        pub voided_at: Option<i64>,
        /// ms since the epoch: when the fee was held for `rider_id`.
        pub held_at: Option<i64>,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The payment of `call_id`, if any.
pub async fn find<C: ConnectionTrait>(db: &C, call_id: &CallId) -> Result<Option<Payment>, DbErr> {
    entity::Entity::find_by_id(call_id.as_str())
        .one(db)
        .await?
        .map(to_domain)
        .transpose()
}

/// Inserts a new payment; `false` if the call already has one (a concurrent registration won).
pub async fn insert<C: ConnectionTrait>(db: &C, payment: &Payment) -> Result<bool, DbErr> {
    let result = entity::Entity::insert(to_row(payment))
        .on_conflict_do_nothing_on([entity::Column::CallId])
        .exec_without_returning(db)
        .await?;
    Ok(matches!(result, sea_orm::TryInsertResult::Inserted(n) if n > 0))
}

/// Stores `payment` if the row is still as `expected` left it (its status and its hold); `false` if
/// another command got there first.
pub async fn update_from<C: ConnectionTrait>(db: &C, payment: &Payment, expected: &Payment) -> Result<bool, DbErr> {
    let held = match expected.held_at {
        Some(at) => entity::Column::HeldAt.eq(at),
        None => entity::Column::HeldAt.is_null(),
    };
    let result = entity::Entity::update_many()
        .col_expr(entity::Column::Status, Expr::value(payment.status.as_str()))
        .col_expr(
            entity::Column::RiderId,
            Expr::value(payment.rider_id.as_ref().map(ToString::to_string)),
        )
        .col_expr(
            entity::Column::Commission,
            Expr::value(payment.settlement.map(|s| s.commission)),
        )
        .col_expr(
            entity::Column::RiderPayout,
            Expr::value(payment.settlement.map(|s| s.rider_payout)),
        )
        .col_expr(entity::Column::SettledAt, Expr::value(payment.settled_at))
        .col_expr(entity::Column::VoidedAt, Expr::value(payment.voided_at))
        .col_expr(entity::Column::HeldAt, Expr::value(payment.held_at))
        .filter(entity::Column::CallId.eq(payment.call_id.as_str()))
        .filter(entity::Column::Status.eq(expected.status.as_str()))
        .filter(held)
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

fn to_row(p: &Payment) -> entity::ActiveModel {
    entity::ActiveModel {
        call_id: Set(p.call_id.to_string()),
        payment_id: Set(p.payment_id.clone()),
        fee: Set(p.fee.krw()),
        status: Set(p.status.as_str().to_owned()),
        rider_id: Set(p.rider_id.as_ref().map(ToString::to_string)),
        commission: Set(p.settlement.map(|s| s.commission)),
        rider_payout: Set(p.settlement.map(|s| s.rider_payout)),
        registered_at: Set(p.registered_at),
        settled_at: Set(p.settled_at),
        voided_at: Set(p.voided_at),
        held_at: Set(p.held_at),
    }
}

fn to_domain(row: entity::Model) -> Result<Payment, DbErr> {
    let corrupt = |what: &str| DbErr::Custom(format!("payments row {}: invalid {what}", row.call_id));
    let settlement = match (row.commission, row.rider_payout) {
        (Some(commission), Some(rider_payout)) => Some(Settlement {
            fee: row.fee,
            commission,
            rider_payout,
        }),
        _ => None,
    };
    Ok(Payment {
        payment_id: row.payment_id.clone(),
        call_id: CallId::parse(&row.call_id, "call_id").map_err(|_| corrupt("call_id"))?,
        fee: Fee::parse(row.fee, "fee").map_err(|_| corrupt("fee"))?,
        status: PaymentStatus::from_name(&row.status).ok_or_else(|| corrupt("status"))?,
        rider_id: row
            .rider_id
            .as_deref()
            .map(|r| RiderId::parse(r, "rider_id"))
            .transpose()
            .map_err(|_| corrupt("rider_id"))?,
        settlement,
        registered_at: row.registered_at,
        settled_at: row.settled_at,
        voided_at: row.voided_at,
        held_at: row.held_at,
    })
}
