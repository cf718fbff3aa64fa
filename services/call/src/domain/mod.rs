//! The call domain: a call, its lifecycle as the authority on cancellation, and the use cases that keep
//! the call and its fee in payment consistent.

mod actor;
mod error;
mod fallback;
#[cfg(test)]
mod fallback_tests;
mod follow;
mod model;
mod ports;
mod repair;
mod service;
#[cfg(test)]
mod service_tests;
#[cfg(test)]
pub(crate) mod testing;

pub use actor::Actor;
pub use error::CallError;
pub use fallback::Fallback;
pub use model::{
    Call, CancelStep, DeliveryEvent, Fingerprint, IntentStep, NewCall, PaymentState, Registration, RequestKey,
};
pub use ports::{PaymentCallError, Payments};
pub use service::{CallApp, CallFilter, Delivery, Subscription};
