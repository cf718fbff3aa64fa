//! `BAEMIN_REQUIRE_IDENTITY=true`: a call that carries no caller identity is UNAUTHENTICATED instead of
//! being trusted as an internal backend (DESIGN.md, "Edge gateway"). Health and reflection stay open
//! for probes and tools.

use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use http::{Request, Response};
use tonic::{Status, body::Body};
use tower::{Layer, Service};

use crate::identity::ROLE_HEADER;

/// Paths that never need an identity.
const OPEN_PREFIXES: [&str; 2] = ["/grpc.health.v1.", "/grpc.reflection."];

/// Refuses calls without identity when enabled; passes everything through otherwise.
#[derive(Debug, Clone, Copy)]
pub struct RequireIdentityLayer {
    enabled: bool,
}

impl RequireIdentityLayer {
    /// The layer; `enabled` comes from `BAEMIN_REQUIRE_IDENTITY`.
    pub fn new(enabled: bool) -> Self {
        Self { enabled }
    }
}

impl<S> Layer<S> for RequireIdentityLayer {
    type Service = RequireIdentity<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireIdentity {
            inner,
            enabled: self.enabled,
        }
    }
}

/// The service of [`RequireIdentityLayer`].
#[derive(Debug, Clone)]
pub struct RequireIdentity<S> {
    inner: S,
    enabled: bool,
}

impl<S, B> Service<Request<B>> for RequireIdentity<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response<Body>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let open = OPEN_PREFIXES.iter().any(|p| request.uri().path().starts_with(p));
        if self.enabled && !open && !request.headers().contains_key(ROLE_HEADER) {
            let status = Status::unauthenticated("this service requires a caller identity (BAEMIN_REQUIRE_IDENTITY)");
            return Either::Left(ready(Ok(status.into_http())));
        }
        Either::Right(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::ServiceExt;

    use super::*;

    fn service(enabled: bool) -> impl Service<Request<()>, Response = Response<Body>, Error = Infallible> {
        RequireIdentityLayer::new(enabled).layer(tower::service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Body::empty()))
        }))
    }

    fn request(path: &str, role: Option<&str>) -> Request<()> {
        let mut builder = Request::builder().uri(path);
        if let Some(role) = role {
            builder = builder.header(ROLE_HEADER, role);
        }
        builder.body(()).unwrap()
    }

    fn grpc_status(response: &Response<Body>) -> Option<&str> {
        response.headers().get("grpc-status").and_then(|v| v.to_str().ok())
    }

    #[tokio::test]
    async fn a_call_without_identity_is_unauthenticated_when_identity_is_required() {
        let response = service(true)
            .oneshot(request("/baemin.call.v1.CallService/GetCall", None))
            .await
            .unwrap();
        assert_eq!(grpc_status(&response), Some("16"));
    }

    #[tokio::test]
    async fn identified_calls_probes_and_tools_pass_and_nothing_is_required_by_default() {
        let identified = request("/baemin.call.v1.CallService/GetCall", Some("admin"));
        assert_eq!(grpc_status(&service(true).oneshot(identified).await.unwrap()), None);
        for open in [
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        ] {
            assert_eq!(
                grpc_status(&service(true).oneshot(request(open, None)).await.unwrap()),
                None,
                "{open}"
            );
        }
        let anonymous = request("/baemin.call.v1.CallService/GetCall", None);
        assert_eq!(grpc_status(&service(false).oneshot(anonymous).await.unwrap()), None);
    }
}
