//! Signs every call a service makes with its own identity (role `service`, subject its name), so that a
//! dependency requiring identity (`BAEMIN_REQUIRE_IDENTITY`) knows the mesh itself is calling, and
//! payment can tell its own callers from a person (DESIGN.md, "Edge gateway").

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::SystemTime,
};

use baemin_mesh_server::identity::{IdentityKey, SERVICE_ROLE};
use http::Request;
use tower::{Layer, Service};

/// Who a service's calls come from: its name, signed with the mesh's identity key.
#[derive(Debug, Clone)]
pub struct Signer {
    key: Arc<IdentityKey>,
    service: &'static str,
}

impl Signer {
    /// Signs as `service` (`call`, `rider`, ...) with `key`.
    pub fn new(service: &'static str, key: IdentityKey) -> Self {
        Self {
            key: Arc::new(key),
            service,
        }
    }
}

/// Puts a fresh signed identity on every request when a [`Signer`] is configured.
#[derive(Debug, Clone)]
pub struct SignLayer {
    signer: Option<Signer>,
}

impl SignLayer {
    /// Signs with `signer`; passes requests through unchanged without one.
    pub fn new(signer: Option<Signer>) -> Self {
        Self { signer }
    }
}

impl<S> Layer<S> for SignLayer {
    type Service = Sign<S>;

    fn layer(&self, inner: S) -> Sign<S> {
        Sign {
            inner,
            signer: self.signer.clone(),
        }
    }
}

/// The service of [`SignLayer`].
#[derive(Debug, Clone)]
pub struct Sign<S> {
    inner: S,
    signer: Option<Signer>,
}

impl<S, B> Service<Request<B>> for Sign<S>
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
        if let Some(signer) = &self.signer {
            // A service name is a static ASCII word: signing it cannot fail.
            let signed = signer
                .key
                .sign_into(request.headers_mut(), SERVICE_ROLE, signer.service, SystemTime::now());
            debug_assert!(signed.is_ok(), "service names are header values");
        }
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use baemin_mesh_server::identity::Caller;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_signed_call_reads_as_the_service_that_made_it() {
        let key = IdentityKey::new(&[9u8; 32]).unwrap();
        let echo = tower::service_fn(|r: Request<()>| async move { Ok::<_, Infallible>(r) });
        let signed = SignLayer::new(Some(Signer::new("call", key.clone())))
            .layer(echo)
            .oneshot(Request::new(()))
            .await
            .unwrap();
        assert_eq!(
            Caller::from_headers(signed.headers(), Some(&key), true, SystemTime::now()),
            Ok(Caller::Service("call".into()))
        );
        let unsigned = SignLayer::new(None)
            .layer(echo)
            .oneshot(Request::new(()))
            .await
            .unwrap();
        assert!(unsigned.headers().is_empty());
    }
}
