//! Events on NATS JetStream: the stream, the transactional outbox and its relay, the idempotent inbox,
//! and durable pull consumers with explicit acks.

mod batch;
mod bus;
mod changes;
mod consumer;
pub mod deadletter;
mod envelope;
pub mod failures;
pub mod inbox;
mod lag;
pub mod lease;
mod local;
pub mod migration;
pub mod outbox;
mod reconcile;
pub mod retention;
mod servers;

pub use baemin_proto::events::v1::{Envelope, envelope::Event};
pub use bus::{BusError, EventBus, STREAM_NAME, StreamSettings};
pub use changes::{ChangeFeed, Notice};
pub use consumer::{
    ConsumerMetrics, ConsumerSpec, DEFAULT_MAX_ATTEMPTS, EventHandler, HandleError, LANES, SQLITE_LANES, spawn_consumer,
};
pub use envelope::new_envelope;
pub use lag::{ConsumerLag, consumer_lag};
pub use local::{nats_server_binary, nats_server_version, syncs_every_write};
pub use outbox::{Outbox, OutboxRelay};
pub use servers::server_addrs;
