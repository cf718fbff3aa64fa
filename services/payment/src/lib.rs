//! The payment service: registers each call's fee, settles it with the rider (commission rounded
//! down), voids it when the call is cancelled. Every change emits an event through the outbox.

pub mod config;
mod domain;
mod inbound;
mod outbound;
pub mod startup;

pub use config::Config;
pub use startup::Application;
