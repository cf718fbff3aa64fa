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
    /// Who was paid, once settled.
    pub rider_id: Option<RiderId>,
    /// How the fee was split, once settled.
    pub settlement: Option<Settlement>,
    /// When it was registered / settled / voided.
    pub registered_at: Millis,
    /// Set when settled.
    pub settled_at: Option<Millis>,
    /// Set when voided.
    pub voided_at: Option<Millis>,
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

    /// Settles with `rider`: the commission is `rate` of the fee, rounded down.
    pub fn settle(&self, rider: &RiderId, rate: CommissionRate, now: Millis) -> Result<Change, PaymentError> {
        match self.status {
            PaymentStatus::Registered => Ok(Change::Apply(Self {
                status: PaymentStatus::Settled,
                rider_id: Some(rider.clone()),
                settlement: Some(rate.settle(self.fee)),
                settled_at: Some(now),
                ..self.clone()
            })),
            PaymentStatus::Settled if self.rider_id.as_ref() == Some(rider) => Ok(Change::AlreadyDone(self.clone())),
            PaymentStatus::Settled => Err(PaymentError::IllegalState(
                Refusal::SettledWithAnotherRider,
                format!("call {} was already settled with another rider", self.call_id),
            )),
            PaymentStatus::Voided => Err(PaymentError::IllegalState(
                Refusal::FeeVoided,
                format!(
                    "the fee of call {} was voided (the call was cancelled); nothing to settle",
                    self.call_id
                ),
            )),
        }
    }

    /// Voids the fee: allowed until it is settled.
    pub fn void(&self, now: Millis) -> Result<Change, PaymentError> {
        match self.status {
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
