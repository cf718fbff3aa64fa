//! The idempotent inbox: an event id is recorded in the same transaction as the change it causes,
//! so a redelivered event is recognised and applies nothing twice.

use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait, TryInsertResult};

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

/// Records event `event_id` (from `subject`) as applied inside `txn`. `true` the first time; `false` if
/// it was applied before, in which case the caller applies nothing and just commits (and acks).
pub async fn first_delivery<C: ConnectionTrait>(txn: &C, subject: &str, event_id: &str) -> Result<bool, DbErr> {
    let row = entity::ActiveModel {
        event_id: Set(event_id.to_owned()),
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

#[cfg(test)]
mod tests {
    use sea_orm_migration::{MigrationTrait, MigratorTrait};

    use super::*;
    use crate::{Event, new_envelope};

    struct Migrator;

    impl MigratorTrait for Migrator {
        fn migrations() -> Vec<Box<dyn MigrationTrait>> {
            vec![Box::new(crate::migration::CreateInbox)]
        }
    }

    #[tokio::test]
    async fn an_event_is_first_delivered_once_and_a_redelivery_is_recognised() {
        let db = baemin_mesh_store::connect::<Migrator>("sqlite::memory:", 1)
            .await
            .unwrap();
        let event = Event::CallCancelled(Default::default());
        let envelope = new_envelope("test", "call", event);
        let other = new_envelope("test", "call", Event::CallCancelled(Default::default()));
        assert!(first_delivery(&db, "s", &envelope.event_id).await.unwrap());
        assert!(
            !first_delivery(&db, "s", &envelope.event_id).await.unwrap(),
            "a redelivery applies nothing"
        );
        assert!(
            first_delivery(&db, "s", &other.event_id).await.unwrap(),
            "another event is new"
        );
    }
}
