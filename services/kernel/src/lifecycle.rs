//! The delivery lifecycle: CALLED → ACCEPTED → PICKED → COMPLETED, and CANCELLED before pick-up.

use std::fmt;

/// Where a delivery is. The order of the variants is the rank used to merge out-of-order events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeliveryStatus {
    /// Placed by the restaurant; no rider yet.
    Called,
    /// A rider took the call.
    Accepted,
    /// The rider has the food.
    Picked,
    /// Delivered (and settled, or settling).
    Completed,
    /// Cancelled before pick-up; terminal.
    Cancelled,
}

/// A command that the lifecycle does not allow from the current status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} a delivery that is {from}")]
pub struct IllegalTransition {
    /// The status the delivery was in.
    pub from: DeliveryStatus,
    /// What was attempted ("accept", "pick up", ...).
    pub action: &'static str,
}

impl DeliveryStatus {
    /// Every status, in rank order.
    pub const ALL: [Self; 5] = [
        Self::Called,
        Self::Accepted,
        Self::Picked,
        Self::Completed,
        Self::Cancelled,
    ];

    /// The stable name used in databases and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Called => "CALLED",
            Self::Accepted => "ACCEPTED",
            Self::Picked => "PICKED",
            Self::Completed => "COMPLETED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// Parses the stable name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Rank for merging: status only moves forward; CANCELLED outranks everything (terminal).
    pub fn rank(self) -> u8 {
        self as u8
    }

    /// No command moves a delivery out of a terminal status.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled)
    }

    /// CALLED → ACCEPTED.
    pub fn accept(self) -> Result<Self, IllegalTransition> {
        self.step(Self::Called, Self::Accepted, "accept")
    }

    /// ACCEPTED → PICKED.
    pub fn pick_up(self) -> Result<Self, IllegalTransition> {
        self.step(Self::Accepted, Self::Picked, "pick up")
    }

    /// PICKED → COMPLETED.
    pub fn complete(self) -> Result<Self, IllegalTransition> {
        self.step(Self::Picked, Self::Completed, "complete")
    }

    /// CALLED or ACCEPTED → CANCELLED (never after pick-up).
    pub fn cancel(self) -> Result<Self, IllegalTransition> {
        match self {
            Self::Called | Self::Accepted => Ok(Self::Cancelled),
            from => Err(IllegalTransition { from, action: "cancel" }),
        }
    }

    /// The status after learning, in any order, that a delivery also reached `other`.
    ///
    /// Commutative, associative and idempotent, so a projection converges whatever the order or
    /// duplication of events.
    pub fn merge(self, other: Self) -> Self {
        self.max(other)
    }

    fn step(self, from: Self, to: Self, action: &'static str) -> Result<Self, IllegalTransition> {
        if self == from {
            Ok(to)
        } else {
            Err(IllegalTransition { from: self, action })
        }
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::DeliveryStatus::{self, *};

    #[test]
    fn the_happy_path_moves_called_to_completed() {
        let s = Called
            .accept()
            .and_then(DeliveryStatus::pick_up)
            .and_then(DeliveryStatus::complete);
        assert_eq!(s, Ok(Completed));
    }

    #[test]
    fn every_illegal_transition_is_refused_with_its_origin() {
        type Cmd = fn(DeliveryStatus) -> Result<DeliveryStatus, super::IllegalTransition>;
        let commands: [(&str, Cmd, DeliveryStatus); 3] = [
            ("accept", DeliveryStatus::accept, Called),
            ("pick up", DeliveryStatus::pick_up, Accepted),
            ("complete", DeliveryStatus::complete, Picked),
        ];
        for (action, command, legal_from) in commands {
            for from in DeliveryStatus::ALL {
                let result = command(from);
                if from == legal_from {
                    assert!(result.is_ok(), "{action} from {from}");
                } else {
                    let err = result.unwrap_err();
                    assert_eq!((err.from, err.action), (from, action));
                }
            }
        }
    }

    #[test]
    fn cancel_is_allowed_only_before_pick_up() {
        assert_eq!(Called.cancel(), Ok(Cancelled));
        assert_eq!(Accepted.cancel(), Ok(Cancelled));
        for from in [Picked, Completed, Cancelled] {
            assert!(from.cancel().is_err(), "cancel from {from}");
        }
    }

    #[test]
    fn merge_converges_whatever_the_order_and_cancelled_is_terminal() {
        for a in DeliveryStatus::ALL {
            for b in DeliveryStatus::ALL {
                assert_eq!(a.merge(b), b.merge(a));
                assert_eq!(a.merge(a), a);
                assert_eq!(a.merge(Cancelled), Cancelled);
            }
        }
        assert_eq!(
            Picked.merge(Accepted),
            Picked,
            "a late accept never moves a delivery back"
        );
    }

    #[test]
    fn names_round_trip() {
        for s in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::from_name(s.as_str()), Some(s));
        }
        assert_eq!(DeliveryStatus::from_name("called"), None);
    }

    proptest! {
        /// Not client input (names come from the services' own rows), but a corrupt row must not panic.
        #[test]
        fn status_from_name_never_panics_and_knows_only_the_stable_names(name in any::<String>()) {
            match DeliveryStatus::from_name(&name) {
                Some(status) => prop_assert_eq!(status.as_str(), name),
                None => prop_assert!(DeliveryStatus::ALL.iter().all(|s| s.as_str() != name)),
            }
        }

        #[test]
        fn status_from_name_is_exact_about_case_and_spacing(index in 0usize..5, pad in "[ \t]{0,2}", lower in any::<bool>()) {
            let name = DeliveryStatus::ALL[index].as_str();
            let spelled = if lower { name.to_lowercase() } else { name.to_owned() };
            let raw = format!("{pad}{spelled}");
            prop_assert_eq!(DeliveryStatus::from_name(&raw).is_some(), raw == name);
        }
    }
}
