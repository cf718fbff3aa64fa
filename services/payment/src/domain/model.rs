//! A payment and the decisions each command makes on it (pure: no I/O).

use baemin_kernel::{CallId, CommissionRate, Fee, Millis, RiderId, Settlement};

use super::{PaymentError, Refusal};

/// Where a payment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentStatus {
    /// The fee is registered for the call.
    Registered,
    /// Paid out to the rider, commission kept.
    Settled,
    /// Cancelled; nothing will be paid.
    Voided,
}

impl PaymentStatus {
    /// The stable name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "REGISTERED",
            Self::Settled => "SETTLED",
            Self::Voided => "VOIDED",
        }
    }

    /// Parses the stored name.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Registered, Self::Settled, Self::Voided]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

/// The payment of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// This payment's own id (UUIDv7).
    pub payment_id: String,
    /// The call it pays for (one payment per call).
    pub call_id: CallId,
    /// The registered fee.
    pub fee: Fee,
    /// Where it is.
    pub status: PaymentStatus,
    /// The rider the fee is held for (since HoldCost: the food was picked up) or was paid to.
    pub rider_id: Option<RiderId>,
    /// How the fee was split, once settled.
    pub settlement: Option<Settlement>,
    /// When it was registered / settled / voided.
    pub registered_at: Millis,
    /// Set when settled.
    pub settled_at: Option<Millis>,
    /// Set when voided.
    pub voided_at: Option<Millis>,
    /// Set when held for `rider_id` (the rider picked the food up): from then on the fee can no longer
    /// be voided, and only that rider can be paid.
    pub held_at: Option<Millis>,
}

/// What a command decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The payment moves to this new state (store it, emit its event).
    Apply(Payment),
    /// The command was already done before (idempotent repeat): answer with the payment as it is.
    AlreadyDone(Payment),
}

impl Payment {
    /// A fresh registration of `fee` for `call_id`.
    pub fn register(call_id: CallId, fee: Fee, now: Millis) -> Self {
        Self {
            payment_id: uuid::Uuid::now_v7().to_string(),
            call_id,
            fee,
            status: PaymentStatus::Registered,
            rider_id: None,
            settlement: None,
            registered_at: now,
            settled_at: None,
            voided_at: None,
            held_at: None,
        }
    }

    /// RegisterCost again for an existing payment: the same fee is an idempotent repeat.
    pub fn register_again(&self, fee: Fee) -> Result<Change, PaymentError> {
        if self.fee != fee {
            return Err(PaymentError::FeeConflict {
                call_id: self.call_id.to_string(),
                registered: self.fee.krw(),
                requested: fee.krw(),
            });
        }
        match self.status {
            PaymentStatus::Voided => Err(PaymentError::IllegalState(
                Refusal::FeeVoided,
                format!(
                    "the fee of call {} was voided; a voided fee cannot be registered again",
                    self.call_id
                ),
            )),
            _ => Ok(Change::AlreadyDone(self.clone())),
        }
    }

    /// Holds the registered fee for `rider`, who is picking the food up. Payment is the arbiter between
    /// a pick-up and a cancellation: whichever of HoldCost and VoidCost it applies first wins, and the
    /// other is refused. Holding again for the same rider (a retry) is done, also once settled with them.
    pub fn hold(&self, rider: &RiderId, now: Millis) -> Result<Change, PaymentError> {
        match (self.status, &self.rider_id) {
            (PaymentStatus::Registered, None) => Ok(Change::Apply(Self {
                rider_id: Some(rider.clone()),
                held_at: Some(now),
                ..self.clone()
            })),
            (PaymentStatus::Registered | PaymentStatus::Settled, Some(holder)) if holder == rider => {
                Ok(Change::AlreadyDone(self.clone()))
            }
            (PaymentStatus::Voided, _) => Err(self.voided_refusal("held")),
            _ => Err(self.another_rider()),
        }
    }

    /// Settles with `rider` (the one the fee is held for, if held): the commission is `rate` of the
    /// fee, rounded down.
    pub fn settle(&self, rider: &RiderId, rate: CommissionRate, now: Millis) -> Result<Change, PaymentError> {
        match (self.status, &self.rider_id) {
            (PaymentStatus::Registered, holder) if holder.as_ref().is_none_or(|h| h == rider) => {
                Ok(Change::Apply(Self {
                    status: PaymentStatus::Settled,
                    rider_id: Some(rider.clone()),
                    settlement: Some(rate.settle(self.fee)),
                    settled_at: Some(now),
                    ..self.clone()
                }))
            }
            (PaymentStatus::Settled, Some(paid)) if paid == rider => Ok(Change::AlreadyDone(self.clone())),
            (PaymentStatus::Voided, _) => Err(self.voided_refusal("settled")),
            _ => Err(self.another_rider()),
        }
    }

    fn voided_refusal(&self, what: &str) -> PaymentError {
        PaymentError::IllegalState(
            Refusal::FeeVoided,
            format!(
                "the fee of call {} was voided (the call was cancelled); it cannot be {what}",
                self.call_id
            ),
        )
    }

    /// The refusal of a hold or settlement by a rider the fee is not held for or paid to.
    fn another_rider(&self) -> PaymentError {
        if self.status == PaymentStatus::Settled {
            PaymentError::IllegalState(
                Refusal::SettledWithAnotherRider,
                format!("call {} was already settled with another rider", self.call_id),
            )
        } else {
            PaymentError::IllegalState(
                Refusal::HeldForAnotherRider,
                format!("the fee of call {} is held for another rider", self.call_id),
            )
        }
    }

    /// Voids the fee: allowed until it is held for a rider (picked up) or settled.
    pub fn void(&self, now: Millis) -> Result<Change, PaymentError> {
        match self.status {
            PaymentStatus::Registered if self.held_at.is_some() => Err(PaymentError::IllegalState(
                Refusal::FeeHeld,
                format!(
                    "the fee of call {} is held for the rider who picked the food up; a picked-up call cannot be cancelled",
                    self.call_id
                ),
            )),
            PaymentStatus::Registered => Ok(Change::Apply(Self {
                status: PaymentStatus::Voided,
                voided_at: Some(now),
                ..self.clone()
            })),
            PaymentStatus::Voided => Ok(Change::AlreadyDone(self.clone())),
            PaymentStatus::Settled => Err(PaymentError::IllegalState(
                Refusal::FeeSettled,
                format!(
                    "call {} is already settled; a settled fee cannot be voided",
                    self.call_id
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered(fee: i64) -> Payment {
        Payment::register(CallId::generate(), Fee::parse(fee, "fee").unwrap(), 1)
    }

    fn rider(id: &str) -> RiderId {
        RiderId::parse(id, "rider_id").unwrap()
    }

    fn applied(change: Change) -> Payment {
        match change {
            Change::Apply(p) => p,
            Change::AlreadyDone(_) => panic!("expected a change"),
        }
    }

    #[test]
    fn settling_splits_the_fee_and_a_second_settle_pays_nothing_more() {
        let p = registered(3_999);
        let settled = applied(p.settle(&rider("r-1"), CommissionRate::DEFAULT, 2).unwrap());
        let s = settled.settlement.unwrap();
        assert_eq!((s.commission, s.rider_payout), (399, 3_600));
        assert_eq!(
            settled.settle(&rider("r-1"), CommissionRate::DEFAULT, 3).unwrap(),
            Change::AlreadyDone(settled.clone())
        );
        assert!(matches!(
            settled.settle(&rider("r-2"), CommissionRate::DEFAULT, 3),
            Err(PaymentError::IllegalState(Refusal::SettledWithAnotherRider, _))
        ));
    }

    #[test]
    fn registering_again_is_idempotent_only_with_the_same_fee() {
        let p = registered(5_000);
        assert_eq!(p.register_again(p.fee).unwrap(), Change::AlreadyDone(p.clone()));
        assert!(matches!(
            p.register_again(Fee::parse(6_000, "fee").unwrap()),
            Err(PaymentError::FeeConflict {
                registered: 5_000,
                requested: 6_000,
                ..
            })
        ));
    }

    #[test]
    fn a_voided_fee_can_be_neither_settled_nor_registered_again() {
        let voided = applied(registered(5_000).void(2).unwrap());
        assert_eq!(voided.void(3).unwrap(), Change::AlreadyDone(voided.clone()));
        assert!(matches!(
            voided.settle(&rider("r-1"), CommissionRate::DEFAULT, 3),
            Err(PaymentError::IllegalState(Refusal::FeeVoided, _))
        ));
        assert!(matches!(
            voided.register_again(voided.fee),
            Err(PaymentError::IllegalState(Refusal::FeeVoided, _))
        ));
    }

    #[test]
    fn a_held_fee_cannot_be_voided_and_pays_only_the_rider_it_is_held_for() {
        let held = applied(registered(5_000).hold(&rider("r-1"), 2).unwrap());
        assert_eq!((held.status, held.held_at), (PaymentStatus::Registered, Some(2)));
        assert_eq!(held.hold(&rider("r-1"), 3).unwrap(), Change::AlreadyDone(held.clone()));
        assert!(matches!(
            held.void(3),
            Err(PaymentError::IllegalState(Refusal::FeeHeld, _))
        ));
        assert!(matches!(
            held.hold(&rider("r-2"), 3),
            Err(PaymentError::IllegalState(Refusal::HeldForAnotherRider, _))
        ));
        assert!(matches!(
            held.settle(&rider("r-2"), CommissionRate::DEFAULT, 3),
            Err(PaymentError::IllegalState(Refusal::HeldForAnotherRider, _))
        ));
        let settled = applied(held.settle(&rider("r-1"), CommissionRate::DEFAULT, 3).unwrap());
        assert_eq!(settled.status, PaymentStatus::Settled);
        // A hold retried after the settlement is done; another rider's is refused.
        assert_eq!(
            settled.hold(&rider("r-1"), 4).unwrap(),
            Change::AlreadyDone(settled.clone())
        );
        assert!(matches!(
            settled.hold(&rider("r-2"), 4),
            Err(PaymentError::IllegalState(Refusal::SettledWithAnotherRider, _))
        ));
    }

    #[test]
    fn a_voided_fee_cannot_be_held() {
        let voided = applied(registered(5_000).void(2).unwrap());
        assert!(matches!(
            voided.hold(&rider("r-1"), 3),
            Err(PaymentError::IllegalState(Refusal::FeeVoided, _))
        ));
    }

    #[test]
    fn a_settled_fee_cannot_be_voided() {
        let settled = applied(
            registered(5_000)
                .settle(&rider("r-1"), CommissionRate::DEFAULT, 2)
                .unwrap(),
        );
        assert!(matches!(
            settled.void(3),
            Err(PaymentError::IllegalState(Refusal::FeeSettled, _))
        ));
    }
}
