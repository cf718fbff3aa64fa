//! The call service: restaurants place calls, the fee is registered with payment, the call follows the
//! delivery, and the call service is the authority on cancellation.

pub mod config;
mod domain;
mod inbound;
mod outbound;
pub mod startup;

pub use config::Config;
pub use startup::Application;
