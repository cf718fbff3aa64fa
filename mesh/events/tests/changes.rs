//! The change feed: every replica's announcements reach every follower, in order; a follower with no
//! watcher to tell reads nothing again.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use baemin_mesh_events::{ChangeFeed, EventBus};
use baemin_mesh_testkit::NatsServer;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_change_announced_while_nobody_watches_is_not_read_again() {
    let nats = NatsServer::start().await;
    let bus = EventBus::connect(&nats.url(), "test").await.unwrap();
    let feed = ChangeFeed::new(&bus, "test");
    // Whether a watcher is there, as the follower asks for each announcement: not for the first one.
    let watchers = Arc::new(Mutex::new(VecDeque::from([false, true, true])));
    let read = Arc::new(Mutex::new(Vec::new()));
    let (subscribed, mut resyncs) = tokio::sync::mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let follower = tokio::spawn({
        let (feed, watchers, read, stop) = (feed.clone(), watchers.clone(), read.clone(), stop.clone());
        async move {
            feed.run(
                stop,
                move || watchers.lock().unwrap().pop_front().unwrap_or(true),
                move |key| {
                    let read = read.clone();
                    async move { read.lock().unwrap().push(key) }
                },
                move || {
                    let _ = subscribed.send(());
                },
            )
            .await;
        }
    });
    resyncs.recv().await.expect("subscribed");

    for key in ["nobody-watches", "watched", "watched-too"] {
        feed.announce(key).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while read.lock().unwrap().len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    assert_eq!(*read.lock().unwrap(), ["watched", "watched-too"]);
    assert!(watchers.lock().unwrap().is_empty(), "each announcement asked once");
    stop.cancel();
    follower.await.unwrap();
}
