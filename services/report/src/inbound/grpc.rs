//! `baemin.report.v1.ReportService` over the report application. Protobuf types stop here.

use std::{pin::Pin, sync::Arc};

use baemin_kernel::{CallId, DeliveryStatus, FieldViolation, InvalidInput, PageSize, PageToken, RestaurantId, RiderId};
use baemin_proto::{
    report::v1::{self as pb, report_service_server::ReportService},
    time::opt_from_millis,
};
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::identity;
use crate::domain::{DeliveryView, Filter, ListQuery, PaymentState, ReportApp, ReportError, Stats};

/// The gRPC face of the report service.
pub struct ReportGrpc {
    app: Arc<ReportApp>,
}

impl ReportGrpc {
    /// Serves `app`.
    pub fn new(app: Arc<ReportApp>) -> Self {
        Self { app }
    }
}

/// The stream of WatchDeliveryViews.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchDeliveryViewsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ReportService for ReportGrpc {
    async fn get_delivery_view(
        &self,
        request: Request<pb::GetDeliveryViewRequest>,
    ) -> Result<Response<pb::GetDeliveryViewResponse>, Status> {
        let viewer = identity::viewer(&request);
        let call_id = CallId::parse(&request.get_ref().call_id, "call_id").map_err(invalid)?;
        let view = self.app.get(&viewer, &call_id).await?;
        Ok(Response::new(pb::GetDeliveryViewResponse {
            view: Some(to_pb(&view)),
        }))
    }

    async fn list_delivery_views(
        &self,
        request: Request<pb::ListDeliveryViewsRequest>,
    ) -> Result<Response<pb::ListDeliveryViewsResponse>, Status> {
        let viewer = identity::viewer(&request);
        let query = list_query(request.get_ref())?;
        let page = self.app.list(&viewer, &query).await?;
        Ok(Response::new(pb::ListDeliveryViewsResponse {
            views: page.views.iter().map(to_pb).collect(),
            next_page_token: page.next_page_token.map(|t| t.encode()).unwrap_or_default(),
        }))
    }

    async fn get_stats(&self, request: Request<pb::GetStatsRequest>) -> Result<Response<pb::GetStatsResponse>, Status> {
        let viewer = identity::viewer(&request);
        let stats = self.app.stats(&viewer).await?;
        Ok(Response::new(stats_to_pb(&stats)))
    }

    type WatchDeliveryViewsStream = WatchStream;

    async fn watch_delivery_views(
        &self,
        request: Request<pb::WatchDeliveryViewsRequest>,
    ) -> Result<Response<Self::WatchDeliveryViewsStream>, Status> {
        let viewer = identity::viewer(&request);
        let req = request.into_inner();
        let call_id = if req.call_id.is_empty() {
            None
        } else {
            Some(CallId::parse(&req.call_id, "call_id").map_err(invalid)?)
        };
        let stream = self.app.watch(viewer, call_id, req.include_snapshot).map(|item| {
            item.map(|view| pb::WatchDeliveryViewsResponse {
                view: Some(to_pb(&view)),
            })
            .map_err(Status::from)
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

fn invalid(violation: FieldViolation) -> Status {
    ReportError::Invalid(violation.into()).into()
}

/// Every field of a list request, or every violation at once.
fn list_query(req: &pb::ListDeliveryViewsRequest) -> Result<ListQuery, ReportError> {
    let mut errors = InvalidInput::collector();
    let page_size = errors.take(PageSize::parse(req.page_size, "page_size"));
    let page_token = errors.take(PageToken::parse(&req.page_token, "page_token"));
    let status = errors.take(status_filter(req.status));
    let restaurant_id = errors.take(optional(&req.restaurant_id, |raw| {
        RestaurantId::parse(raw, "restaurant_id")
    }));
    let rider_id = errors.take(optional(&req.rider_id, |raw| RiderId::parse(raw, "rider_id")));
    errors.finish()?;
    match (page_size, page_token, status, restaurant_id, rider_id) {
        (Some(page_size), Some(page_token), Some(status), Some(restaurant_id), Some(rider_id)) => Ok(ListQuery {
            page_size,
            page_token,
            filter: Filter {
                status,
                restaurant_id,
                rider_id,
            },
        }),
        _ => Err(ReportError::Invalid(InvalidInput(Vec::new()))),
    }
}

/// An empty filter means any.
fn optional<T>(raw: &str, parse: impl FnOnce(&str) -> Result<T, FieldViolation>) -> Result<Option<T>, FieldViolation> {
    if raw.is_empty() { Ok(None) } else { parse(raw).map(Some) }
}

/// UNSPECIFIED means any status.
fn status_filter(raw: i32) -> Result<Option<DeliveryStatus>, FieldViolation> {
    match pb::DeliveryStatus::try_from(raw) {
        Ok(pb::DeliveryStatus::Unspecified) => Ok(None),
        Ok(pb::DeliveryStatus::Called) => Ok(Some(DeliveryStatus::Called)),
        Ok(pb::DeliveryStatus::Accepted) => Ok(Some(DeliveryStatus::Accepted)),
        Ok(pb::DeliveryStatus::Picked) => Ok(Some(DeliveryStatus::Picked)),
        Ok(pb::DeliveryStatus::Completed) => Ok(Some(DeliveryStatus::Completed)),
        Ok(pb::DeliveryStatus::Cancelled) => Ok(Some(DeliveryStatus::Cancelled)),
        Err(_) => Err(FieldViolation::new("status", "is not a known delivery status")),
    }
}

fn status_to_pb(status: Option<DeliveryStatus>) -> pb::DeliveryStatus {
    match status {
        None => pb::DeliveryStatus::Unspecified,
        Some(DeliveryStatus::Called) => pb::DeliveryStatus::Called,
        Some(DeliveryStatus::Accepted) => pb::DeliveryStatus::Accepted,
        Some(DeliveryStatus::Picked) => pb::DeliveryStatus::Picked,
        Some(DeliveryStatus::Completed) => pb::DeliveryStatus::Completed,
        Some(DeliveryStatus::Cancelled) => pb::DeliveryStatus::Cancelled,
    }
}

fn payment_state_to_pb(state: Option<PaymentState>) -> pb::PaymentState {
    match state {
        None => pb::PaymentState::Unspecified,
        Some(PaymentState::Pending) => pb::PaymentState::Pending,
        Some(PaymentState::Registered) => pb::PaymentState::Registered,
        Some(PaymentState::Settled) => pb::PaymentState::Settled,
        Some(PaymentState::Voided) => pb::PaymentState::Voided,
    }
}

/// The wire form of a row: the one domain → protobuf conversion of the deliverylist.
pub(crate) fn to_pb(v: &DeliveryView) -> pb::DeliveryView {
    pb::DeliveryView {
        call_id: v.call_id.to_string(),
        restaurant_id: v.restaurant_id.as_ref().map(ToString::to_string).unwrap_or_default(),
        destination: v.destination.as_ref().map(ToString::to_string).unwrap_or_default(),
        fee: v.fee.map(|f| f.krw()).unwrap_or_default(),
        status: status_to_pb(v.status) as i32,
        rider_id: v.rider_id.as_ref().map(ToString::to_string).unwrap_or_default(),
        payment_state: payment_state_to_pb(v.payment_state) as i32,
        settled_amount: v.settled_amount.unwrap_or_default(),
        commission: v.commission.unwrap_or_default(),
        called_at: opt_from_millis(v.called_at),
        accepted_at: opt_from_millis(v.accepted_at),
        picked_at: opt_from_millis(v.picked_at),
        completed_at: opt_from_millis(v.completed_at),
        cancelled_at: opt_from_millis(v.cancelled_at),
        updated_at: opt_from_millis(Some(v.updated_at)),
    }
}

fn stats_to_pb(s: &Stats) -> pb::GetStatsResponse {
    pb::GetStatsResponse {
        called: s.called,
        accepted: s.accepted,
        picked: s.picked,
        completed: s.completed,
        cancelled: s.cancelled,
        total_fees: s.total_fees,
        revenue: s.revenue,
        settled_count: s.settled_count,
        total_payouts: s.total_payouts,
        mean_millis_to_pick_up: s.mean_millis_to_pick_up,
        mean_millis_to_complete: s.mean_millis_to_complete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_request_reports_every_bad_field_at_once() {
        let req = pb::ListDeliveryViewsRequest {
            page_size: -1,
            page_token: "garbage".into(),
            status: 42,
            restaurant_id: "bad id".into(),
            rider_id: "r-1".into(),
        };
        let Err(ReportError::Invalid(InvalidInput(violations))) = list_query(&req) else {
            panic!("expected INVALID_ARGUMENT");
        };
        let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["page_size", "page_token", "status", "restaurant_id"]);
    }

    #[test]
    fn empty_filters_mean_any() {
        let query = list_query(&pb::ListDeliveryViewsRequest::default()).unwrap();
        assert_eq!(query.page_size.get(), PageSize::DEFAULT);
        assert!(query.page_token.is_none());
        assert_eq!(query.filter, Filter::default());
    }
}
