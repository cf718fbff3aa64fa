//! `baemin.payment.v1.PaymentService` over the payment application. Protobuf types stop here.

use std::sync::Arc;

use baemin_kernel::{CallId, Fee, InvalidInput, RiderId};
use baemin_proto::{
    payment::v1::{self as pb, payment_service_server::PaymentService},
    time::{from_millis, opt_from_millis},
};
use tonic::{Request, Response, Status};

use super::identity;
use crate::domain::{Payment, PaymentApp, PaymentError, PaymentStatus};

/// The gRPC face of the payment service.
pub struct PaymentGrpc {
    app: Arc<PaymentApp>,
}

impl PaymentGrpc {
    /// Serves `app`.
    pub fn new(app: Arc<PaymentApp>) -> Self {
        Self { app }
    }
}

fn call_id(raw: &str) -> Result<CallId, PaymentError> {
    CallId::parse(raw, "call_id").map_err(|v| PaymentError::Invalid(v.into()))
}

/// The call id and rider id of a HoldCost or Settle, every violation reported at once.
fn call_and_rider(call_id: &str, rider_id: &str) -> Result<(CallId, RiderId), PaymentError> {
    match (CallId::parse(call_id, "call_id"), RiderId::parse(rider_id, "rider_id")) {
        (Ok(call_id), Ok(rider)) => Ok((call_id, rider)),
        (call_id, rider) => Err(InvalidInput(call_id.err().into_iter().chain(rider.err()).collect()).into()),
    }
}

#[tonic::async_trait]
impl PaymentService for PaymentGrpc {
    async fn register_cost(
        &self,
        request: Request<pb::RegisterCostRequest>,
    ) -> Result<Response<pb::RegisterCostResponse>, Status> {
        identity::ensure_mesh(&request)?;
        let req = request.into_inner();
        let mut errors = InvalidInput::collector();
        let call_id = errors.take(CallId::parse(&req.call_id, "call_id"));
        let fee = errors.take(Fee::parse(req.fee, "fee"));
        errors.finish().map_err(PaymentError::from)?;
        let (Some(call_id), Some(fee)) = (call_id, fee) else {
            return Err(Status::internal("request parsing lost a field"));
        };
        let payment = self.app.register(call_id, fee).await?;
        Ok(Response::new(pb::RegisterCostResponse {
            payment: Some(to_pb(&payment)),
        }))
    }

    async fn hold_cost(&self, request: Request<pb::HoldCostRequest>) -> Result<Response<pb::HoldCostResponse>, Status> {
        identity::ensure_mesh(&request)?;
        let req = request.into_inner();
        let (call_id, rider) = call_and_rider(&req.call_id, &req.rider_id)?;
        let payment = self.app.hold(call_id, rider).await?;
        Ok(Response::new(pb::HoldCostResponse {
            payment: Some(to_pb(&payment)),
        }))
    }

    async fn settle(&self, request: Request<pb::SettleRequest>) -> Result<Response<pb::SettleResponse>, Status> {
        identity::ensure_mesh(&request)?;
        let req = request.into_inner();
        let (call_id, rider) = call_and_rider(&req.call_id, &req.rider_id)?;
        let payment = self.app.settle(call_id, rider).await?;
        Ok(Response::new(pb::SettleResponse {
            payment: Some(to_pb(&payment)),
        }))
    }

    async fn void_cost(&self, request: Request<pb::VoidCostRequest>) -> Result<Response<pb::VoidCostResponse>, Status> {
        identity::ensure_mesh(&request)?;
        let payment = self.app.void(call_id(&request.get_ref().call_id)?).await?;
        Ok(Response::new(pb::VoidCostResponse {
            payment: Some(to_pb(&payment)),
        }))
    }

    async fn get_payment(
        &self,
        request: Request<pb::GetPaymentRequest>,
    ) -> Result<Response<pb::GetPaymentResponse>, Status> {
        identity::ensure_company(&request)?;
        let payment = self.app.get(call_id(&request.get_ref().call_id)?).await?;
        Ok(Response::new(pb::GetPaymentResponse {
            payment: Some(to_pb(&payment)),
        }))
    }
}

fn to_pb(p: &Payment) -> pb::Payment {
    let status = match p.status {
        PaymentStatus::Registered => pb::PaymentStatus::Registered,
        PaymentStatus::Settled => pb::PaymentStatus::Settled,
        PaymentStatus::Voided => pb::PaymentStatus::Voided,
    };
    pb::Payment {
        payment_id: p.payment_id.clone(),
        call_id: p.call_id.to_string(),
        fee: p.fee.krw(),
        status: status as i32,
        rider_id: p.rider_id.as_ref().map(ToString::to_string).unwrap_or_default(),
        commission: p.settlement.map(|s| s.commission).unwrap_or_default(),
        rider_payout: p.settlement.map(|s| s.rider_payout).unwrap_or_default(),
        registered_at: Some(from_millis(p.registered_at)),
        settled_at: opt_from_millis(p.settled_at),
        voided_at: opt_from_millis(p.voided_at),
        held_at: opt_from_millis(p.held_at),
    }
}
