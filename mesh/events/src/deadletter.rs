//! Dead letters: an event a consumer can never apply is kept, with the reason, on its own stream
//! (`BAEMIN_DEAD_LETTERS`, subjects `baemin.deadletter.<consumer>`) before it is terminated, so nothing
//! acknowledged is lost. An operator lists them and re-drives them onto their original subject.

use async_nats::{
    HeaderMap,
    jetstream::{self, message::PublishMessage, stream},
};
use bytes::Bytes;

use crate::BusError;

/// The stream holding dead letters of every consumer.
pub const DEAD_LETTER_STREAM: &str = "BAEMIN_DEAD_LETTERS";
/// Subject prefix of dead letters; the consumer's durable name follows.
pub const DEAD_LETTER_PREFIX: &str = "baemin.deadletter";

const REASON: &str = "Baemin-Dead-Reason";
const ORIGINAL_SUBJECT: &str = "Baemin-Original-Subject";
const ORIGINAL_SEQUENCE: &str = "Baemin-Original-Sequence";
const CONSUMER: &str = "Baemin-Consumer";
const DELIVERED: &str = "Baemin-Delivered";

/// The dead-letter stream's configuration (created or updated with the events stream).
pub(crate) fn stream_config(replicas: usize) -> stream::Config {
    stream::Config {
        name: DEAD_LETTER_STREAM.to_owned(),
        subjects: vec![format!("{DEAD_LETTER_PREFIX}.>")],
        storage: stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    }
}

/// Where a dead letter came from and why it died.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its sequence in the dead-letter stream (what `redrive` takes).
    pub sequence: u64,
    /// The durable consumer that gave it up.
    pub consumer: String,
    /// The subject it was published on.
    pub original_subject: String,
    /// Its sequence in the events stream.
    pub original_sequence: u64,
    /// How often it had been delivered.
    pub delivered: i64,
    /// Why it can never apply.
    pub reason: String,
    /// When it was dead-lettered (RFC 3339).
    pub dead_at: String,
    /// The message as it was published.
    pub payload: Bytes,
}

/// What a consumer knows about a message it gives up.
pub(crate) struct Casualty<'a> {
    pub consumer: &'a str,
    pub subject: &'a str,
    pub stream_sequence: u64,
    pub delivered: i64,
    pub reason: &'a str,
    pub payload: Bytes,
}

/// Stores a message that can never apply; returns once JetStream has it (only then may it be terminated).
pub(crate) async fn record(jetstream: &jetstream::Context, casualty: Casualty<'_>) -> Result<(), BusError> {
    let mut headers = HeaderMap::new();
    headers.insert(REASON, one_line(casualty.reason).as_str());
    headers.insert(ORIGINAL_SUBJECT, casualty.subject);
    headers.insert(ORIGINAL_SEQUENCE, casualty.stream_sequence.to_string().as_str());
    headers.insert(CONSUMER, casualty.consumer);
    headers.insert(DELIVERED, casualty.delivered.to_string().as_str());
    let message = PublishMessage::build()
        .payload(casualty.payload)
        .headers(headers)
        // The same message given up twice (a lost ack) is stored once.
        .message_id(format!("{}:{}", casualty.consumer, casualty.stream_sequence));
    let subject = format!("{DEAD_LETTER_PREFIX}.{}", casualty.consumer);
    let ack = jetstream
        .send_publish(subject, message)
        .await
        .map_err(|e| BusError::DeadLetter(Box::new(e)))?;
    ack.await.map_err(|e| BusError::DeadLetter(Box::new(e)))?;
    Ok(())
}

/// Header values are one line of printable text.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(512)
        .collect()
}

/// Every dead letter, oldest first.
pub async fn list(jetstream: &jetstream::Context) -> Result<Vec<DeadLetter>, BusError> {
    let error = |e: Box<dyn std::error::Error + Send + Sync>| BusError::DeadLetter(e);
    let mut stream = jetstream
        .get_stream(DEAD_LETTER_STREAM)
        .await
        .map_err(|e| error(Box::new(e)))?;
    let state = stream.info().await.map_err(|e| error(Box::new(e)))?.state.clone();
    let mut letters = Vec::new();
    if state.messages == 0 {
        return Ok(letters);
    }
    for sequence in state.first_sequence..=state.last_sequence {
        // Re-driven letters are deleted: their sequences are gaps.
        if let Ok(message) = stream.get_raw_message(sequence).await {
            letters.push(parse(message));
        }
    }
    Ok(letters)
}

fn parse(message: async_nats::jetstream::message::StreamMessage) -> DeadLetter {
    let header = |key: &str| {
        message
            .headers
            .get(key)
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default()
    };
    DeadLetter {
        sequence: message.sequence,
        consumer: header(CONSUMER),
        original_subject: header(ORIGINAL_SUBJECT),
        original_sequence: header(ORIGINAL_SEQUENCE).parse().unwrap_or_default(),
        delivered: header(DELIVERED).parse().unwrap_or_default(),
        reason: header(REASON),
        dead_at: message
            .time
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        payload: message.payload,
    }
}

/// Publishes dead letter `sequence` again on its original subject (every consumer of it sees it again;
/// those that applied it already skip it through their inbox), then removes it from the dead letters.
pub async fn redrive(jetstream: &jetstream::Context, sequence: u64) -> Result<DeadLetter, BusError> {
    let error = |e: Box<dyn std::error::Error + Send + Sync>| BusError::DeadLetter(e);
    let stream = jetstream
        .get_stream(DEAD_LETTER_STREAM)
        .await
        .map_err(|e| error(Box::new(e)))?;
    let letter = parse(stream.get_raw_message(sequence).await.map_err(|e| error(Box::new(e)))?);
    if !letter.original_subject.starts_with(crate::bus::EVENTS_PREFIX) {
        return Err(error(format!("dead letter {sequence} has no events subject").into()));
    }
    let message = PublishMessage::build()
        .payload(letter.payload.clone())
        .message_id(format!("redrive:{DEAD_LETTER_STREAM}:{sequence}"));
    let ack = jetstream
        .send_publish(letter.original_subject.clone(), message)
        .await
        .map_err(|e| error(Box::new(e)))?;
    ack.await.map_err(|e| error(Box::new(e)))?;
    stream.delete_message(sequence).await.map_err(|e| error(Box::new(e)))?;
    Ok(letter)
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn reasons_become_one_header_line() {
        assert_eq!(one_line("bad\nenvelope\r\n"), "bad envelope  ");
        assert_eq!(one_line(&"x".repeat(2_000)).len(), 512);
    }
}
