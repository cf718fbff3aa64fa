//! The rider domain: deliveries, the rules of taking, picking up and completing them, and the port to
//! payment.

mod actor;
mod call_events;
mod error;
mod model;
mod ports;
mod repair;
mod service;

pub use actor::Actor;
pub use call_events::{CallEvent, CallFact};
pub use error::RiderError;
pub use model::{
    BoardChange, CancelOutcome, Change, Completion, Delivery, DeliveryFilter, Listed, Page, PickUp, PlacedCall,
    PlacedOutcome, Receipt, on_call_cancelled, on_call_placed, status_from_label, status_label,
};
pub use ports::{PaymentCallError, Payments};
pub use service::RiderApp;

#[cfg(test)]
mod service_tests;
