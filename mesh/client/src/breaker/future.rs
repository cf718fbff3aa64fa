//! The response future of [`super::CircuitBreaker`].

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use pin_project_lite::pin_project;

use super::{body::ResponseBody, call::Call, classify::Classify, classify::code_from_head};

pin_project! {
    /// Resolves to the inner response with its body watched for the final status, or at once to
    /// UNAVAILABLE when the circuit refused the call.
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F, C>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, C> {
        Admitted {
            #[pin]
            future: F,
            call: Option<Call<C>>,
        },
        Refused {
            status: Option<tonic::Status>,
        },
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(super) fn admitted(future: F, call: Call<C>) -> Self {
        Self {
            kind: Kind::Admitted {
                future,
                call: Some(call),
            },
        }
    }

    pub(super) fn refused(status: tonic::Status) -> Self {
        Self {
            kind: Kind::Refused { status: Some(status) },
        }
    }
}

impl<F, C, B, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<http::Response<B>, E>>,
    E: Into<tower::BoxError>,
    C: Classify,
{
    type Output = Result<http::Response<ResponseBody<B, C>>, tower::BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Admitted { future, call } => match ready!(future.poll(cx)) {
                Ok(response) => {
                    let Some(mut call) = call.take() else {
                        return Poll::Ready(Ok(response.map(ResponseBody::settled)));
                    };
                    let at = call.answered();
                    let response = match code_from_head(&response) {
                        Some(code) => {
                            call.finish_code_at(code, at);
                            response.map(ResponseBody::settled)
                        }
                        None => response.map(|body| ResponseBody::watched(body, call)),
                    };
                    Poll::Ready(Ok(response))
                }
                Err(error) => {
                    let error = error.into();
                    if let Some(mut call) = call.take() {
                        call.finish_error(&*error);
                    }
                    Poll::Ready(Err(error))
                }
            },
            KindProj::Refused { status } => {
                let status = status
                    .take()
                    .unwrap_or_else(|| tonic::Status::unavailable("circuit breaker future polled after completion"));
                Poll::Ready(Err(Box::new(status)))
            }
        }
    }
}
