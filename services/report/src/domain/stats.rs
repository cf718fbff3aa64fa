//! The company's figures: call counts per status, fees, revenue, and how fast deliveries go.

use baemin_kernel::DeliveryStatus;

/// What the database sums up over the visible rows (one or two aggregate queries).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// Per status: how many rows, and the sum of their fees (KRW).
    pub per_status: Vec<(DeliveryStatus, i64, i64)>,
    /// Rows whose payment is settled.
    pub settled_count: i64,
    /// Sum of commissions of settled rows, KRW.
    pub revenue: i64,
    /// Sum of rider payouts of settled rows, KRW.
    pub total_payouts: i64,
    /// Sum of `picked_at - called_at` over rows having both, and how many rows that is.
    pub pick_up: (i64, i64),
    /// Sum of `completed_at - called_at` over rows having both, and how many rows that is.
    pub complete: (i64, i64),
}

/// The answer to GetStats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Deliveries per status.
    pub called: i64,
    /// Deliveries per status.
    pub accepted: i64,
    /// Deliveries per status.
    pub picked: i64,
    /// Deliveries per status.
    pub completed: i64,
    /// Deliveries per status.
    pub cancelled: i64,
    /// Sum of the fees of every delivery not cancelled, KRW.
    pub total_fees: i64,
    /// Sum of the commissions of settled deliveries, KRW.
    pub revenue: i64,
    /// Settled deliveries.
    pub settled_count: i64,
    /// Sum of the rider payouts of settled deliveries, KRW.
    pub total_payouts: i64,
    /// Mean time from call to pick-up, ms (0 when none).
    pub mean_millis_to_pick_up: i64,
    /// Mean time from call to completion, ms (0 when none).
    pub mean_millis_to_complete: i64,
}

impl Stats {
    /// The figures from the database's sums. Means are divided here, in integers: SQL averages come
    /// back as NUMERIC or floating point depending on the database.
    pub fn from_totals(totals: &Totals) -> Self {
        let mut stats = Self {
            settled_count: totals.settled_count,
            revenue: totals.revenue,
            total_payouts: totals.total_payouts,
            mean_millis_to_pick_up: mean(totals.pick_up),
            mean_millis_to_complete: mean(totals.complete),
            ..Self::default()
        };
        for &(status, count, fees) in &totals.per_status {
            let counter = match status {
                DeliveryStatus::Called => &mut stats.called,
                DeliveryStatus::Accepted => &mut stats.accepted,
                DeliveryStatus::Picked => &mut stats.picked,
                DeliveryStatus::Completed => &mut stats.completed,
                DeliveryStatus::Cancelled => &mut stats.cancelled,
            };
            *counter += count;
            if status != DeliveryStatus::Cancelled {
                stats.total_fees += fees;
            }
        }
        stats
    }
}

fn mean((sum, count): (i64, i64)) -> i64 {
    if count > 0 { sum / count } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fees_of_cancelled_calls_are_not_counted_and_means_divide_sums() {
        let totals = Totals {
            per_status: vec![
                (DeliveryStatus::Called, 2, 6_000),
                (DeliveryStatus::Completed, 1, 5_000),
                (DeliveryStatus::Cancelled, 3, 9_000),
            ],
            settled_count: 1,
            revenue: 500,
            total_payouts: 4_500,
            pick_up: (3_000, 2),
            complete: (10_000, 1),
        };
        let stats = Stats::from_totals(&totals);
        assert_eq!((stats.called, stats.completed, stats.cancelled), (2, 1, 3));
        assert_eq!(stats.total_fees, 11_000);
        assert_eq!(
            (stats.mean_millis_to_pick_up, stats.mean_millis_to_complete),
            (1_500, 10_000)
        );
    }

    #[test]
    fn no_rows_means_zero_everywhere() {
        assert_eq!(Stats::from_totals(&Totals::default()), Stats::default());
    }
}
