//! Requests become domain values here (every field violation at once), and calls become messages.

use baemin_kernel::{
    CallId, CancelReason, DeliveryStatus, Destination, Fee, FieldViolation, InvalidInput, PageSize, PageToken,
    RequestId, RestaurantId, RiderId,
};
use baemin_proto::{call::v1 as pb, time::from_millis};

use crate::domain::{Call, CallError, CallFilter, NewCall, PaymentState};

/// A PlaceCall request as a new call.
pub fn new_call(req: &pb::PlaceCallRequest) -> Result<NewCall, CallError> {
    let mut errors = InvalidInput::collector();
    let request_id = errors.take(RequestId::parse(&req.request_id, "request_id"));
    let restaurant_id = errors.take(RestaurantId::parse(&req.restaurant_id, "restaurant_id"));
    let destination = errors.take(Destination::parse(&req.destination, "destination"));
    let fee = errors.take(Fee::parse(req.fee, "fee"));
    errors.finish()?;
    match (request_id, restaurant_id, destination, fee) {
        (Some(request_id), Some(restaurant_id), Some(destination), Some(fee)) => Ok(NewCall {
            request_id,
            restaurant_id,
            destination,
            fee,
        }),
        _ => Err(lost_field()),
    }
}

/// The call id of a request.
pub fn call_id(raw: &str) -> Result<CallId, CallError> {
    CallId::parse(raw, "call_id").map_err(|v| CallError::Invalid(v.into()))
}

/// A CancelCall request as the call and the reason.
pub fn cancellation(req: &pb::CancelCallRequest) -> Result<(CallId, CancelReason), CallError> {
    let mut errors = InvalidInput::collector();
    let call_id = errors.take(CallId::parse(&req.call_id, "call_id"));
    let reason = errors.take(CancelReason::parse(&req.reason, "reason"));
    errors.finish()?;
    call_id.zip(reason).ok_or_else(lost_field)
}

/// A ListCalls request as its filter, page size and page token.
pub fn listing(req: &pb::ListCallsRequest) -> Result<(CallFilter, PageSize, Option<PageToken>), CallError> {
    let mut errors = InvalidInput::collector();
    let size = errors.take(PageSize::parse(req.page_size, "page_size"));
    let token = errors.take(PageToken::parse(&req.page_token, "page_token"));
    let status = errors.take(status_filter(req.status));
    let restaurant_id = errors.take(optional(&req.restaurant_id, |raw| {
        RestaurantId::parse(raw, "restaurant_id")
    }));
    let rider_id = errors.take(optional(&req.rider_id, |raw| RiderId::parse(raw, "rider_id")));
    errors.finish()?;
    match (size, token, status, restaurant_id, rider_id) {
        (Some(size), Some(token), Some(status), Some(restaurant_id), Some(rider_id)) => Ok((
            CallFilter {
                status,
                restaurant_id,
                rider_id,
            },
            size,
            token,
        )),
        _ => Err(lost_field()),
    }
}

/// The call as a message.
pub fn to_pb(call: &Call) -> pb::Call {
    pb::Call {
        call_id: call.call_id.to_string(),
        restaurant_id: call.restaurant_id.to_string(),
        destination: call.destination.to_string(),
        fee: call.fee.krw(),
        status: status_to_pb(call.status) as i32,
        rider_id: call.rider_id.as_ref().map(ToString::to_string).unwrap_or_default(),
        payment_state: payment_state_to_pb(call.payment_state) as i32,
        settled_amount: call.settled_amount.unwrap_or_default(),
        created_at: Some(from_millis(call.created_at)),
        updated_at: Some(from_millis(call.updated_at)),
    }
}

fn status_to_pb(status: DeliveryStatus) -> pb::CallStatus {
    match status {
        DeliveryStatus::Called => pb::CallStatus::Called,
        DeliveryStatus::Accepted => pb::CallStatus::Accepted,
        DeliveryStatus::Picked => pb::CallStatus::Picked,
        DeliveryStatus::Completed => pb::CallStatus::Completed,
        DeliveryStatus::Cancelled => pb::CallStatus::Cancelled,
    }
}

fn payment_state_to_pb(state: PaymentState) -> pb::PaymentState {
    match state {
        PaymentState::Pending => pb::PaymentState::Pending,
        PaymentState::Registered => pb::PaymentState::Registered,
        PaymentState::Settled => pb::PaymentState::Settled,
        PaymentState::Voided => pb::PaymentState::Voided,
    }
}

/// The status filter: unspecified means any.
fn status_filter(raw: i32) -> Result<Option<DeliveryStatus>, FieldViolation> {
    match pb::CallStatus::try_from(raw) {
        Ok(pb::CallStatus::Unspecified) => Ok(None),
        Ok(pb::CallStatus::Called) => Ok(Some(DeliveryStatus::Called)),
        Ok(pb::CallStatus::Accepted) => Ok(Some(DeliveryStatus::Accepted)),
        Ok(pb::CallStatus::Picked) => Ok(Some(DeliveryStatus::Picked)),
        Ok(pb::CallStatus::Completed) => Ok(Some(DeliveryStatus::Completed)),
        Ok(pb::CallStatus::Cancelled) => Ok(Some(DeliveryStatus::Cancelled)),
        Err(_) => Err(FieldViolation::new("status", "is not a known call status")),
    }
}

/// An optional id filter: empty means any.
fn optional<T>(raw: &str, parse: impl Fn(&str) -> Result<T, FieldViolation>) -> Result<Option<T>, FieldViolation> {
    if raw.is_empty() { Ok(None) } else { parse(raw).map(Some) }
}

fn lost_field() -> CallError {
    // Unreachable: the collector reported every field that did not parse.
    CallError::Invalid(InvalidInput(vec![FieldViolation::new("request", "could not be read")]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(err: CallError) -> Vec<String> {
        match err {
            CallError::Invalid(invalid) => invalid.0.into_iter().map(|v| v.field).collect(),
            other => panic!("expected invalid input, got {other:?}"),
        }
    }

    #[test]
    fn place_call_reports_every_bad_field_at_once() {
        let err = new_call(&pb::PlaceCallRequest {
            request_id: String::new(),
            restaurant_id: "bad id".into(),
            destination: "  ".into(),
            fee: 0,
        })
        .unwrap_err();
        assert_eq!(fields(err), ["request_id", "restaurant_id", "destination", "fee"]);
    }

    #[test]
    fn list_filters_are_optional_but_checked_when_given() {
        let (filter, size, token) = listing(&pb::ListCallsRequest::default()).unwrap();
        assert_eq!(filter, CallFilter::default());
        assert_eq!(size.get(), PageSize::DEFAULT);
        assert_eq!(token, None);
        let err = listing(&pb::ListCallsRequest {
            page_size: -1,
            page_token: "garbage".into(),
            status: 42,
            restaurant_id: "no spaces".into(),
            rider_id: "r!".into(),
        })
        .unwrap_err();
        assert_eq!(
            fields(err),
            ["page_size", "page_token", "status", "restaurant_id", "rider_id"]
        );
    }

    #[test]
    fn cancel_needs_a_call_id_and_a_sane_reason() {
        let err = cancellation(&pb::CancelCallRequest {
            call_id: "nope".into(),
            reason: "x".repeat(201),
        })
        .unwrap_err();
        assert_eq!(fields(err), ["call_id", "reason"]);
    }
}
