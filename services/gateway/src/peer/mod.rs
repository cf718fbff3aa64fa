//! Limits per peer on what costs the gateway before (or without) valid credentials: connections, streams
//! that need no token, failed authentications. A peer is the address the connection comes from — what
//! tonic records as `TcpConnectInfo`, behind the TLS listener too — an IPv6 one by its /64, the block one
//! subscriber is usually given, as a peer could otherwise take a fresh address for every connection.
//!
//! Behind a proxy that does not pass the client's address on at the TCP level (an Istio sidecar: every
//! connection comes from 127.0.0.6; an ingress), its clients would all be one peer: for streams and
//! failed authentications the peer is then the client address the trusted proxies forwarded
//! ([`ClientAddressLayer`], `GATEWAY_TRUSTED_PROXY_HOPS`); connections, counted at accept before any
//! header, stay per connecting address and must be set for that.

mod anonymous;
mod auth_failures;
mod connections;
mod forwarded;

use std::{
    fmt,
    net::{IpAddr, Ipv6Addr, SocketAddr},
};

use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

pub use anonymous::AnonymousStreamsLayer;
pub use auth_failures::AuthFailures;
pub use connections::PeerConnections;
pub use forwarded::ClientAddressLayer;

/// Where a connection comes from, as limits per peer count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer(IpAddr);

impl Peer {
    /// The peer at `addr`: its IPv4 address (also when written as IPv4-mapped IPv6), or its IPv6 /64.
    pub fn of(addr: SocketAddr) -> Self {
        match addr.ip().to_canonical() {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => Self(IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX)))),
        }
    }

    /// The peer of a request: the client address trusted proxies forwarded ([`ClientAddressLayer`]),
    /// else the connection's (plain TCP or TLS); `None` for a connection that has none.
    pub fn of_request(extensions: &http::Extensions) -> Option<Self> {
        if let Some(forwarded) = extensions.get::<Self>() {
            return Some(*forwarded);
        }
        let tcp = extensions.get::<TcpConnectInfo>().or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .map(TlsConnectInfo::get_ref)
        });
        tcp.and_then(TcpConnectInfo::remote_addr).map(Self::of)
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// The limits per peer, from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerLimits {
    /// `GATEWAY_MAX_CONNECTIONS_PER_PEER`: open connections; past it, the next is closed at accept.
    pub connections: usize,
    /// `GATEWAY_MAX_ANONYMOUS_STREAMS_PER_PEER`: open streams that need no token (health `Watch`,
    /// reflection); past it, RESOURCE_EXHAUSTED.
    pub anonymous_streams: usize,
    /// `GATEWAY_AUTH_FAILURES_PER_PEER`: refused credentials a minute, as many at once; past it, the
    /// peer's credentials are refused unchecked (RESOURCE_EXHAUSTED) until its budget refills.
    pub auth_failures_per_minute: u32,
    /// `GATEWAY_TRUSTED_PROXY_HOPS` (default 0): proxies in front of the gateway whose
    /// `X-Forwarded-For` entries are believed (see [`ClientAddressLayer`]).
    pub trusted_proxy_hops: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(addr: &str) -> String {
        Peer::of(addr.parse().unwrap()).to_string()
    }

    #[test]
    fn an_ipv4_peer_is_its_address_however_it_is_written() {
        assert_eq!(peer("203.0.113.7:4000"), "203.0.113.7");
        assert_eq!(peer("[::ffff:203.0.113.7]:4000"), "203.0.113.7");
    }

    #[test]
    fn an_ipv6_peer_is_its_64_block() {
        assert_eq!(peer("[2001:db8:1:2:aaaa::1]:4000"), "2001:db8:1:2::/64");
        assert_eq!(
            Peer::of("[2001:db8:1:2::1]:1".parse().unwrap()),
            Peer::of("[2001:db8:1:2:ffff:ffff:ffff:ffff]:2".parse().unwrap())
        );
        assert_ne!(
            Peer::of("[2001:db8:1:2::1]:1".parse().unwrap()),
            Peer::of("[2001:db8:1:3::1]:1".parse().unwrap())
        );
    }

    #[test]
    fn a_request_names_its_peer_through_plain_tcp_connection_information() {
        let mut extensions = http::Extensions::new();
        assert_eq!(Peer::of_request(&extensions), None);
        extensions.insert(TcpConnectInfo {
            local_addr: None,
            remote_addr: Some("198.51.100.1:5000".parse().unwrap()),
        });
        assert_eq!(
            Peer::of_request(&extensions).map(|p| p.to_string()),
            Some("198.51.100.1".to_owned())
        );
    }
}
