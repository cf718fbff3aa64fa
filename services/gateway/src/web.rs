//! grpc-web for grpc-web requests only. tonic-web answers every other HTTP/1.1 request with 400, which
//! would hide the dashboard's page; so requests are told apart by content type first, and only
//! `application/grpc-web*` ones are translated. CORS preflights are answered by the CORS layer outside.

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::{Request, Response, header};
use tonic::body::Body;
use tonic_web::{GrpcWebLayer, GrpcWebService};
use tower::{Layer, Service, ServiceExt};

/// Wraps a service so grpc-web requests are translated to gRPC and everything else passes as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcWebOnlyLayer;

impl<S: Clone> Layer<S> for GrpcWebOnlyLayer {
    type Service = GrpcWebOnly<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcWebOnly {
            web: GrpcWebLayer::new().layer(inner.clone()),
            plain: inner,
        }
    }
}

/// See [`GrpcWebOnlyLayer`].
#[derive(Debug, Clone)]
pub struct GrpcWebOnly<S> {
    web: GrpcWebService<S>,
    plain: S,
}

fn is_grpc_web<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc-web"))
}

impl<S> Service<Request<Body>> for GrpcWebOnly<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<tower::BoxError> + Send,
    GrpcWebService<S>: Service<Request<Body>, Response = Response<Body>, Error = S::Error> + Clone + Send + 'static,
    <GrpcWebService<S> as Service<Request<Body>>>::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Each call readies its own clone below.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if is_grpc_web(&request) {
            Box::pin(self.web.clone().oneshot(request))
        } else {
            Box::pin(self.plain.clone().oneshot(request))
        }
    }
}
