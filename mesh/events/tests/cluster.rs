//! The bus on a three-node JetStream cluster with a replicated stream, as production runs it: reached by
//! the list of its members, it keeps publishing through a member's crash, and the stream keeps every
//! acknowledged event.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::time::{Duration, Instant};

use baemin_mesh_events::{EventBus, STREAM_NAME, StreamSettings};
use baemin_mesh_testkit::NatsCluster;

/// Retries `attempt` until it succeeds or `patience` runs out (a cluster elects leaders, a client fails
/// over: both take a moment).
async fn eventually<T, E: std::fmt::Debug, F: std::future::Future<Output = Result<T, E>>>(
    what: &str,
    patience: Duration,
    attempt: impl Fn() -> F,
) -> T {
    let deadline = Instant::now() + patience;
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(err) if Instant::now() < deadline => {
                tracing::debug!(?err, "{what}: retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => panic!("{what}: {err:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_r3_stream_on_a_cluster_keeps_every_acknowledged_event_through_a_members_crash() {
    let mut cluster = NatsCluster::start(3).await;
    let bus = EventBus::connect(&cluster.urls(), "test")
        .await
        .expect("connected through the list");
    let r3 = StreamSettings {
        replicas: 3,
        ..StreamSettings::default()
    };
    let patience = Duration::from_secs(30);
    eventually("creating the R3 stream", patience, || bus.ensure_stream(&r3)).await;
    let publish = |i: usize| {
        let js = bus.jetstream().clone();
        async move {
            let ack = js
                .publish(format!("baemin.events.test.{i}"), format!("event {i}").into())
                .await
                .map_err(|e| e.to_string())?;
            ack.await.map_err(|e| e.to_string())
        }
    };
    for i in 0..10 {
        eventually("publishing", patience, || publish(i)).await;
    }

    // The first member named — the seed most clients reach first — crashes.
    cluster.kill(0);
    for i in 10..20 {
        eventually("publishing after the crash", patience, || publish(i)).await;
    }
    let stored = eventually("reading the stream", patience, || async {
        let mut stream = bus
            .jetstream()
            .get_stream(STREAM_NAME)
            .await
            .map_err(|e| e.to_string())?;
        let info = stream.info().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((info.state.messages, info.config.num_replicas))
    })
    .await;
    assert_eq!(stored, (20, 3), "every acknowledged event, kept three ways");
}
