//! Logging: `tracing` with human output by default, JSON when `LOG_FORMAT=json`, filtered by `RUST_LOG`.
//! Colours only on a terminal, or when `LOG_COLOR=always` (the local launcher sets it for its children
//! when it prints to a terminal itself).

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt};

/// Noisy dependencies are kept to warnings unless `RUST_LOG` says otherwise.
const QUIET: &str = "sea_orm_migration=warn,sqlx=warn,async_nats=warn,h2=warn,hyper=warn,tower=warn";

/// Installs the global subscriber once; later calls (tests starting several services) do nothing.
pub fn init_logging(default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(format!("{default_level},{QUIET}")));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let colour = match std::env::var("LOG_COLOR").as_deref() {
        Ok("always") => true,
        Ok("never") => false,
        _ => std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour && !json);
    let _already_set = if json {
        builder.json().with_current_span(true).try_init()
    } else {
        builder.compact().try_init()
    };
}
