//! Events a test publishes on the stream as the call service would: what a consumer under test is fed.

use baemin_mesh_events::{Event, new_envelope};
use baemin_proto::events::v1::CallPlaced;
use prost::Message;

/// Publishes a `call.placed` of `n` new calls (a restaurant each) through the NATS at `nats_url`, each
/// acknowledged by JetStream; returns their call ids, in order.
pub async fn place_calls(nats_url: &str, n: usize) -> Vec<String> {
    let client = async_nats::connect(nats_url)
        .await
        .unwrap_or_else(|e| panic!("connecting to {nats_url}: {e}"));
    let js = async_nats::jetstream::new(client);
    let mut placed = Vec::with_capacity(n);
    for i in 0..n {
        let call_id = uuid::Uuid::now_v7().to_string();
        let event = Event::CallPlaced(CallPlaced {
            restaurant_id: format!("store-{i}"),
            destination: "Gangnam-gu 1".into(),
            fee: 3_000,
            payment_pending: false,
        });
        let envelope = new_envelope("test", &call_id, event.clone());
        let subject = baemin_proto::events::subject_of(&event);
        js.publish(subject, envelope.encode_to_vec().into())
            .await
            .unwrap_or_else(|e| panic!("publishing: {e}"))
            .await
            .unwrap_or_else(|e| panic!("JetStream did not store the event: {e}"));
        placed.push(call_id);
    }
    placed
}
