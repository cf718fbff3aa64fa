//! The call follows its delivery: the rider's and payment's events applied to it, once per event id,
//! converging whatever the order — one at a time or a consumer's queued batch in one transaction.

use baemin_mesh_store::Txn;

use super::{
    Call, CallApp, CallError, Delivery,
    service::{Change, RACE_RETRIES, Step},
};

impl CallApp {
    /// Applies an event of the rider service (or payment's settlement), once per event id.
    pub async fn follow(&self, delivery: Delivery) -> Result<(), CallError> {
        self.follow_all(std::slice::from_ref(&delivery)).await
    }

    /// Applies `deliveries` in one transaction, each once (a redelivered one, recognised by its inbox
    /// record, applies nothing), and tells watchers after the commit. A lost race with another change of
    /// one of the calls applies the whole batch again (up to `RACE_RETRIES` times, then `Contended`); an
    /// event for an unknown call fails the batch (`NotFound`).
    ///
    /// Each call's events apply in the order given. Locks are taken in one order in every replica — the
    /// inbox records by event id, then the calls by call id — so two replicas applying batches about
    /// the same calls or events cannot deadlock (PostgreSQL would fail one of them after a second).
    pub async fn follow_all(&self, deliveries: &[Delivery]) -> Result<(), CallError> {
        for _ in 0..RACE_RETRIES {
            let txn = baemin_mesh_store::begin_write(&self.db).await?;
            match self.follow_in(&txn, deliveries).await {
                Ok(Some(stored)) => return self.finish(txn, &stored).await,
                // Another change of one of the calls committed first: decide again on it.
                Ok(None) => txn.rollback().await?,
                Err(err) => {
                    // Ended, not dropped: what was read here (on SQLite maybe not yet durable) was acted on.
                    let _ = txn.rollback().await;
                    return Err(err);
                }
            }
        }
        let calls: Vec<&str> = deliveries.iter().map(|d| d.call_id.as_str()).collect();
        Err(CallError::Contended(format!(
            "calls {calls:?} are changing concurrently; retry"
        )))
    }

    /// The batch inside `txn`: the changes stored, or `None` if a race was lost.
    async fn follow_in(&self, txn: &Txn, deliveries: &[Delivery]) -> Result<Option<Vec<Change>>, CallError> {
        let mut events: Vec<(&Delivery, bool)> = deliveries.iter().map(|d| (d, false)).collect();
        let mut by_event: Vec<&mut (&Delivery, bool)> = events.iter_mut().collect();
        by_event.sort_by(|a, b| a.0.event_id.cmp(&b.0.event_id));
        for (delivery, first) in by_event {
            *first = baemin_mesh_events::inbox::first_delivery(txn, &delivery.subject, &delivery.event_id).await?;
        }
        let mut by_call: Vec<&(&Delivery, bool)> = events.iter().filter(|(_, first)| *first).collect();
        by_call.sort_by(|a, b| a.0.call_id.as_str().cmp(b.0.call_id.as_str())); // stable: per call as given
        let mut stored = Vec::with_capacity(by_call.len());
        for (delivery, _) in by_call {
            let decide = |call: &Call| Ok(call.apply(&delivery.event, delivery.occurred_at).map(Change::visible));
            match self.step(txn, &delivery.call_id, None, decide).await? {
                Step::Stored(change) => stored.push(change),
                Step::Unchanged(_) => {}
                Step::Raced => return Ok(None),
            }
        }
        Ok(Some(stored))
    }
}
