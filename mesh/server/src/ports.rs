//! Loopback ports for processes started a moment later (a local mesh's nats-servers, test services).
//!
//! Picked below the kernel's ephemeral range (32768 and up on Linux): a port bound to check it is free and
//! released for a process that binds it seconds later — or comes back on it after a restart — would
//! otherwise be handed out meanwhile by the kernel to anyone's `bind(":0")` or outgoing connection
//! ("Address already in use"). Ports there are only ever taken on purpose. Users that may run at the
//! same time on one machine (the tests, the benchmark, `baemin up`) each pick from their own range.

use std::ops::Range;

/// A port of `range` on 127.0.0.1 that nothing listens on now, tried in random order.
pub fn free_port_in(range: Range<u16>) -> std::io::Result<u16> {
    use std::hash::BuildHasher;
    let seed = std::collections::hash_map::RandomState::new();
    let span = u64::from(range.end.saturating_sub(range.start)).max(1);
    (0..1_000_u64)
        .map(|attempt| range.start + u16::try_from(seed.hash_one(attempt) % span).unwrap_or(0))
        .find(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("no free port in {}..{} on 127.0.0.1", range.start, range.end),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_port_is_in_its_range_and_bindable() {
        let port = free_port_in(20_000..20_100).unwrap();
        assert!((20_000..20_100).contains(&port));
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    }
}
