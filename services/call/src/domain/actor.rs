//! Who acts on calls, and what each may do (BOLA): a restaurant its own calls, a rider only reads the
//! calls it took, the company everything.

use baemin_kernel::{RestaurantId, RiderId};

use super::{Call, CallError, CallFilter, NewCall};

/// The caller of a use case, as the gateway vouched for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// An internal backend or the company's staff (role `admin`): may do everything.
    Company,
    /// A restaurant: places, reads, lists and cancels its own calls.
    Restaurant(RestaurantId),
    /// A rider: reads (and watches) the calls it took, nothing else.
    Rider(RiderId),
}

impl Actor {
    /// PlaceCall: a restaurant calls only for itself; a rider never places calls.
    pub fn ensure_may_place(&self, new: &NewCall) -> Result<(), CallError> {
        match self {
            Self::Company => Ok(()),
            Self::Restaurant(me) if *me == new.restaurant_id => Ok(()),
            Self::Restaurant(me) => Err(CallError::Forbidden(format!(
                "restaurant {me} may place calls only for itself, not for {}",
                new.restaurant_id
            ))),
            Self::Rider(_) => Err(riders_only_read()),
        }
    }

    /// GetCall and WatchCall: the restaurant that placed the call, or the rider who took it.
    pub fn ensure_may_see(&self, call: &Call) -> Result<(), CallError> {
        match self {
            Self::Company => Ok(()),
            Self::Restaurant(me) => owned_by(me, call),
            Self::Rider(me) if call.rider_id.as_ref() == Some(me) => Ok(()),
            Self::Rider(me) => Err(CallError::Forbidden(format!(
                "rider {me} may read only the calls it took"
            ))),
        }
    }

    /// CancelCall, decided before the call is read: a rider never cancels (it gives a delivery up in
    /// the rider service), whether the call exists or not.
    pub fn ensure_may_cancel(&self) -> Result<(), CallError> {
        match self {
            Self::Company | Self::Restaurant(_) => Ok(()),
            Self::Rider(_) => Err(riders_only_read()),
        }
    }

    /// CancelCall on `call`: only the restaurant that placed it (or the company).
    pub fn ensure_may_cancel_call(&self, call: &Call) -> Result<(), CallError> {
        self.ensure_may_cancel()?;
        match self {
            Self::Restaurant(me) => owned_by(me, call),
            Self::Company | Self::Rider(_) => Ok(()),
        }
    }

    /// ListCalls: `filter` narrowed to this actor's own calls; naming another restaurant is refused,
    /// and riders do not list calls (the rider service lists their deliveries).
    pub fn scope(&self, mut filter: CallFilter) -> Result<CallFilter, CallError> {
        match self {
            Self::Company => Ok(filter),
            Self::Restaurant(me) => {
                if let Some(other) = filter.restaurant_id.as_ref().filter(|r| *r != me) {
                    return Err(CallError::Forbidden(format!(
                        "restaurant {me} may list only its own calls, not those of {other}"
                    )));
                }
                filter.restaurant_id = Some(me.clone());
                Ok(filter)
            }
            Self::Rider(_) => Err(riders_only_read()),
        }
    }
}

fn owned_by(me: &RestaurantId, call: &Call) -> Result<(), CallError> {
    if call.restaurant_id == *me {
        Ok(())
    } else {
        Err(CallError::Forbidden(format!(
            "restaurant {me} may act only on its own calls"
        )))
    }
}

fn riders_only_read() -> CallError {
    CallError::Forbidden("a rider may only read or watch the calls it took".into())
}

#[cfg(test)]
mod tests {
    use baemin_kernel::{CallId, DeliveryStatus};

    use super::*;
    use crate::domain::testing::new_call;

    fn restaurant(id: &str) -> RestaurantId {
        RestaurantId::parse(id, "restaurant_id").unwrap()
    }

    fn rider(id: &str) -> RiderId {
        RiderId::parse(id, "rider_id").unwrap()
    }

    /// A call of `store-1`, taken by `r-1`.
    fn taken_call() -> Call {
        Call {
            status: DeliveryStatus::Accepted,
            rider_id: Some(rider("r-1")),
            ..Call::placed(CallId::generate(), &new_call("req-1", 3_000), 1)
        }
    }

    fn forbidden(result: Result<impl std::fmt::Debug, CallError>) -> bool {
        matches!(result, Err(CallError::Forbidden(_)))
    }

    #[test]
    fn the_company_may_do_everything() {
        let call = taken_call();
        let company = Actor::Company;
        assert!(company.ensure_may_place(&new_call("req-1", 3_000)).is_ok());
        assert!(company.ensure_may_see(&call).is_ok());
        assert!(company.ensure_may_cancel_call(&call).is_ok());
        assert_eq!(company.scope(CallFilter::default()).unwrap(), CallFilter::default());
    }

    #[test]
    fn a_restaurant_places_only_for_itself() {
        let new = new_call("req-1", 3_000);
        assert!(Actor::Restaurant(restaurant("store-1")).ensure_may_place(&new).is_ok());
        assert!(forbidden(
            Actor::Restaurant(restaurant("store-2")).ensure_may_place(&new)
        ));
    }

    #[test]
    fn a_restaurant_reads_and_cancels_only_its_own_calls() {
        let call = taken_call();
        let mine = Actor::Restaurant(restaurant("store-1"));
        assert!(mine.ensure_may_see(&call).is_ok());
        assert!(mine.ensure_may_cancel_call(&call).is_ok());
        let other = Actor::Restaurant(restaurant("store-2"));
        assert!(forbidden(other.ensure_may_see(&call)));
        assert!(other.ensure_may_cancel().is_ok(), "until it names another's call");
        assert!(forbidden(other.ensure_may_cancel_call(&call)));
    }

    #[test]
    fn a_restaurant_lists_only_its_own_calls_and_cannot_name_another() {
        let me = Actor::Restaurant(restaurant("store-1"));
        let scoped = me.scope(CallFilter::default()).unwrap();
        assert_eq!(scoped.restaurant_id, Some(restaurant("store-1")));
        let own = CallFilter {
            restaurant_id: Some(restaurant("store-1")),
            rider_id: Some(rider("r-1")),
            ..CallFilter::default()
        };
        assert_eq!(me.scope(own.clone()).unwrap(), own);
        let other = CallFilter {
            restaurant_id: Some(restaurant("store-2")),
            ..CallFilter::default()
        };
        assert!(forbidden(me.scope(other)));
    }

    #[test]
    fn a_rider_only_reads_the_calls_it_took() {
        let call = taken_call();
        let taker = Actor::Rider(rider("r-1"));
        assert!(taker.ensure_may_see(&call).is_ok());
        assert!(forbidden(Actor::Rider(rider("r-2")).ensure_may_see(&call)));
        let open = Call {
            rider_id: None,
            ..call.clone()
        };
        assert!(forbidden(taker.ensure_may_see(&open)), "an open call is nobody's yet");
        assert!(forbidden(taker.ensure_may_place(&new_call("req-1", 3_000))));
        assert!(forbidden(taker.ensure_may_cancel()));
        assert!(forbidden(taker.ensure_may_cancel_call(&call)));
        assert!(forbidden(taker.scope(CallFilter::default())));
    }
}
