//! The `deliveries` table and the row ⇄ domain conversion.
//!
//! Writes are split by owner so concurrent writers never clobber each other: CallPlaced fills the call's
//! facts (restaurant, destination, fee, called_at); commands and cancellations move the status and
//! the rider's fields, always conditionally on the status they decided from.

use baemin_kernel::{CallId, DeliveryStatus, Destination, Fee, Millis, PageSize, RestaurantId, RiderId, Settlement};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, sea_query::Expr,
};

use crate::domain::{Delivery, DeliveryFilter, Listed, Page, status_from_label, status_label};

/// The `deliveries` table: one row per call the rider service has heard of.
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// One delivery.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "deliveries")]
    pub struct Model {
        /// The call id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub call_id: String,
        /// Who placed the call.
        pub restaurant_id: Option<String>,
        /// Where the food goes.
        pub destination: Option<String>,
        /// KRW; null only for a cancelled tombstone.
        pub fee: Option<i64>,
        /// `OPEN`, `ACCEPTED`, `PICKED`, `COMPLETED` or `CANCELLED`.
        pub status: String,
        /// The rider who took the call.
        pub rider_id: Option<String>,
        /// KRW, once settled.
        pub commission: Option<i64>,
        /// KRW paid to the rider, once settled.
        pub payout: Option<i64>,
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
        /// ms since the epoch: Settle sent, its outcome not yet recorded (CompleteDelivery's mark).
        pub settle_requested_at: Option<i64>,
        /// ms since the epoch: HoldCost sent, its outcome not yet recorded (PickUp's mark).
        pub hold_requested_at: Option<i64>,
        /// ms since the epoch.
        pub updated_at: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

use entity::Column;

/// The delivery of `call_id`, if any.
pub async fn find<C: ConnectionTrait>(db: &C, call_id: &CallId) -> Result<Option<Delivery>, DbErr> {
    entity::Entity::find_by_id(call_id.as_str())
        .one(db)
        .await?
        .map(to_domain)
        .transpose()
}

/// Inserts a new delivery; `false` if the call already has a row (a concurrent event got there first).
pub async fn insert<C: ConnectionTrait>(db: &C, delivery: &Delivery) -> Result<bool, DbErr> {
    let result = entity::Entity::insert(to_row(delivery))
        .on_conflict_do_nothing_on([Column::CallId])
        .exec_without_returning(db)
        .await?;
    Ok(matches!(result, sea_orm::TryInsertResult::Inserted(n) if n > 0))
}

/// Writes the call's facts (what CallPlaced carries) of `delivery`; its status is left alone.
pub async fn fill_call<C: ConnectionTrait>(db: &C, delivery: &Delivery) -> Result<(), DbErr> {
    entity::Entity::update_many()
        .col_expr(
            Column::RestaurantId,
            Expr::value(delivery.restaurant_id.as_ref().map(ToString::to_string)),
        )
        .col_expr(
            Column::Destination,
            Expr::value(delivery.destination.as_ref().map(ToString::to_string)),
        )
        .col_expr(Column::Fee, Expr::value(delivery.fee.map(Fee::krw)))
        .col_expr(Column::CalledAt, Expr::value(delivery.called_at))
        .col_expr(Column::UpdatedAt, Expr::value(delivery.updated_at))
        .filter(Column::CallId.eq(delivery.call_id.as_str()))
        .exec(db)
        .await?;
    Ok(())
}

/// Stores the status and the rider's fields of `delivery` if the row is still in status `expected`:
/// `UPDATE … WHERE call_id = ? AND status = ?`. `false` if another writer changed it first (a lost race).
pub async fn update_from<C: ConnectionTrait>(
    db: &C,
    delivery: &Delivery,
    expected: DeliveryStatus,
) -> Result<bool, DbErr> {
    let result = entity::Entity::update_many()
        .col_expr(Column::Status, Expr::value(status_label(delivery.status)))
        .col_expr(
            Column::RiderId,
            Expr::value(delivery.rider_id.as_ref().map(ToString::to_string)),
        )
        .col_expr(
            Column::Commission,
            Expr::value(delivery.settlement.map(|s| s.commission)),
        )
        .col_expr(Column::Payout, Expr::value(delivery.settlement.map(|s| s.rider_payout)))
        .col_expr(Column::AcceptedAt, Expr::value(delivery.accepted_at))
        .col_expr(Column::PickedAt, Expr::value(delivery.picked_at))
        .col_expr(Column::CompletedAt, Expr::value(delivery.completed_at))
        .col_expr(Column::CancelledAt, Expr::value(delivery.cancelled_at))
        .col_expr(Column::SettleRequestedAt, Expr::value(delivery.settle_requested_at))
        .col_expr(Column::HoldRequestedAt, Expr::value(delivery.hold_requested_at))
        .col_expr(Column::UpdatedAt, Expr::value(delivery.updated_at))
        .filter(Column::CallId.eq(delivery.call_id.as_str()))
        .filter(Column::Status.eq(status_label(expected)))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// A write-ahead mark of a command that calls payment: which one, on what status, in which column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// PickUp's: HoldCost sent for an ACCEPTED delivery.
    Hold,
    /// CompleteDelivery's: Settle sent for a PICKED delivery (kept on a COMPLETED one whose
    /// settlement is pending).
    Settle,
}

impl Mark {
    fn column(self) -> Column {
        match self {
            Self::Hold => Column::HoldRequestedAt,
            Self::Settle => Column::SettleRequestedAt,
        }
    }

    /// The status a command may mark from.
    fn marked_from(self) -> DeliveryStatus {
        match self {
            Self::Hold => DeliveryStatus::Accepted,
            Self::Settle => DeliveryStatus::Picked,
        }
    }

    /// The statuses whose marks the repair worker finishes.
    fn pending_in(self) -> &'static [DeliveryStatus] {
        match self {
            // PICKED and COMPLETED: deliveries picked up before payment held fees (see the migration).
            Self::Hold => &[
                DeliveryStatus::Accepted,
                DeliveryStatus::Picked,
                DeliveryStatus::Completed,
            ],
            Self::Settle => &[DeliveryStatus::Picked, DeliveryStatus::Completed],
        }
    }
}

/// Records that payment is being asked at `at` (HoldCost or Settle, per `mark`) for the delivery of
/// `call_id`, if it is still in the status that command starts from and `rider`'s. `false` if it is
/// not (it moved since it was read).
///
/// A later attempt overwrites an earlier attempt's mark: the newest attempt owns it, and the repair
/// worker waits `RIDER_REPAIR_AFTER` from there.
pub async fn set_mark<C: ConnectionTrait>(
    db: &C,
    mark: Mark,
    call_id: &CallId,
    rider: &RiderId,
    at: Millis,
) -> Result<bool, DbErr> {
    let result = entity::Entity::update_many()
        .col_expr(mark.column(), Expr::value(Some(at)))
        .filter(Column::CallId.eq(call_id.as_str()))
        .filter(Column::Status.eq(status_label(mark.marked_from())))
        .filter(Column::RiderId.eq(rider.as_str()))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Moves the mark `at` of `call_id` to `to` (`None` drops it) if it is still that one (a later
/// attempt's mark is left to that attempt). `false` if it was not there.
pub async fn move_mark<C: ConnectionTrait>(
    db: &C,
    mark: Mark,
    call_id: &CallId,
    at: Millis,
    to: Option<Millis>,
) -> Result<bool, DbErr> {
    let result = entity::Entity::update_many()
        .col_expr(mark.column(), Expr::value(to))
        .filter(Column::CallId.eq(call_id.as_str()))
        .filter(mark.column().eq(at))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Deliveries whose `mark` was set at or before `cutoff` and never recorded (a crash, a lost or
/// missing answer from payment, payment down), in a status where it is still pending: ACCEPTED for
/// a hold; PICKED, or COMPLETED with its settlement pending, for a settlement. Oldest mark first, at
/// most `limit`.
pub async fn stale_marks<C: ConnectionTrait>(
    db: &C,
    mark: Mark,
    cutoff: Millis,
    limit: u64,
) -> Result<Vec<Delivery>, DbErr> {
    entity::Entity::find()
        .filter(mark.column().lte(cutoff))
        .filter(Column::Status.is_in(mark.pending_in().iter().map(|s| status_label(*s))))
        .order_by_asc(mark.column())
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(to_domain)
        .collect()
}

/// Deliveries matching `filter`, newest first (keyset on call id, which sorts by age).
pub async fn list<C: ConnectionTrait>(db: &C, filter: &DeliveryFilter, page: &Page) -> Result<Listed, DbErr> {
    let mut condition = Condition::all();
    if let Some(status) = filter.status {
        condition = condition.add(Column::Status.eq(status_label(status)));
    }
    if let Some(rider) = &filter.rider_id {
        condition = condition.add(Column::RiderId.eq(rider.as_str()));
    }
    if let Some(restaurant) = &filter.restaurant_id {
        condition = condition.add(Column::RestaurantId.eq(restaurant.as_str()));
    }
    if let Some(after) = &page.after {
        condition = condition.add(Column::CallId.lt(after.last_key()));
    }
    let rows = entity::Entity::find()
        .filter(condition)
        .order_by_desc(Column::CallId)
        .limit(page.size.get() + 1)
        .all(db)
        .await?;
    paged(rows, page.size)
}

/// Open calls, oldest first (keyset on call id).
pub async fn list_open<C: ConnectionTrait>(db: &C, page: &Page) -> Result<Listed, DbErr> {
    let mut condition = Condition::all().add(Column::Status.eq(status_label(DeliveryStatus::Called)));
    if let Some(after) = &page.after {
        condition = condition.add(Column::CallId.gt(after.last_key()));
    }
    let rows = entity::Entity::find()
        .filter(condition)
        .order_by_asc(Column::CallId)
        .limit(page.size.get() + 1)
        .all(db)
        .await?;
    paged(rows, page.size)
}

/// Every open call, oldest first: the board a watcher starts from.
pub async fn oldest_open<C: ConnectionTrait>(db: &C, limit: u64) -> Result<Vec<Delivery>, DbErr> {
    entity::Entity::find()
        .filter(Column::Status.eq(status_label(DeliveryStatus::Called)))
        .order_by_asc(Column::CallId)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(to_domain)
        .collect()
}

/// Cuts the `size + 1` rows fetched into a page and the token of the next one.
fn paged(mut rows: Vec<entity::Model>, size: PageSize) -> Result<Listed, DbErr> {
    let more = rows.len() as u64 > size.get();
    rows.truncate(size.get() as usize);
    let items = rows.into_iter().map(to_domain).collect::<Result<Vec<_>, _>>()?;
    let next = items
        .last()
        .filter(|_| more)
        .map(|d| baemin_kernel::PageToken::after(d.call_id.as_str()));
    Ok(Listed { items, next })
}

fn to_row(d: &Delivery) -> entity::ActiveModel {
    entity::ActiveModel {
        call_id: Set(d.call_id.to_string()),
        restaurant_id: Set(d.restaurant_id.as_ref().map(ToString::to_string)),
        destination: Set(d.destination.as_ref().map(ToString::to_string)),
        fee: Set(d.fee.map(Fee::krw)),
        status: Set(status_label(d.status).to_owned()),
        rider_id: Set(d.rider_id.as_ref().map(ToString::to_string)),
        commission: Set(d.settlement.map(|s| s.commission)),
        payout: Set(d.settlement.map(|s| s.rider_payout)),
        called_at: Set(d.called_at),
        accepted_at: Set(d.accepted_at),
        picked_at: Set(d.picked_at),
        completed_at: Set(d.completed_at),
        cancelled_at: Set(d.cancelled_at),
        settle_requested_at: Set(d.settle_requested_at),
        hold_requested_at: Set(d.hold_requested_at),
        updated_at: Set(d.updated_at),
    }
}

fn to_domain(row: entity::Model) -> Result<Delivery, DbErr> {
    let corrupt = |what: &str| DbErr::Custom(format!("deliveries row {}: invalid {what}", row.call_id));
    let fee = row
        .fee
        .map(|f| Fee::parse(f, "fee"))
        .transpose()
        .map_err(|_| corrupt("fee"))?;
    let settlement = match (row.commission, row.payout) {
        (Some(commission), Some(rider_payout)) => Some(Settlement {
            fee: fee.map_or(commission + rider_payout, Fee::krw),
            commission,
            rider_payout,
        }),
        _ => None,
    };
    Ok(Delivery {
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
        fee,
        status: status_from_label(&row.status).ok_or_else(|| corrupt("status"))?,
        rider_id: row
            .rider_id
            .as_deref()
            .map(|r| RiderId::parse(r, "rider_id"))
            .transpose()
            .map_err(|_| corrupt("rider_id"))?,
        settlement,
        called_at: row.called_at,
        accepted_at: row.accepted_at,
        picked_at: row.picked_at,
        completed_at: row.completed_at,
        cancelled_at: row.cancelled_at,
        settle_requested_at: row.settle_requested_at,
        hold_requested_at: row.hold_requested_at,
        updated_at: row.updated_at,
    })
}
