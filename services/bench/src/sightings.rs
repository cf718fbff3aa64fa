//! When calls were placed and when a watch stream first showed them: the event lag (PlaceCall OK → the
//! row on the report's stream), and a way for a caller to wait until the rider board shows its call.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use tokio::{sync::oneshot, time::Instant};

/// Calls placed and calls seen, by call id.
#[derive(Clone, Default)]
pub struct Sightings(Arc<Mutex<Inner>>);

#[derive(Default)]
struct Inner {
    pending: HashMap<String, Entry>,
    /// (placed, lag) of every call seen after it was placed.
    lags: Vec<(Instant, Duration)>,
    /// Calls the stream showed before their PlaceCall answer arrived (lag counted as 0).
    seen_first: u64,
}

#[derive(Default)]
struct Entry {
    placed: Option<Instant>,
    seen: Option<Instant>,
    waiter: Option<oneshot::Sender<()>>,
}

/// Lags of the calls placed in a run.
#[derive(Debug, Clone, Default)]
pub struct Lags {
    /// (when placed, lag), in the order seen.
    pub lags: Vec<(Instant, Duration)>,
    /// Placed calls the stream has not shown.
    pub unseen: u64,
    /// Seen before the PlaceCall answer arrived.
    pub seen_first: u64,
}

impl Sightings {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// PlaceCall answered OK for `call_id` at `at`.
    pub fn placed(&self, call_id: String, at: Instant) {
        let mut inner = self.lock();
        let entry = inner.pending.entry(call_id).or_default();
        if entry.seen.is_some() {
            inner.seen_first += 1;
            inner.lags.push((at, Duration::ZERO));
        } else {
            entry.placed = Some(at);
        }
    }

    /// A watch stream showed `call_id` at `at` (only its first showing counts).
    pub fn seen(&self, call_id: &str, at: Instant) {
        let mut inner = self.lock();
        let Some(entry) = inner.pending.get_mut(call_id) else {
            inner.pending.insert(
                call_id.to_owned(),
                Entry {
                    seen: Some(at),
                    ..Entry::default()
                },
            );
            return;
        };
        if entry.seen.is_some() {
            return;
        }
        entry.seen = Some(at);
        if let Some(waiter) = entry.waiter.take() {
            let _ = waiter.send(());
        }
        if let Some(placed) = entry.placed {
            inner.lags.push((placed, at.saturating_duration_since(placed)));
        }
    }

    /// Completes once a watch stream has shown `call_id`.
    pub async fn wait_seen(&self, call_id: &str) {
        let rx = {
            let mut inner = self.lock();
            let entry = inner.pending.entry(call_id.to_owned()).or_default();
            if entry.seen.is_some() {
                return;
            }
            let (tx, rx) = oneshot::channel();
            entry.waiter = Some(tx);
            rx
        };
        let _ = rx.await;
    }

    /// Forgets `call_id` (a caller that no longer waits for it).
    pub fn forget(&self, call_id: &str) {
        self.lock().pending.remove(call_id);
    }

    /// The lags so far, and how many placed calls are still unseen.
    pub fn lags(&self) -> Lags {
        let inner = self.lock();
        Lags {
            lags: inner.lags.clone(),
            unseen: inner.unseen(),
            seen_first: inner.seen_first,
        }
    }

    /// Placed calls not seen yet.
    pub fn unseen(&self) -> u64 {
        self.lock().unseen()
    }
}

impl Inner {
    fn unseen(&self) -> u64 {
        self.pending
            .values()
            .filter(|e| e.placed.is_some() && e.seen.is_none())
            .count() as u64
    }
}
