//! The report domain: the deliverylist row, its projection from events, the stats, and the
//! application that stores and serves them.

mod error;
mod model;
mod service;
mod stats;
mod viewer;

pub use error::ReportError;
pub use model::{Change, DeliveryView, Fact, PaymentState, Split, apply};
pub use service::{ListQuery, ReportApp};
pub use stats::{Stats, Totals};
pub use viewer::{Filter, Viewer};
