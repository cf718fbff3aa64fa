//! Rebuilding the deliverylist from the events stream into a fresh database: every event the stream
//! holds, replayed through the live consumer's own projection, so the rebuilt model equals the live one.
//!
//! The stream is read with an ephemeral *ordered pull consumer* rather than one direct get per sequence:
//! the server streams batches (one round trip per batch, not per event), the client checks that no
//! sequence is skipped and recreates the consumer from the last one it saw if the server or the
//! connection fails, and nothing durable is left behind (memory storage, removed when done or after
//! 30 s idle). Ephemeral pull consumers, named ephemerals and pull heartbeats all exist since
//! nats-server 2.9, so it works on Debian's 2.9 as on 2.15; direct gets would also need the stream's
//! `allow_direct`, which the mesh does not set.

mod target;

use baemin_mesh_store::Db;
use std::{error::Error, sync::Arc, time::Duration};

use async_nats::jetstream::{
    self,
    consumer::{DeliverPolicy, pull::OrderedConfig},
};
use baemin_mesh_events::{ConsumerLag, ConsumerSpec, Envelope, EventHandler, HandleError, STREAM_NAME, consumer_lag};
use baemin_mesh_runtime::Service as _;
use futures::StreamExt;
use prost::Message as _;

pub use target::rows;

use crate::{Application, domain::ReportApp, inbound::events::Projector, outbound::db, startup::EVERY_EVENT};

/// Longest wait for the next event before the rebuild gives up on NATS.
const STALL: Duration = Duration::from_secs(30);

/// Attempts at one event whose projection failed transiently (the target database), before giving up.
const ATTEMPTS: u32 = 5;

/// What a rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rebuilt {
    /// Distinct events projected (each event id once, as the inbox counts them).
    pub events_applied: u64,
    /// Messages carrying an event already applied (published twice, re-driven): they changed nothing.
    pub duplicates: u64,
    /// Messages that can never apply (undecodable, or not a valid event): skipped, as the live
    /// consumer dead-letters them.
    pub skipped: u64,
    /// Rows of the deliverylist (what ListDeliveryViews shows).
    pub rows: u64,
    /// Rows kept but not shown: only payment has spoken about the call (as in the live model).
    pub hidden_rows: u64,
    /// The first sequence the stream still held (above 1 when retention removed older events, which
    /// the rebuild then cannot see).
    pub first_sequence: u64,
    /// The last sequence of the stream when the rebuild started: it read up to there and no further.
    pub last_sequence: u64,
}

/// Why a rebuild was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// The target holds something already: a rebuild only writes into a fresh database.
    #[error("the target database is not empty: it holds {0}; rebuild into a fresh database")]
    NotEmpty(String),
    /// The target database could not be opened or migrated.
    #[error("opening the target database")]
    Open(#[from] baemin_mesh_store::StoreError),
    /// The database failed.
    #[error("report database")]
    Db(#[from] sea_orm::DbErr),
    /// The events stream could not be read.
    #[error("reading stream {STREAM_NAME}")]
    Stream(#[source] Box<dyn Error + Send + Sync>),
    /// NATS stopped delivering before the rebuild reached the end it set itself.
    #[error("NATS delivered nothing for {STALL:?} after sequence {after} (reading up to {last})")]
    Stalled {
        /// The last sequence read.
        after: u64,
        /// The sequence the rebuild reads up to.
        last: u64,
    },
    /// An event could not be stored in the target; what was rebuilt so far stays there.
    #[error(
        "the event at sequence {sequence} could not be stored; the target is partly written: \
         drop it and rebuild into a fresh database"
    )]
    Apply {
        /// Its stream sequence.
        sequence: u64,
        /// Why.
        #[source]
        source: Box<dyn Error + Send + Sync>,
    },
}

fn stream_error(err: impl Error + Send + Sync + 'static) -> RebuildError {
    RebuildError::Stream(Box::new(err))
}

/// Rebuilds the deliverylist into the fresh database at `database_url` (created and migrated; refused
/// if it holds anything) from every event of the stream up to its last sequence at the start.
pub async fn rebuild(jetstream: &jetstream::Context, database_url: &str) -> Result<Rebuilt, RebuildError> {
    let db = target::open_fresh(database_url).await?;
    let rebuilt = replay(jetstream, &db).await;
    db.close().await.ok();
    rebuilt
}

/// Where the live report's durable consumer is in the stream (`None` before the report first started):
/// a rebuild equals the live model once the live consumer has applied the same sequences.
pub async fn live_progress(jetstream: &jetstream::Context) -> Result<Option<ConsumerLag>, RebuildError> {
    let durable = ConsumerSpec::new(Application::NAME, EVERY_EVENT).durable;
    let (_, consumers) = consumer_lag(jetstream).await.map_err(stream_error)?;
    Ok(consumers.into_iter().find(|c| c.name == durable))
}

/// How the messages read so far went.
#[derive(Debug, Default)]
struct Tally {
    handled: u64,
    skipped: u64,
}

async fn replay(jetstream: &jetstream::Context, db: &Db) -> Result<Rebuilt, RebuildError> {
    // The live consumer's handler over the target: same decoding, same inbox, same projection.
    let projector = Projector::new(Arc::new(ReportApp::new(db.clone())));
    let mut stream = jetstream.get_stream(STREAM_NAME).await.map_err(stream_error)?;
    let state = stream.info().await.map_err(stream_error)?.state.clone();
    let mut tally = Tally::default();
    if state.messages > 0 {
        read(&stream, &projector, state.last_sequence, &mut tally).await?;
    }
    let events_applied = db::applied_events(db).await?;
    let (rows, hidden_rows) = db::count(db).await?;
    Ok(Rebuilt {
        events_applied,
        duplicates: tally.handled.saturating_sub(events_applied),
        skipped: tally.skipped,
        rows,
        hidden_rows,
        first_sequence: state.first_sequence,
        last_sequence: state.last_sequence,
    })
}

/// Feeds every message from the first up to `last` to `projector`.
async fn read(
    stream: &jetstream::stream::Stream,
    projector: &Projector,
    last: u64,
    tally: &mut Tally,
) -> Result<(), RebuildError> {
    let name = format!("report_rebuild_{}", baemin_kernel::now_millis());
    let consumer = stream
        .create_consumer(OrderedConfig {
            name: Some(name.clone()),
            description: Some("baemin report rebuild".into()),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(stream_error)?;
    let mut messages = consumer.messages().await.map_err(stream_error)?;
    let mut at = 0;
    let outcome = loop {
        let message = match tokio::time::timeout(STALL, messages.next()).await {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(err))) => break Err(stream_error(err)),
            Ok(None) => break Err(RebuildError::Stream("the consumer ended".into())),
            Err(_) => break Err(RebuildError::Stalled { after: at, last }),
        };
        let (sequence, pending) = match message.info() {
            Ok(info) => (info.stream_sequence, info.pending),
            Err(err) => break Err(RebuildError::Stream(err)),
        };
        if sequence > last {
            break Ok(());
        }
        at = sequence;
        if let Err(err) = apply(projector, &message, sequence, tally).await {
            break Err(err);
        }
        // Nothing pending: the events after this one up to `last` were deleted from the stream.
        if sequence == last || pending == 0 {
            break Ok(());
        }
    };
    drop(messages);
    // Best effort: an ordered consumer that had to be recreated has another name, and expires by itself.
    stream.delete_consumer(&name).await.ok();
    outcome
}

/// Applies one message as the live consumer would, except that what can never apply is only counted:
/// the live consumer has dead-lettered it already.
async fn apply(
    projector: &Projector,
    message: &jetstream::Message,
    sequence: u64,
    tally: &mut Tally,
) -> Result<(), RebuildError> {
    let subject = message.subject.as_str();
    let envelope = match Envelope::decode(message.payload.as_ref()) {
        Ok(envelope) if envelope.event.is_some() && !envelope.event_id.is_empty() => envelope,
        Ok(_) => {
            skip(tally, sequence, subject, "envelope without event or event id");
            return Ok(());
        }
        Err(err) => {
            skip(tally, sequence, subject, &format!("undecodable envelope: {err}"));
            return Ok(());
        }
    };
    let mut attempt = 1;
    loop {
        match projector.handle(subject, envelope.clone()).await {
            Ok(()) => {
                tally.handled += 1;
                return Ok(());
            }
            Err(HandleError::Rejected(reason)) => {
                skip(tally, sequence, subject, &reason);
                return Ok(());
            }
            Err(HandleError::Transient(source)) if attempt >= ATTEMPTS => {
                return Err(RebuildError::Apply { sequence, source });
            }
            Err(HandleError::Failed(reason) | HandleError::TimedOut(reason)) if attempt >= ATTEMPTS => {
                return Err(RebuildError::Apply {
                    sequence,
                    source: reason.into(),
                });
            }
            Err(err @ (HandleError::Transient(_) | HandleError::Failed(_) | HandleError::TimedOut(_))) => {
                tracing::warn!(sequence, %subject, error = %err, attempt, "event not stored; retrying");
                tokio::time::sleep(Duration::from_millis(100) * 2u32.pow(attempt)).await;
                attempt += 1;
            }
        }
    }
}

fn skip(tally: &mut Tally, sequence: u64, subject: &str, reason: &str) {
    tracing::warn!(sequence, %subject, %reason, "skipped an event that can never apply");
    tally.skipped += 1;
}
