//! The payment domain: a payment per call and the rules of registering, settling and voiding it.

mod error;
mod metrics;
mod model;
mod service;

pub use error::{PaymentError, Refusal};
pub use metrics::PaymentMetrics;
pub use model::{Change, Payment, PaymentStatus};
pub use service::PaymentApp;
