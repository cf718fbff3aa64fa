//! The call follows its delivery: the rider's and payment's events applied to it, once per event id,
//! converging whatever the order — one at a time or a consumer's queued batch in one transaction.

use super::{
    CallApp, CallError, Delivery,
    service::{Change, RACE_RETRIES, Step},
};

impl CallApp {
    /// Applies an event of the rider service (or payment's settlement), once per event id.
    pub async fn follow(&self, delivery: Delivery) -> Result<(), CallError> {
        self.follow_all(std::slice::from_ref(&delivery)).await
    }

    /// Applies `deliveries` in order in one transaction, each once (a redelivered one, recognised by its
    /// inbox record, applies nothing), and tells watchers after the commit. A lost race with another
    /// change of one of the calls applies the whole batch again (up to `RACE_RETRIES` times, then
    /// `Contended`); an event for an unknown call fails the batch (`NotFound`).
    pub async fn follow_all(&self, deliveries: &[Delivery]) -> Result<(), CallError> {
        'attempt: for _ in 0..RACE_RETRIES {
            let txn = baemin_mesh_store::begin_write(&self.db).await?;
            let mut stored = Vec::with_capacity(deliveries.len());
            for delivery in deliveries {
                let inbox = Some((delivery.subject.as_str(), delivery.event_id.as_str()));
                let decide =
                    |call: &super::Call| Ok(call.apply(&delivery.event, delivery.occurred_at).map(Change::visible));
                match self.step(&txn, &delivery.call_id, inbox, decide).await? {
                    Step::Stored(change) => stored.push(change),
                    Step::Unchanged(_) => {}
                    Step::Raced => {
                        txn.rollback().await?;
                        continue 'attempt;
                    }
                }
            }
            return self.finish(txn, &stored).await;
        }
        let calls: Vec<&str> = deliveries.iter().map(|d| d.call_id.as_str()).collect();
        Err(CallError::Contended(format!(
            "calls {calls:?} are changing concurrently; retry"
        )))
    }
}
