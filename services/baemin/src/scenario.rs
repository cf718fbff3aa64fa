//! The seed's scenario, step by step, with the state every service shows after each step:
//! place → payment registered (sync) → rider sees the open call (async) → report row CALLED →
//! accept → pick up → complete → settled; call and report show COMPLETED with the settled amount.

use std::{fmt::Write as _, future::Future, time::Duration};

use anyhow::{Context, bail};
use baemin_proto::{call::v1 as call, payment::v1 as payment, report::v1 as report, rider::v1 as rider};
use tonic::Code;

use crate::clients::Clients;

/// Who plays the scenario, and for how much.
#[derive(Debug, Clone)]
pub struct Script {
    /// The restaurant placing the call.
    pub restaurant: String,
    /// Where the food goes.
    pub destination: String,
    /// The fee, KRW.
    pub fee: i64,
    /// The rider taking the call.
    pub rider: String,
    /// Longest wait for an asynchronous step (an event reaching a service).
    pub patience: Duration,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            restaurant: "store-1".into(),
            destination: "서울 강남구 테헤란로 427".into(),
            fee: 3_000,
            rider: "rider-7".into(),
            patience: Duration::from_secs(15),
        }
    }
}

/// What the services showed at the end.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The call id of the delivery.
    pub call_id: String,
    /// The call as the call service shows it.
    pub call: call::Call,
    /// The payment.
    pub payment: payment::Payment,
    /// The delivery as the rider service shows it.
    pub delivery: rider::Delivery,
    /// The report's row.
    pub view: report::DeliveryView,
}

/// Plays the scenario, writing each step to `out`.
pub async fn play(clients: &Clients, script: &Script, out: &mut dyn FnMut(&str)) -> anyhow::Result<Outcome> {
    let mut c = clients.clone();
    let request_id = format!("scenario-{}", uuid::Uuid::now_v7().simple());

    out("1. the restaurant places a call (CallService.PlaceCall)");
    let placed = c
        .call
        .place_call(call::PlaceCallRequest {
            request_id,
            restaurant_id: script.restaurant.clone(),
            destination: script.destination.clone(),
            fee: script.fee,
        })
        .await
        .context("PlaceCall")?
        .into_inner()
        .call
        .context("PlaceCall returned no call")?;
    let call_id = placed.call_id.clone();
    out(&format!("   call      {}", crate::print::call_line(&placed)));

    out("2. payment registered the fee synchronously (PaymentService.GetPayment)");
    let registered = get_payment(&mut c, &call_id).await?;
    out(&format!("   payment   {}", crate::print::payment_line(&registered)));
    if registered.status() != payment::PaymentStatus::Registered {
        bail!("payment is {:?}, expected REGISTERED", registered.status());
    }

    out("3. the rider service received CallPlaced and shows the open call (async)");
    let open = eventually(script.patience, "the open call on the rider board", || {
        let mut rider = c.rider.clone();
        let call_id = call_id.clone();
        async move {
            let d = rider
                .get_delivery(rider::GetDeliveryRequest { call_id })
                .await
                .ok()
                .and_then(|r| r.into_inner().delivery);
            Ok(d.filter(|d| d.status() == rider::DeliveryStatus::Open))
        }
    })
    .await?;
    out(&format!("   rider     {}", crate::print::delivery_line(&open)));

    out("4. the report shows the row CALLED with its fee (CQRS)");
    let view = wait_view(&c, &call_id, script.patience, |v| {
        v.status() >= report::DeliveryStatus::Called && v.fee == script.fee
    })
    .await?;
    out(&format!("   report    {}", crate::print::view_line(&view)));

    out(&format!(
        "5. {} accepts the call (RiderService.AcceptCall)",
        script.rider
    ));
    let accepted = c
        .rider
        .accept_call(rider::AcceptCallRequest {
            call_id: call_id.clone(),
            rider_id: script.rider.clone(),
        })
        .await
        .context("AcceptCall")?
        .into_inner()
        .delivery
        .context("AcceptCall returned no delivery")?;
    out(&format!("   rider     {}", crate::print::delivery_line(&accepted)));

    out("6. the rider picks the food up (RiderService.PickUp)");
    let picked = c
        .rider
        .pick_up(rider::PickUpRequest {
            call_id: call_id.clone(),
            rider_id: script.rider.clone(),
        })
        .await
        .context("PickUp")?
        .into_inner()
        .delivery
        .context("PickUp returned no delivery")?;
    out(&format!("   rider     {}", crate::print::delivery_line(&picked)));
    let called = wait_call(&c, &call_id, script.patience, |x| {
        x.status() == call::CallStatus::Picked
    })
    .await?;
    out(&format!("   call      {}", crate::print::call_line(&called)));

    out("7. the rider completes; the fee is settled synchronously (RiderService.CompleteDelivery)");
    let delivery = c
        .rider
        .complete_delivery(rider::CompleteDeliveryRequest {
            call_id: call_id.clone(),
            rider_id: script.rider.clone(),
        })
        .await
        .context("CompleteDelivery")?
        .into_inner()
        .delivery
        .context("CompleteDelivery returned no delivery")?;
    out(&format!("   rider     {}", crate::print::delivery_line(&delivery)));
    let settled = get_payment(&mut c, &call_id).await?;
    out(&format!("   payment   {}", crate::print::payment_line(&settled)));
    if settled.status() != payment::PaymentStatus::Settled {
        bail!("payment is {:?}, expected SETTLED", settled.status());
    }

    out("8. the call service and the report follow: COMPLETED and settled");
    let final_call = wait_call(&c, &call_id, script.patience, |x| {
        x.status() == call::CallStatus::Completed && x.settled_amount == settled.rider_payout
    })
    .await?;
    out(&format!("   call      {}", crate::print::call_line(&final_call)));
    let view = wait_view(&c, &call_id, script.patience, |v| {
        v.status() == report::DeliveryStatus::Completed
            && v.payment_state() == report::PaymentState::Settled
            && v.settled_amount == settled.rider_payout
    })
    .await?;
    out(&format!("   report    {}", crate::print::view_line(&view)));

    Ok(Outcome {
        call_id,
        call: final_call,
        payment: settled,
        delivery,
        view,
    })
}

async fn get_payment(c: &mut Clients, call_id: &str) -> anyhow::Result<payment::Payment> {
    c.payment
        .get_payment(payment::GetPaymentRequest {
            call_id: call_id.to_owned(),
        })
        .await
        .context("GetPayment")?
        .into_inner()
        .payment
        .context("GetPayment returned no payment")
}

/// Waits until the call service shows the call in a state `accept`s.
pub async fn wait_call(
    clients: &Clients,
    call_id: &str,
    patience: Duration,
    accept: impl Fn(&call::Call) -> bool,
) -> anyhow::Result<call::Call> {
    let accept = &accept;
    eventually(patience, "the call service to show the change", || {
        let mut client = clients.call.clone();
        let call_id = call_id.to_owned();
        async move {
            let found = client.get_call(call::GetCallRequest { call_id }).await;
            Ok(found.ok().and_then(|r| r.into_inner().call).filter(|x| accept(x)))
        }
    })
    .await
}

/// Waits until the report shows the call's row in a state `accept`s.
pub async fn wait_view(
    clients: &Clients,
    call_id: &str,
    patience: Duration,
    accept: impl Fn(&report::DeliveryView) -> bool,
) -> anyhow::Result<report::DeliveryView> {
    let accept = &accept;
    eventually(patience, "the report to show the change", || {
        let mut client = clients.report.clone();
        let call_id = call_id.to_owned();
        async move {
            match client
                .get_delivery_view(report::GetDeliveryViewRequest { call_id })
                .await
            {
                Ok(r) => Ok(r.into_inner().view.filter(|v| accept(v))),
                Err(s) if s.code() == Code::NotFound => Ok(None),
                Err(s) if s.code() == Code::Unavailable => Ok(None),
                Err(s) => Err(s.into()),
            }
        }
    })
    .await
}

/// Polls `probe` until it yields a value, or fails after `patience` saying what it waited for.
pub async fn eventually<T, F, Fut>(patience: Duration, what: &str, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(value) = probe().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            let mut msg = String::new();
            let _ = write!(msg, "gave up after {patience:?} waiting for {what}");
            bail!(msg);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}
