//! Events on NATS JetStream: the stream, the transactional outbox and its relay, the idempotent inbox, durable pull consumers.
