//! The idempotent inbox: an event id is recorded in the same transaction as the change it causes,
//! so a redelivered event is recognised and applies nothing twice.

use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait, TryInsertResult};

use crate::Envelope;

/// The `inbox_events` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// One applied event.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "inbox_events")]
    pub struct Model {
        /// The envelope's event id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: String,
        /// The subject it came on.
        pub subject: String,
        /// When it was applied, ms since the epoch.
        pub processed_at: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Records `envelope` as applied inside `txn`. `true` the first time; `false` if it was applied
/// before, in which case the caller applies nothing and just commits (and acks).
pub async fn first_delivery<C: ConnectionTrait>(txn: &C, subject: &str, envelope: &Envelope) -> Result<bool, DbErr> {
    let row = entity::ActiveModel {
        event_id: Set(envelope.event_id.clone()),
        subject: Set(subject.to_owned()),
        processed_at: Set(crate::envelope::now_millis()),
    };
    let result = entity::Entity::insert(row)
        .on_conflict_do_nothing_on([entity::Column::EventId])
        .exec_without_returning(txn)
        .await?;
    Ok(match result {
        TryInsertResult::Inserted(n) => n > 0,
        TryInsertResult::Conflicted | TryInsertResult::Empty => false,
    })
}
