//! The report service: the company's deliverylist and stats, projected from every event (CQRS).

// Tests state their expectations with unwrap; the lint guards the service code.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod config;
mod domain;
mod inbound;
mod outbound;
pub mod rebuild;
pub mod startup;

pub use config::Config;
pub use startup::Application;
