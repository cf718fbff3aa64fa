//! Concurrent holders per key, at most so many each: what the limits on connections per peer, on
//! anonymous streams per peer and on watches per subject have in common. A slot is given back when its
//! guard drops; a key's entry goes with its last slot, so the table only ever holds keys with something
//! open, and the open things are bounded themselves.

use std::{
    collections::HashMap,
    hash::Hash,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::Frame;
use pin_project_lite::pin_project;

type Table<K> = Arc<Mutex<HashMap<K, usize>>>;

/// At most `max` slots held at once per key; cheap to clone (clones share the table).
#[derive(Debug)]
pub struct Slots<K> {
    max: usize,
    held: Table<K>,
}

impl<K> Clone for Slots<K> {
    fn clone(&self) -> Self {
        Self {
            max: self.max,
            held: Arc::clone(&self.held),
        }
    }
}

impl<K: Hash + Eq + Clone> Slots<K> {
    /// Slots for up to `max` holders per key.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            held: Arc::default(),
        }
    }

    /// The most holders per key.
    pub fn max(&self) -> usize {
        self.max
    }

    /// A slot for `key`, or `None` when `key` already holds the most.
    pub fn try_acquire(&self, key: K) -> Option<Slot<K>> {
        if self.max == 0 {
            return None;
        }
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let count = held.entry(key.clone()).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Slot {
            key,
            held: Arc::clone(&self.held),
        })
    }

    /// Slots held by `key` now.
    #[cfg(test)]
    pub fn held(&self, key: &K) -> usize {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    /// Keys holding slots now.
    #[cfg(test)]
    pub fn keys(&self) -> usize {
        self.held.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// One held slot of [`Slots`], given back on drop.
#[derive(Debug)]
pub struct Slot<K: Hash + Eq> {
    key: K,
    held: Table<K>,
}

impl<K: Hash + Eq> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

pin_project! {
    /// A response body holding `guard` (a [`Slot`]) until it is dropped: hyper drops a response body
    /// when its stream ends, whether it finished, was reset by the client, or its connection closed.
    pub struct Holding<B, G> {
        #[pin]
        inner: B,
        guard: G,
    }
}

impl<B, G> Holding<B, G> {
    /// `inner`, holding `guard` as long as it lives.
    pub fn new(inner: B, guard: G) -> Self {
        Self { inner, guard }
    }
}

impl<B: http_body::Body<Data = Bytes>, G> http_body::Body for Holding<B, G> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_holds_at_most_max_slots_and_gets_one_back_when_one_drops() {
        let slots = Slots::new(2);
        let first = slots.try_acquire("a").unwrap();
        let _second = slots.try_acquire("a").unwrap();
        assert!(slots.try_acquire("a").is_none());
        assert!(slots.try_acquire("b").is_some(), "another key has its own slots");
        drop(first);
        assert!(slots.try_acquire("a").is_some());
    }

    #[test]
    fn a_key_without_slots_leaves_no_entry_behind() {
        let slots = Slots::new(1);
        for n in 0..1000 {
            drop(slots.try_acquire(n).unwrap());
        }
        let held = slots.try_acquire(7).unwrap();
        assert!(slots.try_acquire(7).is_none());
        assert_eq!(slots.keys(), 1);
        drop(held);
        assert_eq!((slots.keys(), slots.held(&7)), (0, 0));
    }

    #[tokio::test]
    async fn a_body_holds_its_slot_until_it_is_dropped() {
        use http_body_util::BodyExt;
        let slots = Slots::new(1);
        let body = Holding::new(
            http_body_util::Full::new(Bytes::from_static(b"abc")),
            slots.try_acquire("a").unwrap(),
        );
        assert_eq!(slots.held(&"a"), 1);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abc");
        assert_eq!(slots.held(&"a"), 0, "the collected body was dropped with its slot");
    }
}
