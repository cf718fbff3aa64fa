//! End-to-end tests: the four services (in-process on port 0, or as their own `baemin serve` processes
//! for the chaos scenarios), a real `nats-server` of the test's own, fresh SQLite files or PostgreSQL
//! databases, and real gRPC between them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod bad_input;
mod chaos;
mod chaos_db;
mod checker;
mod events;
mod flows;
mod gateway;
mod gateway_limits;
mod gateway_tls;
mod histories;
mod hostile_input;
mod launcher;
mod ledger;
mod money;
mod ownership;
mod rebuild;
mod replicated;
mod replicated_mesh;
mod support;
mod telemetry;
mod web;
