//! Making envelopes: every event gets a UUIDv7 id (dedupe key) and the instant it happened.

use baemin_proto::events::v1::{Envelope, envelope::Event};

/// An envelope for `event` about `call_id`, produced by service `producer`, happening now.
pub fn new_envelope(producer: &str, call_id: &str, event: Event) -> Envelope {
    Envelope {
        event_id: uuid::Uuid::now_v7().to_string(),
        occurred_at: Some(baemin_proto::time::from_millis(now_millis())),
        call_id: call_id.to_owned(),
        producer: producer.to_owned(),
        event: Some(event),
    }
}

pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
