//! The edge proper: every gRPC call from outside (native, or grpc-web already translated) is
//! authenticated, checked against the role policy and the caller's rate, stripped of any identity it
//! claims for itself, given the verified one, and forwarded unchanged — path, metadata, deadline
//! (`grpc-timeout`), body stream — to the service that owns it. The answer, status and trailers
//! included, comes back unchanged.

use std::{
    convert::Infallible,
    sync::Arc,
    task::Poll,
    time::{Instant, SystemTime},
};

use baemin_mesh_client::{ResendUnsent, UnbufferedBody};
use baemin_mesh_server::identity::IdentityKey;
use baemin_mesh_telemetry::GrpcClient;
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Request, Response, header};
use tonic::{Status, body::Body, transport::Channel};

/// A channel to an upstream service, with a client span and metrics per call; a call a draining
/// replica's connection gave back unsent is sent again (`baemin_mesh_client::ResendUnsent`).
pub type Upstream = GrpcClient<ResendUnsent<Channel>>;
use tower::{Service, ServiceExt};

use tokio_util::sync::CancellationToken;

use crate::{
    auth::{AuthError, Identity, Verifier},
    drain::EndOnDrain,
    peer::{AuthFailures, Peer},
    policy::{self, Access},
    rate::RateLimiter,
    slots::{Holding, Slot, Slots},
};

/// The upstream services, by full gRPC service name.
#[derive(Clone)]
pub struct Upstreams {
    routes: Vec<(&'static str, &'static str, Upstream)>,
}

impl Upstreams {
    /// Routes each `(service name, short name, channel)`.
    pub fn new(routes: Vec<(&'static str, &'static str, Upstream)>) -> Self {
        Self { routes }
    }

    fn find(&self, service: &str) -> Option<(&'static str, Upstream)> {
        self.routes
            .iter()
            .find(|(name, _, _)| *name == service)
            .map(|(_, short, channel)| (*short, channel.clone()))
    }
}

/// The proxying service; cheap to clone.
#[derive(Clone)]
pub struct Edge {
    shared: Arc<Shared>,
}

struct Shared {
    verifier: Verifier,
    identity_key: IdentityKey,
    limiter: RateLimiter,
    auth_failures: AuthFailures,
    watches: Slots<String>,
    upstreams: Upstreams,
    draining: CancellationToken,
}

impl Edge {
    /// An edge verifying with `verifier` (within each peer's budget of `auth_failures`), signing what
    /// it forwards with `identity_key`, limiting with `limiter` and to so many open `watches` per
    /// subject, forwarding to `upstreams`; its long streams end (UNAVAILABLE, "reconnect") once
    /// `draining` is cancelled.
    pub fn new(
        verifier: Verifier,
        identity_key: IdentityKey,
        limiter: RateLimiter,
        auth_failures: AuthFailures,
        watches: Slots<String>,
        upstreams: Upstreams,
        draining: CancellationToken,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                verifier,
                identity_key,
                limiter,
                auth_failures,
                watches,
                upstreams,
                draining,
            }),
        }
    }
}

impl<B> Service<Request<B>> for Edge
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            Ok(match shared.admit(&mut parts) {
                Ok((short, channel, watch)) => {
                    let response = forward(Request::from_parts(parts, Body::new(body)), short, channel).await;
                    match watch {
                        // A watch ends when the gateway drains, and holds its subject's slot until it
                        // ends (hyper drops the body then, however the stream ended).
                        Some(slot) => response
                            .map(|body| Body::new(Holding::new(EndOnDrain::new(body, shared.draining.clone()), slot))),
                        None => response,
                    }
                }
                Err(status) => {
                    // Read what the client is still sending before answering (an HTTP/1.1 client cut
                    // off mid-request sees a broken pipe, not our status), but not for long: a client
                    // that stalls its body is answered anyway and its HTTP/1.1 connection closed.
                    baemin_mesh_server::drain_refused(body, DRAIN_LIMIT).await;
                    status.into_http()
                }
            })
        })
    }
}

impl Shared {
    /// Decides whether the request with `parts` goes through, and where (its headers then carry the
    /// verified identity), with its subject's slot if it is a watch; the refusal otherwise.
    fn admit(
        &self,
        parts: &mut http::request::Parts,
    ) -> Result<(&'static str, Upstream, Option<Slot<String>>), Status> {
        if !is_grpc(&parts.headers) {
            return Err(Status::unimplemented(
                "not a gRPC request: send application/grpc or application/grpc-web",
            ));
        }
        let peer = Peer::of_request(&parts.extensions);
        let path = parts.uri.path();
        let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
            return Err(Status::unimplemented(format!("no such method: {path}")));
        };
        let roles = match policy::access(service, method) {
            Access::Unknown => return Err(Status::unimplemented(format!("no such method: {service}/{method}"))),
            Access::Internal => {
                // Still authenticate first: an anonymous caller learns nothing but "who are you".
                self.identify(&parts.headers, peer)?;
                return Err(Status::permission_denied(format!(
                    "{service}/{method} is called inside the mesh only"
                )));
            }
            Access::Roles(roles) => roles,
        };
        let identity = self.identify(&parts.headers, peer)?;
        if !roles.contains(&identity.role) {
            return Err(Status::permission_denied(format!(
                "role {} may not call {service}/{method}",
                identity.role
            )));
        }
        if let Err(wait) = self.limiter.check(&identity.subject, Instant::now()) {
            return Err(Status::resource_exhausted(format!(
                "rate limit for {} exceeded; retry in {} ms",
                identity.subject,
                wait.as_millis().max(1)
            )));
        }
        // A watch holds a stream here and upstream for as long as its client likes.
        let watch = if policy::is_long_stream(method) {
            let slot = self.watches.try_acquire(identity.subject.clone()).ok_or_else(|| {
                Status::resource_exhausted(format!(
                    "{} already has {} watches open through this gateway (GATEWAY_MAX_WATCHES_PER_SUBJECT); \
                     close one first",
                    identity.subject,
                    self.watches.max()
                ))
            })?;
            Some(slot)
        } else {
            None
        };
        let (short, channel) = self
            .upstreams
            .find(service)
            .ok_or_else(|| Status::unimplemented(format!("no upstream for {service}")))?;
        set_identity(&mut parts.headers, &identity, &self.identity_key)?;
        Ok((short, channel, watch))
    }

    /// The caller the credentials in `headers` name. Missing credentials cost nothing and count for
    /// nothing; refused ones count against `peer`'s budget, and past it are not even verified.
    fn identify(&self, headers: &HeaderMap, peer: Option<Peer>) -> Result<Identity, Status> {
        let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if authorization.is_none() {
            return Err(Status::unauthenticated(AuthError::Missing.to_string()));
        }
        let now = Instant::now();
        if let Err(wait) = self.auth_failures.admit(peer, now) {
            return Err(Status::resource_exhausted(format!(
                "too many refused credentials from this address: they are checked again in {} s",
                wait.as_secs_f64().ceil().max(1.0)
            )));
        }
        self.verifier.verify(authorization).map_err(|err| {
            self.auth_failures.refused(peer, now, &err);
            Status::unauthenticated(err.to_string())
        })
    }
}

/// The most of a refused request's body read before answering (beyond it, the connection may close).
const DRAIN_LIMIT: usize = 1024 * 1024;

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// Headers that belong to one hop (HTTP/1.1 from a browser), never forwarded over HTTP/2.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "host",
    "authorization",
];

/// Drops what must not travel upstream (hop-by-hop headers, the bearer token, any identity the caller
/// claimed for itself) and sets the verified identity, signed with `key` so the services can believe it.
fn set_identity(headers: &mut HeaderMap, identity: &Identity, key: &IdentityKey) -> Result<(), Status> {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    let claimed: Vec<_> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("x-baemin-"))
        .cloned()
        .collect();
    for key in claimed {
        headers.remove(key);
    }
    if headers.get(header::TE).is_some_and(|te| te != "trailers") {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    key.sign_into(headers, identity.role.as_str(), &identity.subject, SystemTime::now())
        .map_err(|_| Status::unauthenticated("the token's subject is not a valid header value"))
}

async fn forward(request: Request<Body>, short: &'static str, upstream: Upstream) -> Response<Body> {
    match upstream.oneshot(request).await {
        Ok(response) => response.map(Body::new),
        Err(err) => {
            // The client's request was refused before it was sent: too large, too slow, or broken off.
            if let Some(refused) = UnbufferedBody::in_chain(err.as_ref()) {
                return refused.status().into_http();
            }
            tracing::warn!(upstream = short, error = %err, "upstream unreachable");
            baemin_mesh_server::status::unavailable(&format!("the {short} service"), "unreachable from the gateway")
                .into_http()
        }
    }
}

#[cfg(test)]
mod tests {
    use baemin_mesh_server::identity::Caller;

    use super::*;

    #[test]
    fn claimed_identity_and_the_token_never_travel_upstream() {
        let mut headers = HeaderMap::new();
        headers.insert("x-baemin-role", HeaderValue::from_static("admin"));
        headers.insert("x-baemin-subject", HeaderValue::from_static("root"));
        headers.insert("x-baemin-anything", HeaderValue::from_static("x"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        headers.insert("grpc-timeout", HeaderValue::from_static("2S"));
        headers.insert("x-request-id", HeaderValue::from_static("abc"));
        let identity = Identity {
            subject: "r-7".into(),
            role: crate::auth::Role::Rider,
        };
        let key = IdentityKey::new(&[3u8; 32]).unwrap();
        set_identity(&mut headers, &identity, &key).unwrap();
        assert_eq!(
            Caller::from_headers(&headers, Some(&key), true, SystemTime::now()),
            Caller::of_role(crate::auth::Role::Rider, "r-7"),
            "the services believe the verified identity, signed"
        );
        assert!(headers.get("x-baemin-anything").is_none());
        assert!(headers.get(header::AUTHORIZATION).is_none());
        assert!(headers.get(header::CONNECTION).is_none());
        assert_eq!(headers["grpc-timeout"], "2S", "the deadline travels on");
        assert_eq!(headers["x-request-id"], "abc", "other metadata travels on");
    }
}
