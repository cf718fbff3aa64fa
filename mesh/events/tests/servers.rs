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
