//! Database connections for every service: a SQLite file by default, PostgreSQL when `DATABASE_URL` says so.

mod connect;
mod unavailable;

pub use connect::{Backend, StoreError, begin_write, connect, pool_usage, sqlite_url, with_database};
pub use sea_orm::DatabaseConnection;
pub use unavailable::{is_contention, is_timeout, is_transient, is_unavailable};
