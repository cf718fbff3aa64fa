//! Watches that see every change, whichever replica made it. A service's watchers are fed by the
//! changes its process commits; with several replicas the events that change state are applied by
//! whichever replica the durable consumer hands them to, so a watch on one replica would miss most of
//! them. Instead, every replica announces each committed change of a watched row on NATS (core NATS,
//! `baemin.changes.<service>`, the row's key as payload), after the commit; every replica follows the
//! announcements of all — its own included — and re-reads the row from the shared database for its
//! watchers. Core NATS delivers at most once: whenever the connection was lost (and with it, perhaps,
//! announcements) the feed says [`Notice::Gap`], and watchers resync from the database.

use std::{future::Future, time::Duration};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_util::sync::CancellationToken;

use crate::{BusError, EventBus};

/// Subjects of the announcements (never captured by the events stream, `baemin.events.>`).
const PREFIX: &str = "baemin.changes";

/// What a replica learns from the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The row with this key changed, on some replica, and is committed.
    Changed(String),
    /// Announcements may have been lost (the connection to NATS went away and came back): read again.
    Gap,
}

/// Announces a service's committed changes to all its replicas, and follows theirs.
#[derive(Clone)]
pub struct ChangeFeed {
    bus: EventBus,
    subject: String,
}

impl ChangeFeed {
    /// The feed of `service` (`report`, `rider`, `call`) on `bus`.
    pub fn new(bus: &EventBus, service: &str) -> Self {
        Self {
            bus: bus.clone(),
            subject: format!("{PREFIX}.{service}"),
        }
    }

    /// Tells every replica that the row `key` changed. Call it after the commit. Best effort: an
    /// announcement that cannot be sent is covered by the [`Notice::Gap`] the lost connection causes.
    pub async fn announce(&self, key: &str) {
        let payload = Bytes::copy_from_slice(key.as_bytes());
        if let Err(err) = self.bus.client().publish(self.subject.clone(), payload).await {
            tracing::debug!(error = %err, key, "change not announced; watchers resync when NATS returns");
        }
    }

    /// The announcements of every replica from now on, and a [`Notice::Gap`] after each reconnect.
    pub async fn follow(&self) -> Result<impl Stream<Item = Notice> + Send + 'static, BusError> {
        let reconnects = BroadcastStream::new(self.bus.reconnects()).map(|_| Notice::Gap);
        let announcements = self
            .bus
            .client()
            .subscribe(self.subject.clone())
            .await
            .map_err(|e| BusError::Subscribe(Box::new(e)))?
            .map(|message| Notice::Changed(String::from_utf8_lossy(&message.payload).into_owned()));
        Ok(futures::stream::select(announcements, reconnects))
    }
}

impl ChangeFeed {
    /// Follows the feed until `stop`: `read_again(key)` for each announced change while `watched()`
    /// says this replica has somebody to tell (a watcher subscribes before it reads, so one that comes
    /// later reads the change itself: nothing is read for nobody), `resync()` once the subscription is
    /// in place (anything announced before it is unknown) and after every gap. A subscription that
    /// fails is retried with backoff.
    pub async fn run<R, F>(self, stop: CancellationToken, watched: impl Fn() -> bool, read_again: R, resync: impl Fn())
    where
        R: Fn(String) -> F,
        F: Future<Output = ()>,
    {
        let mut backoff = Duration::from_millis(100);
        loop {
            let notices = match self.follow().await {
                Ok(notices) => notices,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot follow the change feed; retrying in {backoff:?}");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = stop.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            resync();
            futures::pin_mut!(notices);
            loop {
                let notice = tokio::select! {
                    () = stop.cancelled() => return,
                    notice = notices.next() => notice,
                };
                match notice {
                    Some(Notice::Changed(key)) if watched() => read_again(key).await,
                    Some(Notice::Changed(_)) => {}
                    Some(Notice::Gap) => resync(),
                    None => break,
                }
            }
        }
    }
}

/// Reconnections of a bus's client, for followers of [`ChangeFeed`]s.
pub(crate) fn reconnect_channel() -> broadcast::Sender<()> {
    broadcast::channel(16).0
}
