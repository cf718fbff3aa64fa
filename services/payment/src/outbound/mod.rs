//! Adapters the payment domain drives: its database and its events.

pub mod db;
pub mod events;
pub mod migration;
