//! The rider service: the open-call board, the accept race, pick-up, and completion settled with payment.

pub mod config;
mod domain;
mod inbound;
mod outbound;
pub mod startup;
#[cfg(test)]
mod test_support;

pub use config::Config;
pub use startup::Application;
