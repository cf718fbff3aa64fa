//! Money: integer KRW, never floating point. Fees, the commission rate and settlement.

use crate::FieldViolation;

/// A delivery fee in KRW, 1..=1,000,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fee(i64);

impl Fee {
    /// Smallest accepted fee, KRW.
    pub const MIN: i64 = 1;
    /// Largest accepted fee, KRW.
    pub const MAX: i64 = 1_000_000;

    /// Parses a fee from a request field.
    pub fn parse(krw: i64, field: &str) -> Result<Self, FieldViolation> {
        if (Self::MIN..=Self::MAX).contains(&krw) {
            Ok(Self(krw))
        } else {
            Err(FieldViolation::new(
                field,
                format!("must be between {} and {} KRW", Self::MIN, Self::MAX),
            ))
        }
    }

    /// The fee in KRW.
    pub fn krw(self) -> i64 {
        self.0
    }
}

/// The company's commission in basis points (1/100 of a percent), 0..=10,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommissionRate(u32);

impl CommissionRate {
    /// The default: 1,000 bps = 10 %.
    pub const DEFAULT: Self = Self(1_000);

    /// A rate from basis points; `None` above 10,000 (100 %).
    pub fn from_bps(bps: u32) -> Option<Self> {
        (bps <= 10_000).then_some(Self(bps))
    }

    /// The rate in basis points.
    pub fn bps(self) -> u32 {
        self.0
    }

    /// Splits a fee into the company's commission (rounded down) and the rider's payout.
    pub fn settle(self, fee: Fee) -> Settlement {
        // fee ≤ 1e6 and bps ≤ 1e4: the product fits in i64 with room to spare.
        let commission = fee.krw() * i64::from(self.0) / 10_000;
        Settlement {
            fee: fee.krw(),
            commission,
            rider_payout: fee.krw() - commission,
        }
    }
}

impl Default for CommissionRate {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// How a settled fee was split. `commission + rider_payout == fee` always.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    /// The registered fee, KRW.
    pub fee: i64,
    /// The company's revenue from this delivery, KRW.
    pub commission: i64,
    /// What the rider is paid, KRW.
    pub rider_payout: i64,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn fee_accepts_exactly_one_to_one_million() {
        assert!(Fee::parse(0, "fee").is_err());
        assert!(Fee::parse(-5, "fee").is_err());
        assert_eq!(Fee::parse(1, "fee").unwrap().krw(), 1);
        assert_eq!(Fee::parse(1_000_000, "fee").unwrap().krw(), 1_000_000);
        assert!(Fee::parse(1_000_001, "fee").is_err());
    }

    #[test]
    fn default_commission_is_ten_percent() {
        let s = CommissionRate::default().settle(Fee::parse(3_000, "fee").unwrap());
        assert_eq!((s.commission, s.rider_payout), (300, 2_700));
    }

    #[test]
    fn commission_rounds_down_and_the_split_adds_up() {
        let rate = CommissionRate::from_bps(1_000).unwrap();
        let s = rate.settle(Fee::parse(3_999, "fee").unwrap());
        assert_eq!(s.commission, 399, "399.9 rounds down");
        assert_eq!(s.rider_payout, 3_600);
        for (fee, bps) in [(1, 1), (9, 9_999), (1_000_000, 10_000), (12_345, 333), (7, 0)] {
            let s = CommissionRate::from_bps(bps)
                .unwrap()
                .settle(Fee::parse(fee, "fee").unwrap());
            assert_eq!(s.commission + s.rider_payout, fee);
            assert!(s.commission >= 0 && s.rider_payout >= 0);
        }
    }

    #[test]
    fn a_fee_of_one_won_pays_no_commission() {
        let s = CommissionRate::default().settle(Fee::parse(1, "fee").unwrap());
        assert_eq!((s.commission, s.rider_payout), (0, 1));
    }

    #[test]
    fn commission_rate_above_one_hundred_percent_is_refused() {
        assert!(CommissionRate::from_bps(10_001).is_none());
        assert_eq!(CommissionRate::from_bps(10_000).unwrap().bps(), 10_000);
    }

    proptest! {
        #[test]
        fn fee_parse_never_panics_and_accepts_only_one_to_one_million(krw in any::<i64>()) {
            match Fee::parse(krw, "fee") {
                Ok(fee) => {
                    prop_assert!((1..=1_000_000).contains(&krw));
                    prop_assert_eq!(fee.krw(), krw);
                }
                Err(violation) => {
                    prop_assert!(!(1..=1_000_000).contains(&krw));
                    prop_assert_eq!(violation.field, "fee");
                }
            }
        }

        #[test]
        fn fee_is_accepted_anywhere_in_range(krw in Fee::MIN..=Fee::MAX) {
            prop_assert_eq!(Fee::parse(krw, "fee").map(Fee::krw), Ok(krw));
        }

        #[test]
        fn commission_rate_accepts_only_up_to_one_hundred_percent(bps in any::<u32>()) {
            prop_assert_eq!(CommissionRate::from_bps(bps).map(CommissionRate::bps), (bps <= 10_000).then_some(bps));
        }

        #[test]
        fn any_settlement_adds_up_and_rounds_commission_down(krw in Fee::MIN..=Fee::MAX, bps in 0u32..=10_000) {
            let s = CommissionRate::from_bps(bps).unwrap().settle(Fee::parse(krw, "fee").unwrap());
            prop_assert_eq!(s.fee, krw);
            prop_assert_eq!(s.commission + s.rider_payout, krw);
            prop_assert!(s.commission >= 0 && s.rider_payout >= 0);
            // commission = floor(fee × bps / 10 000)
            prop_assert!(s.commission * 10_000 <= krw * i64::from(bps));
            prop_assert!((s.commission + 1) * 10_000 > krw * i64::from(bps));
        }
    }
}
