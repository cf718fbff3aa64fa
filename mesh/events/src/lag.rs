//! How far behind each durable consumer is: what an operator looks at when events seem slow.

use futures::TryStreamExt;

use crate::{BusError, STREAM_NAME};

/// One durable consumer's position in the events stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerLag {
    /// Durable name (`<service>__<subject>`).
    pub name: String,
    /// The subject it reads.
    pub filter: String,
    /// Events in the stream it has not been given yet.
    pub pending: u64,
    /// Events given to it and not acknowledged yet (being applied, or waiting for a retry).
    pub ack_pending: usize,
    /// Events it was given more than once and has not acknowledged.
    pub redelivered: usize,
    /// The last stream sequence it was given.
    pub delivered_sequence: u64,
}

/// The last sequence of the events stream and every durable consumer's lag, by name.
pub async fn consumer_lag(jetstream: &async_nats::jetstream::Context) -> Result<(u64, Vec<ConsumerLag>), BusError> {
    let error = |e: Box<dyn std::error::Error + Send + Sync>| BusError::Stream(e);
    let mut stream = jetstream
        .get_stream(STREAM_NAME)
        .await
        .map_err(|e| error(Box::new(e)))?;
    let last = stream.info().await.map_err(|e| error(Box::new(e)))?.state.last_sequence;
    let mut lags: Vec<ConsumerLag> = stream
        .consumers()
        .map_ok(|info| ConsumerLag {
            name: info.name,
            filter: info.config.filter_subject,
            pending: info.num_pending,
            ack_pending: info.num_ack_pending,
            redelivered: info.num_redelivered,
            delivered_sequence: info.delivered.stream_sequence,
        })
        .try_collect()
        .await
        .map_err(|e| error(Box::new(e)))?;
    lags.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((last, lags))
}
