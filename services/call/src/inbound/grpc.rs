//! `baemin.call.v1.CallService` over the call application. Protobuf types stop here.
//!
//! Each method reads the caller the gateway vouched for (`x-baemin-subject` / `x-baemin-role`) as an
//! [`Actor`]; the domain decides what that actor may do (a restaurant its own calls, a rider reads the
//! calls it took).

use std::{pin::Pin, sync::Arc};

use baemin_proto::call::v1::{self as pb, call_service_server::CallService};
use futures::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::{identity, proto, watch};
use crate::domain::{Actor, CallApp};

/// The gRPC face of the call service.
pub struct CallGrpc {
    app: Arc<CallApp>,
    /// Ends every WatchCall stream, so a draining server is not held open by watchers.
    streams_stop: CancellationToken,
}

impl CallGrpc {
    /// Serves `app`; open watch streams end (UNAVAILABLE, "watch again") when `streams_stop` is
    /// cancelled.
    pub fn new(app: Arc<CallApp>, streams_stop: CancellationToken) -> Self {
        Self { app, streams_stop }
    }
}

fn actor<T>(request: &Request<T>) -> Result<Actor, Status> {
    Ok(identity::actor(baemin_mesh_server::identity::Caller::of(request)))
}

#[tonic::async_trait]
impl CallService for CallGrpc {
    async fn place_call(
        &self,
        request: Request<pb::PlaceCallRequest>,
    ) -> Result<Response<pb::PlaceCallResponse>, Status> {
        let actor = actor(&request)?;
        let new = proto::new_call(request.get_ref())?;
        let call = self.app.place(&actor, new).await?;
        Ok(Response::new(pb::PlaceCallResponse {
            call: Some(proto::to_pb(&call)),
        }))
    }

    async fn get_call(&self, request: Request<pb::GetCallRequest>) -> Result<Response<pb::GetCallResponse>, Status> {
        let actor = actor(&request)?;
        let call_id = proto::call_id(&request.get_ref().call_id)?;
        let call = self.app.get(&actor, &call_id).await?;
        Ok(Response::new(pb::GetCallResponse {
            call: Some(proto::to_pb(&call)),
        }))
    }

    async fn list_calls(
        &self,
        request: Request<pb::ListCallsRequest>,
    ) -> Result<Response<pb::ListCallsResponse>, Status> {
        let actor = actor(&request)?;
        let (filter, size, token) = proto::listing(request.get_ref())?;
        let page = self.app.list(&actor, filter, size, token.as_ref()).await?;
        Ok(Response::new(pb::ListCallsResponse {
            calls: page.calls.iter().map(proto::to_pb).collect(),
            next_page_token: page.next_page.map(|token| token.encode()).unwrap_or_default(),
        }))
    }

    async fn cancel_call(
        &self,
        request: Request<pb::CancelCallRequest>,
    ) -> Result<Response<pb::CancelCallResponse>, Status> {
        let actor = actor(&request)?;
        let (call_id, reason) = proto::cancellation(request.get_ref())?;
        let call = self.app.cancel(&actor, call_id, reason).await?;
        Ok(Response::new(pb::CancelCallResponse {
            call: Some(proto::to_pb(&call)),
        }))
    }

    type WatchCallStream = Pin<Box<dyn Stream<Item = Result<pb::WatchCallResponse, Status>> + Send>>;

    async fn watch_call(
        &self,
        request: Request<pb::WatchCallRequest>,
    ) -> Result<Response<Self::WatchCallStream>, Status> {
        let actor = actor(&request)?;
        let call_id = proto::call_id(&request.get_ref().call_id)?;
        // Subscribe before reading, so no change between the read and the first wait is missed.
        let subscription = self.app.watch();
        let current = self.app.get(&actor, &call_id).await?;
        let stream = watch::changes(
            self.app.clone(),
            actor,
            current,
            subscription,
            self.streams_stop.clone(),
        );
        Ok(Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use baemin_mesh_server::identity::Caller;
    use futures::StreamExt;
    use tonic::Code;

    use super::*;
    use crate::domain::testing::{FakePayments, app, new_call};

    async fn grpc() -> (CallGrpc, CancellationToken) {
        let (app, _db) = app(FakePayments::new()).await;
        let draining = CancellationToken::new();
        (CallGrpc::new(Arc::new(app), draining.clone()), draining)
    }

    /// A request as the identity layer hands it on: with the verified caller in its extensions.
    fn as_role<T>(message: T, role: &'static str, subject: &'static str) -> Request<T> {
        let mut request = Request::new(message);
        let caller = Caller::of_role(role.parse().unwrap(), subject).unwrap();
        request.extensions_mut().insert(caller);
        request
    }

    #[tokio::test]
    async fn watch_call_ends_with_unavailable_when_the_server_starts_draining() {
        let (grpc, draining) = grpc().await;
        let call = grpc.app.place(&Actor::Company, new_call("req-1", 3_000)).await.unwrap();
        let request = Request::new(pb::WatchCallRequest {
            call_id: call.call_id.to_string(),
        });
        let mut stream = grpc.watch_call(request).await.unwrap().into_inner();
        assert!(stream.next().await.unwrap().is_ok());

        draining.cancel();

        let status = stream.next().await.unwrap().unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.message().contains("watch again"), "{}", status.message());
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn another_restaurants_call_is_permission_denied_and_an_unknown_one_not_found() {
        let (grpc, _draining) = grpc().await;
        let call = grpc.app.place(&Actor::Company, new_call("req-1", 3_000)).await.unwrap();
        let get = |call_id: String, subject| as_role(pb::GetCallRequest { call_id }, "restaurant", subject);

        let own = grpc.get_call(get(call.call_id.to_string(), "store-1")).await.unwrap();
        assert_eq!(own.into_inner().call.unwrap().call_id, call.call_id.as_str());
        let err = grpc
            .get_call(get(call.call_id.to_string(), "store-2"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        let watch = as_role(
            pb::WatchCallRequest {
                call_id: call.call_id.to_string(),
            },
            "restaurant",
            "store-2",
        );
        assert_eq!(
            grpc.watch_call(watch).await.err().unwrap().code(),
            Code::PermissionDenied
        );
        let unknown = baemin_kernel::CallId::generate().to_string();
        let err = grpc.get_call(get(unknown, "store-2")).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
    }
}
