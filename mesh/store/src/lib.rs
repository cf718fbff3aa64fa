//! Database connections for every service: a SQLite file by default, PostgreSQL when `DATABASE_URL` says so.

mod connect;
mod db;
mod postgres;
mod sqlite;
mod unavailable;
mod widen;

pub use connect::{Backend, StoreError, connect, open, sqlite_url, with_database};
pub use db::{Db, Txn, begin_write};
pub use unavailable::{is_contention, is_timeout, is_transient, is_unavailable};
pub use widen::WidenToBigint;
