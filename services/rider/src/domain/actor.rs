//! Who acts on deliveries, and what each may see (BOLA), in one place for every RPC and every stream
//! message: a rider sees the open-call board and its own deliveries, a restaurant the deliveries of its
//! own calls, the company everything.

use baemin_kernel::{CallId, RestaurantId, RiderId};

use super::{Delivery, DeliveryFilter, RiderError};

/// The caller of a use case, as the gateway vouched for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// An internal backend or the company's staff (role `admin`): may see everything.
    Company,
    /// A rider: the open calls, and the deliveries it took.
    Rider(RiderId),
    /// A restaurant: the deliveries of the calls it placed; never the board or a rider's commands.
    Restaurant(RestaurantId),
}

impl Actor {
    /// AcceptCall, PickUp, CompleteDelivery: a rider acts only as itself; the company for anyone.
    pub fn ensure_acting_as(&self, rider: &RiderId) -> Result<(), RiderError> {
        match self {
            Self::Company => Ok(()),
            Self::Rider(me) if me == rider => Ok(()),
            Self::Rider(me) => Err(RiderError::ActingAsAnother {
                caller: me.to_string(),
                requested: rider.clone(),
            }),
            Self::Restaurant(me) => Err(RiderError::ActingAsAnother {
                caller: format!("restaurant {me}"),
                requested: rider.clone(),
            }),
        }
    }

    /// GetDelivery: an open call is on the board for every rider; otherwise only the rider who took it
    /// (or the restaurant that placed it) sees it.
    pub fn ensure_may_see(&self, delivery: &Delivery) -> Result<(), RiderError> {
        let mine = match self {
            Self::Company => true,
            Self::Rider(me) => delivery.is_open() || delivery.rider_id.as_ref() == Some(me),
            Self::Restaurant(me) => delivery.restaurant_id.as_ref() == Some(me),
        };
        if mine {
            Ok(())
        } else {
            Err(not_yours(&delivery.call_id))
        }
    }

    /// ListDeliveries: `filter` narrowed to this actor's own rows; naming another rider or restaurant
    /// is refused rather than silently answered with nothing.
    pub fn scope(&self, mut filter: DeliveryFilter) -> Result<DeliveryFilter, RiderError> {
        match self {
            Self::Company => {}
            Self::Rider(me) => {
                if let Some(other) = filter.rider_id.as_ref().filter(|r| *r != me) {
                    return Err(RiderError::ActingAsAnother {
                        caller: me.to_string(),
                        requested: other.clone(),
                    });
                }
                filter.rider_id = Some(me.clone());
            }
            Self::Restaurant(me) => {
                if filter.restaurant_id.as_ref().is_some_and(|r| r != me) {
                    return Err(RiderError::Forbidden(format!(
                        "restaurant {me} may list only the deliveries of its own calls"
                    )));
                }
                filter.restaurant_id = Some(me.clone());
            }
        }
        Ok(filter)
    }

    /// ListOpenCalls and WatchOpenCalls: the board is for riders (and the company).
    pub fn ensure_may_read_board(&self) -> Result<(), RiderError> {
        match self {
            Self::Company | Self::Rider(_) => Ok(()),
            Self::Restaurant(me) => Err(RiderError::Forbidden(format!(
                "restaurant {me} may not read the riders' open-call board"
            ))),
        }
    }

    /// A board message as this actor may see it: a call that left the board says so, but whom it went
    /// to and what it paid are the taker's business (and the company's), never every watching rider's.
    pub fn board_view(&self, delivery: &Delivery) -> Delivery {
        let taker = delivery.rider_id.as_ref();
        match self {
            Self::Company => delivery.clone(),
            Self::Rider(me) if taker == Some(me) => delivery.clone(),
            Self::Rider(_) | Self::Restaurant(_) => Delivery {
                rider_id: None,
                settlement: None,
                accepted_at: None,
                picked_at: None,
                completed_at: None,
                ..delivery.clone()
            },
        }
    }
}

fn not_yours(call_id: &CallId) -> RiderError {
    RiderError::NotYours(call_id.clone())
}

#[cfg(test)]
mod tests {
    use baemin_kernel::{DeliveryStatus, Destination, Fee};

    use super::*;
    use crate::domain::PlacedCall;

    fn rider(id: &str) -> RiderId {
        RiderId::parse(id, "rider_id").unwrap()
    }

    fn restaurant(id: &str) -> RestaurantId {
        RestaurantId::parse(id, "restaurant_id").unwrap()
    }

    fn open() -> Delivery {
        let placed = PlacedCall {
            restaurant_id: restaurant("store-1"),
            destination: Destination::parse("서울 강남구", "destination").unwrap(),
            fee: Fee::parse(3_000, "fee").unwrap(),
            called_at: 1,
        };
        Delivery::open(CallId::generate(), &placed, 1)
    }

    fn taken_by(id: &str) -> Delivery {
        Delivery {
            status: DeliveryStatus::Accepted,
            rider_id: Some(rider(id)),
            accepted_at: Some(2),
            ..open()
        }
    }

    #[test]
    fn a_rider_sees_open_calls_and_its_own_deliveries_only() {
        let me = Actor::Rider(rider("rider-8"));
        assert!(me.ensure_may_see(&open()).is_ok());
        assert!(me.ensure_may_see(&taken_by("rider-8")).is_ok());
        assert!(matches!(
            me.ensure_may_see(&taken_by("rider-7")),
            Err(RiderError::NotYours(_))
        ));
        assert!(Actor::Company.ensure_may_see(&taken_by("rider-7")).is_ok());
        assert!(
            Actor::Restaurant(restaurant("store-1"))
                .ensure_may_see(&taken_by("rider-7"))
                .is_ok()
        );
        assert!(
            Actor::Restaurant(restaurant("store-2"))
                .ensure_may_see(&open())
                .is_err()
        );
    }

    #[test]
    fn a_rider_lists_only_its_own_rows_and_naming_another_is_refused() {
        let me = Actor::Rider(rider("rider-8"));
        assert_eq!(
            me.scope(DeliveryFilter::default()).unwrap().rider_id,
            Some(rider("rider-8"))
        );
        let theirs = DeliveryFilter {
            rider_id: Some(rider("rider-7")),
            ..DeliveryFilter::default()
        };
        assert!(matches!(
            me.scope(theirs.clone()),
            Err(RiderError::ActingAsAnother { .. })
        ));
        assert_eq!(Actor::Company.scope(theirs.clone()).unwrap(), theirs);
        let store = Actor::Restaurant(restaurant("store-1"));
        assert_eq!(
            store.scope(DeliveryFilter::default()).unwrap().restaurant_id,
            Some(restaurant("store-1"))
        );
    }

    #[test]
    fn a_closed_notice_names_the_taker_only_to_the_taker_and_the_company() {
        let taken = taken_by("rider-7");
        let seen_by_other = Actor::Rider(rider("rider-8")).board_view(&taken);
        assert_eq!(seen_by_other.rider_id, None);
        assert_eq!(seen_by_other.call_id, taken.call_id);
        assert_eq!(Actor::Rider(rider("rider-7")).board_view(&taken), taken);
        assert_eq!(Actor::Company.board_view(&taken), taken);
    }

    #[test]
    fn riders_act_only_as_themselves_and_restaurants_never_read_the_board() {
        assert!(Actor::Rider(rider("r-1")).ensure_acting_as(&rider("r-1")).is_ok());
        assert!(Actor::Rider(rider("r-2")).ensure_acting_as(&rider("r-1")).is_err());
        assert!(
            Actor::Restaurant(restaurant("s"))
                .ensure_acting_as(&rider("r-1"))
                .is_err()
        );
        assert!(Actor::Company.ensure_acting_as(&rider("r-1")).is_ok());
        assert!(Actor::Restaurant(restaurant("s")).ensure_may_read_board().is_err());
        assert!(Actor::Rider(rider("r-1")).ensure_may_read_board().is_ok());
    }
}
