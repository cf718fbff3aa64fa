//! WatchCall: the call as it is, then each visible change of it, until a terminal status was sent or
//! the server starts draining (then UNAVAILABLE "shutting down; watch again", so a watcher never holds
//! the drain open).

use std::sync::Arc;

use baemin_kernel::CallId;
use baemin_proto::call::v1 as pb;
use futures::Stream;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::proto::to_pb;
use crate::domain::{Actor, Call, CallApp, CallError, Subscription};

/// The stream of `current`, then of the changes of the same call that `subscription` (taken before
/// `current` was read) hears of, for `actor` (who was allowed to see `current`), until `stop` is cancelled.
pub fn changes(
    app: Arc<CallApp>,
    actor: Actor,
    current: Call,
    subscription: Subscription,
    stop: CancellationToken,
) -> impl Stream<Item = Result<pb::WatchCallResponse, Status>> + Send + 'static {
    let Subscription { changes, resyncs } = subscription;
    let watch = Watch {
        resyncs,
        app,
        actor,
        stop,
        call_id: current.call_id.clone(),
        first: Some(current),
        changes,
        last_version: i64::MIN,
        done: false,
    };
    futures::stream::unfold(watch, |mut watch| async move {
        let next = watch.next().await?;
        let message = next.map(|call| pb::WatchCallResponse {
            call: Some(to_pb(&call)),
        });
        Some((message, watch))
    })
}

struct Watch {
    app: Arc<CallApp>,
    /// Changes when announcements may have been lost: read the call again, as after a lag.
    resyncs: tokio::sync::watch::Receiver<u64>,
    actor: Actor,
    stop: CancellationToken,
    call_id: CallId,
    first: Option<Call>,
    changes: broadcast::Receiver<Call>,
    /// Versions only grow: anything not newer than what was sent is a repeat or arrived late.
    last_version: i64,
    done: bool,
}

impl Watch {
    async fn next(&mut self) -> Option<Result<Call, Status>> {
        if self.done {
            return None;
        }
        loop {
            let call = match self.first.take() {
                Some(first) => first,
                None => match self.next_change().await {
                    None => {
                        self.done = true;
                        return Some(Err(CallError::ShuttingDown.into()));
                    }
                    Some(Ok(call)) if call.call_id == self.call_id => call,
                    Some(Ok(_)) => continue,
                    // Changes were dropped for this slow watcher: the call as it is now covers them.
                    Some(Err(RecvError::Lagged(missed))) => {
                        tracing::debug!(call_id = %self.call_id, missed, "watcher lagged; re-reading the call");
                        match self.app.get(&self.actor, &self.call_id).await {
                            Ok(call) => call,
                            Err(err) => {
                                self.done = true;
                                return Some(Err(err.into()));
                            }
                        }
                    }
                    Some(Err(RecvError::Closed)) => return None,
                },
            };
            // Ownership is checked on every message, not only on the first (a call's restaurant and taker
            // never change today; this keeps a watch correct if that rule ever does).
            if call.version <= self.last_version || self.actor.ensure_may_see(&call).is_err() {
                continue;
            }
            self.last_version = call.version;
            self.done = call.status.is_terminal();
            return Some(Ok(call));
        }
    }

    /// The next change of any call, or `None` once the server drains.
    async fn next_change(&mut self) -> Option<Result<Call, RecvError>> {
        tokio::select! {
            biased;
            () = self.stop.cancelled() => None,
            Ok(()) = self.resyncs.changed() => Some(Err(RecvError::Lagged(0))),
            change = self.changes.recv() => Some(change),
        }
    }
}

#[cfg(test)]
mod tests {
    use baemin_kernel::{CancelReason, RiderId};
    use futures::StreamExt;
    use tonic::Code;

    use super::*;
    use std::time::Duration;

    use baemin_mesh_events::Outbox;

    use crate::domain::{
        Delivery, DeliveryEvent, Fallback,
        testing::{FakePayments, app, new_call},
    };

    const COMPANY: Actor = Actor::Company;

    /// The rider service's event: rider r-1 accepted `call`.
    fn accepted_by_r1(call: &Call) -> Delivery {
        Delivery {
            event_id: "e-1".into(),
            subject: "baemin.events.call.accepted".into(),
            call_id: call.call_id.clone(),
            event: DeliveryEvent::Accepted {
                rider: RiderId::parse("r-1", "rider_id").unwrap(),
            },
            occurred_at: 1,
        }
    }

    async fn statuses(stream: impl Stream<Item = Result<pb::WatchCallResponse, Status>>) -> Vec<pb::CallStatus> {
        stream
            .map(|message| {
                let call = message.unwrap().call.unwrap();
                pb::CallStatus::try_from(call.status).unwrap()
            })
            .collect()
            .await
    }

    #[tokio::test]
    async fn a_watch_sends_the_call_then_its_own_changes_and_ends_after_a_terminal_status() {
        let (app, _db) = app(FakePayments::new()).await;
        let app = Arc::new(app);
        let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
        let other = app.place(&COMPANY, new_call("req-2", 3_000)).await.unwrap();
        let subscription = app.watch();
        let stream = changes(
            app.clone(),
            COMPANY,
            call.clone(),
            subscription,
            CancellationToken::new(),
        );

        let accepted = accepted_by_r1(&call);
        app.follow(accepted.clone()).await.unwrap();
        app.follow(accepted).await.unwrap();
        app.cancel(&COMPANY, other.call_id, CancelReason::default())
            .await
            .unwrap();
        app.cancel(&COMPANY, call.call_id, CancelReason::default())
            .await
            .unwrap();

        assert_eq!(
            statuses(stream).await,
            [
                pb::CallStatus::Called,
                pb::CallStatus::Accepted,
                pb::CallStatus::Cancelled
            ]
        );
    }

    /// Announcements lost (another replica accepted the call; this one never heard of it) and the
    /// resync that says so, both between the watcher's subscription and its first message.
    #[tokio::test]
    async fn a_resync_after_the_watcher_subscribed_and_read_its_call_makes_it_read_the_call_again() {
        let (app, db) = app(FakePayments::new()).await;
        let app = Arc::new(app);
        let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
        let subscription = app.watch();
        let current = app.get(&COMPANY, &call.call_id).await.unwrap();
        let other_replica = CallApp::new(
            db,
            Outbox::new(),
            FakePayments::new(),
            Duration::from_secs(30),
            Fallback::Reject,
        );
        let accepted = accepted_by_r1(&call);
        other_replica.follow(accepted).await.unwrap();
        app.resync_watchers();

        let mut stream = Box::pin(changes(
            app.clone(),
            COMPANY,
            current,
            subscription,
            CancellationToken::new(),
        ));
        let status = |message: Option<Result<pb::WatchCallResponse, Status>>| {
            pb::CallStatus::try_from(message.unwrap().unwrap().call.unwrap().status).unwrap()
        };
        assert_eq!(status(stream.next().await), pb::CallStatus::Called);
        let next = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("the resync reached the watch");
        assert_eq!(status(next), pb::CallStatus::Accepted);
    }

    #[tokio::test]
    async fn a_watch_of_a_finished_call_sends_it_once_and_ends() {
        let (app, _db) = app(FakePayments::new()).await;
        let app = Arc::new(app);
        let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
        let cancelled = app
            .cancel(&COMPANY, call.call_id, CancelReason::default())
            .await
            .unwrap();
        let stream = changes(app.clone(), COMPANY, cancelled, app.watch(), CancellationToken::new());
        assert_eq!(statuses(stream).await, [pb::CallStatus::Cancelled]);
    }

    #[tokio::test]
    async fn an_open_watch_ends_with_unavailable_when_the_server_starts_draining() {
        let (app, _db) = app(FakePayments::new()).await;
        let app = Arc::new(app);
        let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
        let draining = CancellationToken::new();
        let mut stream = Box::pin(changes(app.clone(), COMPANY, call, app.watch(), draining.clone()));
        assert!(stream.next().await.unwrap().is_ok(), "the call as it is");

        draining.cancel();

        let status = stream.next().await.unwrap().unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "the call service is shutting down; watch again");
        assert!(stream.next().await.is_none(), "the stream ends");
    }
}
