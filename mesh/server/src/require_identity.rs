//! Verifies the caller of every call once, before any handler runs: the verified [`Caller`] goes into
//! the request's extensions (handlers read it with [`Caller::of`]); identity that cannot be believed —
//! malformed, unsigned, forged, expired, or absent when `BAEMIN_REQUIRE_IDENTITY=true` — is
//! UNAUTHENTICATED (DESIGN.md, "Edge gateway"). Health and reflection stay open for probes and tools.

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::SystemTime,
};

use futures::future::{Either, Ready, ready};
use http::{Request, Response};
use tonic::{Status, body::Body};
use tower::{Layer, Service};

use crate::identity::{Caller, IdentityKey};

/// Paths that never need an identity.
const OPEN_PREFIXES: [&str; 2] = ["/grpc.health.v1.", "/grpc.reflection."];

/// Verifies caller identity with the mesh's key; refuses calls without one when `required`.
#[derive(Debug, Clone)]
pub struct IdentityLayer {
    key: Option<Arc<IdentityKey>>,
    required: bool,
}

impl IdentityLayer {
    /// The layer; `key` comes from `BAEMIN_IDENTITY_KEY`, `required` from `BAEMIN_REQUIRE_IDENTITY`.
    pub fn new(key: Option<IdentityKey>, required: bool) -> Self {
        Self {
            key: key.map(Arc::new),
            required,
        }
    }
}

impl<S> Layer<S> for IdentityLayer {
    type Service = RequireIdentity<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireIdentity {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`IdentityLayer`].
#[derive(Debug, Clone)]
pub struct RequireIdentity<S> {
    inner: S,
    layer: IdentityLayer,
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

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if OPEN_PREFIXES.iter().any(|p| request.uri().path().starts_with(p)) {
            return Either::Right(self.inner.call(request));
        }
        let caller = Caller::from_headers(
            request.headers(),
            self.layer.key.as_deref(),
            self.layer.required,
            SystemTime::now(),
        );
        match caller {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                Either::Right(self.inner.call(request))
            }
            Err(err) => {
                tracing::debug!(error = %err, "refused caller identity");
                Either::Left(ready(Ok(Status::unauthenticated(err.to_string()).into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::HeaderMap;
    use tower::ServiceExt;

    use super::*;
    use crate::identity::ROLE_HEADER;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    /// Answers with the caller it was handed, in a header, so tests see what the handler would.
    fn service(required: bool) -> impl Service<Request<()>, Response = Response<Body>, Error = Infallible> {
        IdentityLayer::new(Some(IdentityKey::new(SECRET).unwrap()), required).layer(tower::service_fn(
            |request: Request<()>| async move {
                let caller = request.extensions().get::<Caller>().cloned();
                let mut response = Response::new(Body::empty());
                response
                    .headers_mut()
                    .insert("x-caller", format!("{caller:?}").parse().unwrap());
                Ok::<_, Infallible>(response)
            },
        ))
    }

    fn request(path: &str, headers: HeaderMap) -> Request<()> {
        let mut request = Request::builder().uri(path).body(()).unwrap();
        *request.headers_mut() = headers;
        request
    }

    fn grpc_status(response: &Response<Body>) -> Option<&str> {
        response.headers().get("grpc-status").and_then(|v| v.to_str().ok())
    }

    const GET_CALL: &str = "/baemin.call.v1.CallService/GetCall";

    #[tokio::test]
    async fn a_call_without_identity_is_unauthenticated_when_identity_is_required() {
        let response = service(true)
            .oneshot(request(GET_CALL, HeaderMap::new()))
            .await
            .unwrap();
        assert_eq!(grpc_status(&response), Some("16"));
    }

    #[tokio::test]
    async fn an_unsigned_role_is_unauthenticated_whether_identity_is_required_or_not() {
        for required in [false, true] {
            let mut claimed = HeaderMap::new();
            claimed.insert(ROLE_HEADER, "admin".parse().unwrap());
            let response = service(required).oneshot(request(GET_CALL, claimed)).await.unwrap();
            assert_eq!(grpc_status(&response), Some("16"), "required: {required}");
        }
    }

    #[tokio::test]
    async fn the_verified_caller_reaches_the_handler_and_probes_and_tools_stay_open() {
        let mut signed = HeaderMap::new();
        IdentityKey::new(SECRET)
            .unwrap()
            .sign_into(&mut signed, "rider", "r-1", SystemTime::now())
            .unwrap();
        let response = service(true).oneshot(request(GET_CALL, signed)).await.unwrap();
        assert_eq!(grpc_status(&response), None);
        assert_eq!(response.headers()["x-caller"], "Some(Rider(RiderId(\"r-1\")))");
        for open in [
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        ] {
            let response = service(true).oneshot(request(open, HeaderMap::new())).await.unwrap();
            assert_eq!(grpc_status(&response), None, "{open}");
        }
        let anonymous = service(false)
            .oneshot(request(GET_CALL, HeaderMap::new()))
            .await
            .unwrap();
        assert_eq!(anonymous.headers()["x-caller"], "Some(Internal)");
    }
}
