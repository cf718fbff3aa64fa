//! The client's address behind trusted proxies. Behind an ingress (Istio's ingress gateway, a cloud
//! load balancer) every connection comes from the proxy, and limits per client address would count all
//! clients as one: one client sending bad tokens would lock everyone's credentials out. Each trusted
//! proxy appends the address it was connected from to `X-Forwarded-For`, so with
//! `GATEWAY_TRUSTED_PROXY_HOPS=n` the client is the n-th address from the right. Entries left of it were
//! written by the client itself and are never believed; with too few entries, or one that is no address,
//! the connection's own address is used. Only set it where the gateway is reachable through those
//! proxies alone (the chart's AuthorizationPolicy admits only the ingress gateway).

use std::{
    net::{IpAddr, SocketAddr},
    task::{Context, Poll},
};

use http::{HeaderMap, Request};
use tower::{Layer, Service};

use super::Peer;

/// Resolves each request's client address once and records it as its [`Peer`].
#[derive(Debug, Clone, Copy)]
pub struct ClientAddressLayer {
    trusted_hops: usize,
}

impl ClientAddressLayer {
    /// Believes the last `trusted_hops` proxies' `X-Forwarded-For` entries (0: the connection's address).
    pub fn new(trusted_hops: usize) -> Self {
        Self { trusted_hops }
    }
}

impl<S> Layer<S> for ClientAddressLayer {
    type Service = ClientAddress<S>;

    fn layer(&self, inner: S) -> ClientAddress<S> {
        ClientAddress {
            inner,
            trusted_hops: self.trusted_hops,
        }
    }
}

/// The service of [`ClientAddressLayer`].
#[derive(Debug, Clone)]
pub struct ClientAddress<S> {
    inner: S,
    trusted_hops: usize,
}

impl<S, B> Service<Request<B>> for ClientAddress<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> S::Future {
        if self.trusted_hops > 0
            && let Some(client) = forwarded_client(request.headers(), self.trusted_hops)
        {
            request.extensions_mut().insert(Peer::of(SocketAddr::new(client, 0)));
        }
        self.inner.call(request)
    }
}

/// The address `hops` entries from the right of every `X-Forwarded-For` line, in order.
///
/// Works on bytes: what a client wrote left of the trusted entries may be anything, and must not make
/// the trusted entry unreadable (the request would then count against the proxy's own address).
fn forwarded_client(headers: &HeaderMap, hops: usize) -> Option<IpAddr> {
    let mut entries: Vec<&[u8]> = Vec::new();
    for line in headers.get_all("x-forwarded-for") {
        entries.extend(line.as_bytes().split(|b| *b == b','));
    }
    let entry = entries.len().checked_sub(hops).map(|i| entries[i])?;
    let entry = std::str::from_utf8(entry).ok()?.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(lines: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append("x-forwarded-for", line.parse().unwrap());
        }
        headers
    }

    #[test]
    fn the_client_is_the_address_the_first_trusted_proxy_saw_never_one_the_client_wrote() {
        // The client claims 6.6.6.6; the ingress appended the address it really came from.
        let headers = forwarded(&["6.6.6.6, 203.0.113.7"]);
        assert_eq!(forwarded_client(&headers, 1), "203.0.113.7".parse().ok());
        // A load balancer in front of the ingress: two trusted hops.
        let headers = forwarded(&["6.6.6.6", "198.51.100.1, 10.0.0.5"]);
        assert_eq!(forwarded_client(&headers, 2), "198.51.100.1".parse().ok());
        assert_eq!(
            forwarded_client(&forwarded(&["[2001:db8::1]:443"]), 1),
            "2001:db8::1".parse().ok()
        );
        // Bytes the client wrote left of the trusted entry do not hide it.
        let mut junk = HeaderMap::new();
        junk.append(
            "x-forwarded-for",
            http::HeaderValue::from_bytes(b"\xff\xfe, 203.0.113.7").unwrap(),
        );
        assert_eq!(forwarded_client(&junk, 1), "203.0.113.7".parse().ok());
    }

    #[test]
    fn too_few_entries_or_garbage_fall_back_to_the_connection() {
        assert_eq!(forwarded_client(&forwarded(&["203.0.113.7"]), 2), None);
        assert_eq!(forwarded_client(&forwarded(&["not an address"]), 1), None);
        assert_eq!(forwarded_client(&HeaderMap::new(), 1), None);
    }
}
