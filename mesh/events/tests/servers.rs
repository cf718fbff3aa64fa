//! Reaching NATS by a list of servers, as a cluster is named (`NATS_URL=nats://a,nats://b,...`): the bus
//! connects through whichever member answers, even when the first one named is down.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use baemin_mesh_events::{EventBus, StreamSettings};
use baemin_mesh_testkit::{NatsServer, free_port};

#[tokio::test]
async fn a_list_of_servers_connects_through_a_member_that_answers_when_the_first_is_down() {
    let nats = NatsServer::start().await;
    let down = format!("nats://127.0.0.1:{}", free_port());
    let list = format!("{down}, {}", nats.url());
    let bus = EventBus::connect(&list, "test")
        .await
        .expect("connected through the second member");
    bus.ensure_stream(&StreamSettings::default())
        .await
        .expect("JetStream answers");
}

#[tokio::test]
async fn a_list_with_an_entry_that_is_no_nats_url_is_refused_before_connecting() {
    let err = EventBus::connect("nats://127.0.0.1:4222,127.0.0.1:4223", "test")
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("127.0.0.1:4223"), "{err}");
}

#[tokio::test]
async fn a_service_start_adds_what_it_needs_to_the_stream_and_keeps_what_an_operator_raised() {
    use std::time::Duration;

    use async_nats::jetstream::stream;
    let nats = NatsServer::start().await;
    let bus = EventBus::connect(&nats.url(), "test").await.unwrap();
    bus.ensure_stream(&StreamSettings::default()).await.unwrap();
    // The operator raises the duplicate window, caps the stream and adds a subject of their own.
    let mut info = bus
        .jetstream()
        .get_stream(baemin_mesh_events::STREAM_NAME)
        .await
        .unwrap();
    let mut raised = info.info().await.unwrap().config.clone();
    raised.duplicate_window = Duration::from_secs(600);
    raised.max_messages = 5_000_000;
    raised.subjects.push("ops.audit.>".into());
    bus.jetstream().update_stream(raised).await.unwrap();

    // A rolling restart: every replica ensures the stream with its defaults again.
    bus.ensure_stream(&StreamSettings::default()).await.unwrap();
    let kept: stream::Config = info.info().await.unwrap().config.clone();
    assert_eq!(
        kept.duplicate_window,
        Duration::from_secs(600),
        "not lowered back to 2 minutes"
    );
    assert_eq!(kept.max_messages, 5_000_000);
    assert!(kept.subjects.contains(&"ops.audit.>".to_owned()));

    // A service that needs a longer window than the stream has raises it.
    let wider = StreamSettings {
        duplicate_window: Duration::from_secs(900),
        ..StreamSettings::default()
    };
    bus.ensure_stream(&wider).await.unwrap();
    assert_eq!(
        info.info().await.unwrap().config.duplicate_window,
        Duration::from_secs(900)
    );
}
