//! Panics are log lines like any other: one `error` line with the panic's message and location (and,
//! inside an RPC, its trace id), instead of the default hook's unstructured text on stderr. The server
//! answers the panicking call with INTERNAL (mesh/server's `CatchPanicLayer`) and logs nothing more, so
//! each panic is logged exactly once.

use std::panic::PanicHookInfo;

/// Replaces the process's panic hook with one that logs through `tracing`.
pub fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let (message, location) = describe(info);
        tracing::error!(panic.message = %message, panic.location = %location, "panicked");
    }));
}

/// The panic's message (when it is text) and `file:line:column`.
fn describe(info: &PanicHookInfo<'_>) -> (String, String) {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a value that is not text)".to_owned());
    let location = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
        .unwrap_or_else(|| "(unknown)".to_owned());
    (message, location)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn a_panic_is_described_by_its_message_and_its_location() {
        let seen = Arc::new(Mutex::new(None));
        let record = Arc::clone(&seen);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            *record.lock().unwrap_or_else(|p| p.into_inner()) = Some(describe(info));
        }));
        let line = line!() + 1;
        let _ = std::panic::catch_unwind(|| panic!("a bug in {}", "a handler"));
        std::panic::set_hook(previous);
        let (message, location) = seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_default();
        assert_eq!(message, "a bug in a handler");
        assert!(location.starts_with(&format!("{}:{line}:", file!())), "{location}");
    }
}
