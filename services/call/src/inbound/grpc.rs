//! `baemin.call.v1.CallService` over the call application. Protobuf types stop here.
//!
//! Identity checks (a restaurant sees only its own calls) belong in these methods once the edge
//! passes `x-baemin-subject` / `x-baemin-role`: each reads its request whole before calling the domain.

use std::{pin::Pin, sync::Arc};

use baemin_proto::call::v1::{self as pb, call_service_server::CallService};
use futures::Stream;
use tonic::{Request, Response, Status};

use super::{proto, watch};
use crate::domain::CallApp;

/// The gRPC face of the call service.
pub struct CallGrpc {
    app: Arc<CallApp>,
}

impl CallGrpc {
    /// Serves `app`.
    pub fn new(app: Arc<CallApp>) -> Self {
        Self { app }
    }
}

#[tonic::async_trait]
impl CallService for CallGrpc {
    async fn place_call(
        &self,
        request: Request<pb::PlaceCallRequest>,
    ) -> Result<Response<pb::PlaceCallResponse>, Status> {
        let new = proto::new_call(request.get_ref())?;
        let call = self.app.place(new).await?;
        Ok(Response::new(pb::PlaceCallResponse {
            call: Some(proto::to_pb(&call)),
        }))
    }

    async fn get_call(&self, request: Request<pb::GetCallRequest>) -> Result<Response<pb::GetCallResponse>, Status> {
        let call_id = proto::call_id(&request.get_ref().call_id)?;
        let call = self.app.get(&call_id).await?;
        Ok(Response::new(pb::GetCallResponse {
            call: Some(proto::to_pb(&call)),
        }))
    }

    async fn list_calls(
        &self,
        request: Request<pb::ListCallsRequest>,
    ) -> Result<Response<pb::ListCallsResponse>, Status> {
        let (filter, size, token) = proto::listing(request.get_ref())?;
        let page = self.app.list(&filter, size, token.as_ref()).await?;
        Ok(Response::new(pb::ListCallsResponse {
            calls: page.calls.iter().map(proto::to_pb).collect(),
            next_page_token: page.next_page.map(|token| token.encode()).unwrap_or_default(),
        }))
    }

    async fn cancel_call(
        &self,
        request: Request<pb::CancelCallRequest>,
    ) -> Result<Response<pb::CancelCallResponse>, Status> {
        let (call_id, reason) = proto::cancellation(request.get_ref())?;
        let call = self.app.cancel(call_id, reason).await?;
        Ok(Response::new(pb::CancelCallResponse {
            call: Some(proto::to_pb(&call)),
        }))
    }

    type WatchCallStream = Pin<Box<dyn Stream<Item = Result<pb::WatchCallResponse, Status>> + Send>>;

    async fn watch_call(
        &self,
        request: Request<pb::WatchCallRequest>,
    ) -> Result<Response<Self::WatchCallStream>, Status> {
        let call_id = proto::call_id(&request.get_ref().call_id)?;
        // Subscribe before reading, so no change between the read and the first wait is missed.
        let changes = self.app.subscribe();
        let current = self.app.get(&call_id).await?;
        let stream = watch::changes(self.app.clone(), current, changes);
        Ok(Response::new(Box::pin(stream)))
    }
}
