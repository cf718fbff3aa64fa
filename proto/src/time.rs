//! Timestamps on the wire are `google.protobuf.Timestamp`; everywhere else they are `chrono::DateTime<Utc>`.

use prost_types::Timestamp;

/// Milliseconds since the Unix epoch as a protobuf timestamp.
pub fn from_millis(millis: i64) -> Timestamp {
    Timestamp {
        seconds: millis.div_euclid(1000),
        nanos: (millis.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// A protobuf timestamp as milliseconds since the Unix epoch (sub-millisecond precision is dropped).
/// Saturates instead of overflowing: a timestamp from the wire may hold anything.
pub fn to_millis(ts: &Timestamp) -> i64 {
    ts.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(ts.nanos) / 1_000_000)
}

/// An optional millisecond instant as an optional protobuf timestamp.
pub fn opt_from_millis(millis: Option<i64>) -> Option<Timestamp> {
    millis.map(from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_trip_including_before_epoch() {
        for millis in [0, 1, 999, 1_700_000_000_123, -1, -1001] {
            assert_eq!(to_millis(&from_millis(millis)), millis);
        }
    }

    #[test]
    fn absurd_timestamps_saturate_instead_of_overflowing() {
        let ts = Timestamp {
            seconds: i64::MAX,
            nanos: 999_999_999,
        };
        assert_eq!(to_millis(&ts), i64::MAX);
    }
}
