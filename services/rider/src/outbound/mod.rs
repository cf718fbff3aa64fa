//! Adapters the rider domain drives: its database, its events and the payment service.

pub mod db;
pub mod events;
pub mod migration;
pub mod payment;
