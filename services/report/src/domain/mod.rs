//! The report domain: the deliverylist row, its projection from events, the stats, and the
//! application that stores and serves them.

mod error;
mod model;
mod service;
mod stats;

pub use error::ReportError;
pub use model::{Change, DeliveryView, Fact, PaymentState, Split, apply};
pub use service::{ListQuery, Page, ReportApp, SNAPSHOT_LIMIT};
pub use stats::{Stats, Totals};
