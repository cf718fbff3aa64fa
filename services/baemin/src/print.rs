//! One-line renderings of what the services return, for people.

use baemin_proto::{
    call::v1 as call, payment::v1 as payment, report::v1 as report, rider::v1 as rider, time::to_millis,
};

fn name<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}").to_uppercase()
}

fn opt(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

fn at(ts: &Option<prost_types::Timestamp>) -> String {
    ts.as_ref().map_or_else(
        || "-".into(),
        |t| {
            let ms = to_millis(t);
            let secs = ms.div_euclid(1000);
            let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
            format!("{h:02}:{m:02}:{s:02}.{:03}Z", ms.rem_euclid(1000))
        },
    )
}

/// A call as the call service shows it.
pub fn call_line(c: &call::Call) -> String {
    format!(
        "{}  {:<9} restaurant={} fee={} rider={} payment={} settled={} dest={:?}",
        c.call_id,
        name(c.status()),
        c.restaurant_id,
        c.fee,
        opt(&c.rider_id),
        name(c.payment_state()),
        c.settled_amount,
        c.destination
    )
}

/// A delivery as the rider service shows it.
pub fn delivery_line(d: &rider::Delivery) -> String {
    format!(
        "{}  {:<9} rider={} fee={} payout={} restaurant={} dest={:?}",
        d.call_id,
        name(d.status()),
        opt(&d.rider_id),
        d.fee,
        d.payout,
        opt(&d.restaurant_id),
        d.destination
    )
}

/// A payment.
pub fn payment_line(p: &payment::Payment) -> String {
    format!(
        "{}  {:<10} fee={} commission={} rider_payout={} rider={}",
        p.call_id,
        name(p.status()),
        p.fee,
        p.commission,
        p.rider_payout,
        opt(&p.rider_id)
    )
}

/// A row of the report's deliverylist.
pub fn view_line(v: &report::DeliveryView) -> String {
    format!(
        "{}  {:<9} restaurant={} fee={} rider={} payment={} settled={} commission={} called={} completed={}",
        v.call_id,
        name(v.status()),
        opt(&v.restaurant_id),
        v.fee,
        opt(&v.rider_id),
        name(v.payment_state()),
        v.settled_amount,
        v.commission,
        at(&v.called_at),
        at(&v.completed_at)
    )
}

/// The report's stats.
pub fn stats_lines(s: &report::GetStatsResponse) -> Vec<String> {
    vec![
        format!(
            "calls: CALLED {}  ACCEPTED {}  PICKED {}  COMPLETED {}  CANCELLED {}",
            s.called, s.accepted, s.picked, s.completed, s.cancelled
        ),
        format!(
            "total fees: {} KRW   revenue: {} KRW   rider payouts: {} KRW   settled: {}",
            s.total_fees, s.revenue, s.total_payouts, s.settled_count
        ),
        format!(
            "mean time to pick-up: {} ms   to complete: {} ms",
            s.mean_millis_to_pick_up, s.mean_millis_to_complete
        ),
    ]
}

/// A dead letter: where it came from, why it died, and which event it carries when it decodes.
pub fn dead_letter_line(d: &baemin_mesh_events::deadletter::DeadLetter) -> String {
    use prost::Message;
    let event = baemin_mesh_events::Envelope::decode(d.payload.as_ref())
        .map(|e| format!("event={} call={}", opt(&e.event_id), opt(&e.call_id)))
        .unwrap_or_else(|_| format!("undecodable payload of {} bytes", d.payload.len()));
    format!(
        "#{:<5} {}  consumer={} subject={} seq={} delivered={} {}  reason={:?}",
        d.sequence, d.dead_at, d.consumer, d.original_subject, d.original_sequence, d.delivered, event, d.reason
    )
}
