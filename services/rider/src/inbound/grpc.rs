//! `baemin.rider.v1.RiderService` over the rider application. Protobuf types stop here.

use std::{pin::Pin, sync::Arc};

use baemin_kernel::{CallId, DeliveryStatus, FieldViolation, InvalidInput, PageSize, PageToken, RestaurantId, RiderId};
use baemin_proto::{
    rider::v1::{self as pb, rider_service_server::RiderService, watch_open_calls_response},
    time::opt_from_millis,
};
use futures::{Stream, StreamExt, stream};
use tokio_stream::wrappers::{BroadcastStream, errors::BroadcastStreamRecvError};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::identity;
use crate::domain::{Actor, BoardChange, Delivery, DeliveryFilter, Page, RiderApp, RiderError};

/// The gRPC face of the rider service.
pub struct RiderGrpc {
    app: Arc<RiderApp>,
    /// The runtime's draining token: ends every WatchOpenCalls stream when shutdown starts, so a
    /// draining server is not held open by watchers.
    draining: CancellationToken,
}

impl RiderGrpc {
    /// Serves `app`; open watch streams end (UNAVAILABLE, "watch again") when `draining` is cancelled.
    pub fn new(app: Arc<RiderApp>, draining: CancellationToken) -> Self {
        Self { app, draining }
    }
}

type WatchItem = Result<pb::WatchOpenCallsResponse, Status>;

#[tonic::async_trait]
impl RiderService for RiderGrpc {
    type WatchOpenCallsStream = Pin<Box<dyn Stream<Item = WatchItem> + Send>>;

    async fn list_open_calls(
        &self,
        request: Request<pb::ListOpenCallsRequest>,
    ) -> Result<Response<pb::ListOpenCallsResponse>, Status> {
        identity::actor(&request).ensure_may_read_board()?;
        let req = request.into_inner();
        let mut errors = InvalidInput::collector();
        let size = errors.take(PageSize::parse(req.page_size, "page_size"));
        let after = errors.take(PageToken::parse(&req.page_token, "page_token"));
        errors.finish().map_err(RiderError::from)?;
        let (Some(size), Some(after)) = (size, after) else {
            return Err(lost_field());
        };
        let page = Page { size, after };
        let listed = self.app.list_open(page).await?;
        Ok(Response::new(pb::ListOpenCallsResponse {
            calls: listed.items.iter().map(to_pb).collect(),
            next_page_token: listed.next.map(|t| t.encode()).unwrap_or_default(),
        }))
    }

    async fn watch_open_calls(
        &self,
        request: Request<pb::WatchOpenCallsRequest>,
    ) -> Result<Response<Self::WatchOpenCallsStream>, Status> {
        let actor = identity::actor(&request);
        actor.ensure_may_read_board()?;
        // Subscribe before reading the board: a call that opens in between is sent twice at worst,
        // never lost (clients key the board by call id).
        let changes = BroadcastStream::new(self.app.watch_board());
        let board = self.app.open_calls_now().await?;
        let app = self.app.clone();
        let live = changes
            .then(move |change| {
                let (app, actor) = (app.clone(), actor.clone());
                async move {
                    match change {
                        Ok(BoardChange::Resync) => match app.open_calls_now().await {
                            Ok(calls) => calls.iter().map(opened).map(Ok).collect(),
                            Err(err) => vec![Err(Status::from(err))],
                        },
                        Ok(change) => board_message(&actor, &change).into_iter().map(Ok).collect(),
                        Err(BroadcastStreamRecvError::Lagged(missed)) => {
                            tracing::warn!(missed, "open-call watcher fell behind; resending the board");
                            match app.open_calls_now().await {
                                Ok(calls) => calls.iter().map(opened).map(Ok).collect(),
                                Err(err) => vec![Err(Status::from(err))],
                            }
                        }
                    }
                }
            })
            .flat_map(stream::iter);
        let snapshot: Vec<WatchItem> = board.iter().map(opened).map(Ok).collect();
        let stream = stream::iter(snapshot)
            .chain(live)
            .take_until(self.draining.clone().cancelled_owned())
            .chain(stream::once(async {
                Err(Status::unavailable("the rider service is shutting down; watch again"))
            }));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn accept_call(
        &self,
        request: Request<pb::AcceptCallRequest>,
    ) -> Result<Response<pb::AcceptCallResponse>, Status> {
        let (call_id, rider) = command(&request, &request.get_ref().call_id, &request.get_ref().rider_id)?;
        let delivery = self.app.accept(call_id, rider).await?;
        Ok(Response::new(pb::AcceptCallResponse {
            delivery: Some(to_pb(&delivery)),
        }))
    }

    async fn pick_up(&self, request: Request<pb::PickUpRequest>) -> Result<Response<pb::PickUpResponse>, Status> {
        let (call_id, rider) = command(&request, &request.get_ref().call_id, &request.get_ref().rider_id)?;
        let delivery = self.app.pick_up(call_id, rider).await?;
        Ok(Response::new(pb::PickUpResponse {
            delivery: Some(to_pb(&delivery)),
        }))
    }

    async fn complete_delivery(
        &self,
        request: Request<pb::CompleteDeliveryRequest>,
    ) -> Result<Response<pb::CompleteDeliveryResponse>, Status> {
        let (call_id, rider) = command(&request, &request.get_ref().call_id, &request.get_ref().rider_id)?;
        let delivery = self.app.complete(call_id, rider).await?;
        Ok(Response::new(pb::CompleteDeliveryResponse {
            delivery: Some(to_pb(&delivery)),
        }))
    }

    async fn get_delivery(
        &self,
        request: Request<pb::GetDeliveryRequest>,
    ) -> Result<Response<pb::GetDeliveryResponse>, Status> {
        let actor = identity::actor(&request);
        let call_id =
            CallId::parse(&request.get_ref().call_id, "call_id").map_err(|v| RiderError::Invalid(v.into()))?;
        let delivery = self.app.get(&call_id).await?;
        actor.ensure_may_see(&delivery)?;
        Ok(Response::new(pb::GetDeliveryResponse {
            delivery: Some(to_pb(&delivery)),
        }))
    }

    async fn list_deliveries(
        &self,
        request: Request<pb::ListDeliveriesRequest>,
    ) -> Result<Response<pb::ListDeliveriesResponse>, Status> {
        let actor = identity::actor(&request);
        let req = request.into_inner();
        let mut errors = InvalidInput::collector();
        let size = errors.take(PageSize::parse(req.page_size, "page_size"));
        let after = errors.take(PageToken::parse(&req.page_token, "page_token"));
        let status = errors.take(status_filter(req.status));
        let rider_id = errors.take(optional(&req.rider_id, |r| RiderId::parse(r, "rider_id")));
        let restaurant_id = errors.take(optional(&req.restaurant_id, |r| {
            RestaurantId::parse(r, "restaurant_id")
        }));
        errors.finish().map_err(RiderError::from)?;
        let (Some(size), Some(after), Some(status), Some(rider_id), Some(restaurant_id)) =
            (size, after, status, rider_id, restaurant_id)
        else {
            return Err(lost_field());
        };
        let page = Page { size, after };
        let filter = actor.scope(DeliveryFilter {
            status,
            rider_id,
            restaurant_id,
        })?;
        let listed = self.app.list(filter, page).await?;
        Ok(Response::new(pb::ListDeliveriesResponse {
            deliveries: listed.items.iter().map(to_pb).collect(),
            next_page_token: listed.next.map(|t| t.encode()).unwrap_or_default(),
        }))
    }
}

/// The call and the acting rider of AcceptCall / PickUp / CompleteDelivery, every violation at once.
fn command<T>(request: &Request<T>, call_id: &str, rider_id: &str) -> Result<(CallId, RiderId), Status> {
    let mut errors = InvalidInput::collector();
    let call_id = errors.take(CallId::parse(call_id, "call_id"));
    let rider = errors.take(RiderId::parse(rider_id, "rider_id"));
    errors.finish().map_err(RiderError::from)?;
    let (Some(call_id), Some(rider)) = (call_id, rider) else {
        return Err(lost_field());
    };
    identity::actor(request).ensure_acting_as(&rider)?;
    Ok((call_id, rider))
}

/// An empty filter field means any.
fn optional<T>(raw: &str, parse: impl FnOnce(&str) -> Result<T, FieldViolation>) -> Result<Option<T>, FieldViolation> {
    if raw.is_empty() { Ok(None) } else { parse(raw).map(Some) }
}

/// UNSPECIFIED means any status; an unknown number is a client's mistake.
fn status_filter(raw: i32) -> Result<Option<DeliveryStatus>, FieldViolation> {
    match pb::DeliveryStatus::try_from(raw) {
        Ok(pb::DeliveryStatus::Unspecified) => Ok(None),
        Ok(pb::DeliveryStatus::Open) => Ok(Some(DeliveryStatus::Called)),
        Ok(pb::DeliveryStatus::Accepted) => Ok(Some(DeliveryStatus::Accepted)),
        Ok(pb::DeliveryStatus::Picked) => Ok(Some(DeliveryStatus::Picked)),
        Ok(pb::DeliveryStatus::Completed) => Ok(Some(DeliveryStatus::Completed)),
        Ok(pb::DeliveryStatus::Cancelled) => Ok(Some(DeliveryStatus::Cancelled)),
        Err(_) => Err(FieldViolation::new("status", "is not a DeliveryStatus")),
    }
}

/// Parsing returned no violation yet lost a value: a bug here, never the client's fault.
fn lost_field() -> Status {
    Status::internal("request parsing lost a field")
}

/// A board change as `actor` may see it: whom a closed call went to is not every rider's business.
fn board_message(actor: &Actor, change: &BoardChange) -> Option<pb::WatchOpenCallsResponse> {
    match change {
        BoardChange::Opened(d) => Some(opened(d)),
        BoardChange::Closed(d) => Some(pb::WatchOpenCallsResponse {
            change: watch_open_calls_response::Change::Closed as i32,
            call: Some(to_pb(&actor.board_view(d))),
        }),
        BoardChange::Resync => None,
    }
}

fn opened(d: &Delivery) -> pb::WatchOpenCallsResponse {
    pb::WatchOpenCallsResponse {
        change: watch_open_calls_response::Change::Opened as i32,
        call: Some(to_pb(d)),
    }
}

fn status_to_pb(status: DeliveryStatus) -> pb::DeliveryStatus {
    match status {
        DeliveryStatus::Called => pb::DeliveryStatus::Open,
        DeliveryStatus::Accepted => pb::DeliveryStatus::Accepted,
        DeliveryStatus::Picked => pb::DeliveryStatus::Picked,
        DeliveryStatus::Completed => pb::DeliveryStatus::Completed,
        DeliveryStatus::Cancelled => pb::DeliveryStatus::Cancelled,
    }
}

fn to_pb(d: &Delivery) -> pb::Delivery {
    pb::Delivery {
        call_id: d.call_id.to_string(),
        restaurant_id: d.restaurant_id.as_ref().map(ToString::to_string).unwrap_or_default(),
        destination: d.destination.as_ref().map(ToString::to_string).unwrap_or_default(),
        fee: d.fee.map(baemin_kernel::Fee::krw).unwrap_or_default(),
        status: status_to_pb(d.status) as i32,
        rider_id: d.rider_id.as_ref().map(ToString::to_string).unwrap_or_default(),
        payout: d.settlement.map(|s| s.rider_payout).unwrap_or_default(),
        called_at: opt_from_millis(d.called_at),
        accepted_at: opt_from_millis(d.accepted_at),
        picked_at: opt_from_millis(d.picked_at),
        completed_at: opt_from_millis(d.completed_at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{rider, spawn_app};

    async fn watch(grpc: &RiderGrpc) -> <RiderGrpc as RiderService>::WatchOpenCallsStream {
        grpc.watch_open_calls(Request::new(pb::WatchOpenCallsRequest {}))
            .await
            .unwrap()
            .into_inner()
    }

    async fn next_change(
        stream: &mut <RiderGrpc as RiderService>::WatchOpenCallsStream,
    ) -> (watch_open_calls_response::Change, String) {
        let item = stream.next().await.unwrap().unwrap();
        (item.change(), item.call.unwrap().call_id)
    }

    #[tokio::test]
    async fn watch_sends_the_board_then_each_call_that_opens_or_closes_and_ends_at_shutdown() {
        use watch_open_calls_response::Change::{Closed, Opened};
        let t = spawn_app().await;
        let draining = CancellationToken::new();
        let grpc = RiderGrpc::new(t.app.clone(), draining.clone());
        let (a, b) = (t.place().await, t.place().await);
        let mut stream = watch(&grpc).await;
        assert_eq!(next_change(&mut stream).await, (Opened, a.to_string()));
        assert_eq!(next_change(&mut stream).await, (Opened, b.to_string()));
        let c = t.place().await;
        assert_eq!(next_change(&mut stream).await, (Opened, c.to_string()));
        t.app.accept(a.clone(), rider("r-1")).await.unwrap();
        assert_eq!(next_change(&mut stream).await, (Closed, a.to_string()));
        draining.cancel();
        let last = stream.next().await.unwrap().unwrap_err();
        assert_eq!(last.code(), tonic::Code::Unavailable);
        assert_eq!(last.message(), "the rider service is shutting down; watch again");
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn a_watch_opened_while_draining_ends_at_once_telling_the_client_to_watch_again() {
        let t = spawn_app().await;
        let draining = CancellationToken::new();
        let grpc = RiderGrpc::new(t.app.clone(), draining.clone());
        t.place().await;
        draining.cancel();
        let mut stream = watch(&grpc).await;
        let items: Vec<_> =
            tokio::time::timeout(std::time::Duration::from_secs(5), stream.by_ref().collect::<Vec<_>>())
                .await
                .expect("the stream ends");
        let last = items.last().unwrap().as_ref().unwrap_err();
        assert_eq!(last.code(), tonic::Code::Unavailable);
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_gets_the_whole_board_again() {
        use watch_open_calls_response::Change::Opened;
        let t = spawn_app().await;
        let grpc = RiderGrpc::new(t.app.clone(), CancellationToken::new());
        let first = t.place().await;
        let mut stream = watch(&grpc).await;
        assert_eq!(next_change(&mut stream).await, (Opened, first.to_string()));
        // More changes than the broadcast keeps, while the watcher reads nothing.
        for _ in 0..1_100 {
            t.place().await;
        }
        assert_eq!(
            next_change(&mut stream).await,
            (Opened, first.to_string()),
            "the board is resent from its oldest call"
        );
    }

    #[tokio::test]
    async fn a_watch_starts_with_at_most_the_oldest_hundred_open_calls_then_follows_changes() {
        use watch_open_calls_response::Change::Opened;
        let t = spawn_app().await;
        let grpc = RiderGrpc::new(t.app.clone(), CancellationToken::new());
        let mut placed = Vec::new();
        for _ in 0..RiderApp::BOARD_SNAPSHOT + 5 {
            placed.push(t.place().await.to_string());
        }
        let mut stream = watch(&grpc).await;
        let mut snapshot = Vec::new();
        for _ in 0..RiderApp::BOARD_SNAPSHOT {
            snapshot.push(next_change(&mut stream).await.1);
        }
        assert_eq!(
            snapshot,
            placed[..RiderApp::BOARD_SNAPSHOT as usize],
            "the oldest, in order"
        );
        let more = tokio::time::timeout(std::time::Duration::from_millis(300), stream.next()).await;
        assert!(more.is_err(), "nothing past the bound: {more:?}");
        let later = t.place().await;
        assert_eq!(next_change(&mut stream).await, (Opened, later.to_string()));
    }

    #[test]
    fn status_filter_maps_open_to_called_and_refuses_unknown_numbers() {
        assert_eq!(status_filter(0), Ok(None));
        assert_eq!(
            status_filter(pb::DeliveryStatus::Open as i32),
            Ok(Some(DeliveryStatus::Called))
        );
        for status in DeliveryStatus::ALL {
            assert_eq!(status_filter(status_to_pb(status) as i32), Ok(Some(status)));
        }
        assert_eq!(status_filter(42).unwrap_err().field, "status");
    }

    #[test]
    fn a_command_reports_every_bad_field_at_once() {
        let request = Request::new(());
        let status = command(&request, "nope", "").unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("call_id"), "{}", status.message());
        assert!(status.message().contains("rider_id"), "{}", status.message());
    }
}
