//! Adapters the report domain drives: its database.

pub mod db;
pub mod migration;
