//! Who is reading the deliverylist, and what they may see of it (no reading another's rows).

use baemin_kernel::{DeliveryStatus, RestaurantId, RiderId};

use super::{DeliveryView, ReportError};

/// Which rows a query is about; `None` means any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only rows in this status.
    pub status: Option<DeliveryStatus>,
    /// Only this restaurant's calls.
    pub restaurant_id: Option<RestaurantId>,
    /// Only this rider's deliveries.
    pub rider_id: Option<RiderId>,
}

/// The caller, as the gateway vouched for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    /// The company (role `admin`) or an internal backend: sees every row and the stats.
    Company,
    /// A restaurant: sees the calls it placed.
    Restaurant(RestaurantId),
    /// A rider: sees the deliveries it carries.
    Rider(RiderId),
}

impl Viewer {
    /// Whether this viewer may see `view`.
    pub fn may_see(&self, view: &DeliveryView) -> bool {
        match self {
            Self::Company => true,
            Self::Restaurant(me) => view.restaurant_id.as_ref() == Some(me),
            Self::Rider(me) => view.rider_id.as_ref() == Some(me),
        }
    }

    /// `filter` narrowed to this viewer's own rows; naming another's rows is refused.
    pub fn scope(&self, mut filter: Filter) -> Result<Filter, ReportError> {
        match self {
            Self::Company => {}
            Self::Restaurant(me) => {
                if filter.restaurant_id.as_ref().is_some_and(|r| r != me) {
                    return Err(ReportError::PermissionDenied(format!(
                        "restaurant {me} may list only its own calls"
                    )));
                }
                filter.restaurant_id = Some(me.clone());
            }
            Self::Rider(me) => {
                if filter.rider_id.as_ref().is_some_and(|r| r != me) {
                    return Err(ReportError::PermissionDenied(format!(
                        "rider {me} may list only its own deliveries"
                    )));
                }
                filter.rider_id = Some(me.clone());
            }
        }
        Ok(filter)
    }

    /// The stats are the company's figures (revenue included): only the company reads them.
    pub fn ensure_company(&self) -> Result<(), ReportError> {
        match self {
            Self::Company => Ok(()),
            _ => Err(ReportError::PermissionDenied(
                "the stats are the company's; role admin is required".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use baemin_kernel::CallId;

    use super::*;

    fn restaurant(id: &str) -> RestaurantId {
        RestaurantId::parse(id, "restaurant_id").unwrap()
    }

    #[test]
    fn a_restaurant_lists_only_its_own_calls_and_cannot_name_another() {
        let me = Viewer::Restaurant(restaurant("store-1"));
        let scoped = me.scope(Filter::default()).unwrap();
        assert_eq!(scoped.restaurant_id, Some(restaurant("store-1")));
        let other = Filter {
            restaurant_id: Some(restaurant("store-2")),
            ..Filter::default()
        };
        assert!(matches!(me.scope(other), Err(ReportError::PermissionDenied(_))));
        assert_eq!(Viewer::Company.scope(Filter::default()).unwrap(), Filter::default());
    }

    #[test]
    fn a_rider_sees_only_deliveries_it_carries_and_never_the_stats() {
        let me = Viewer::Rider(RiderId::parse("r-1", "rider_id").unwrap());
        let mut view = DeliveryView::unseen(CallId::generate());
        assert!(!me.may_see(&view), "an open call is nobody's yet");
        view.rider_id = Some(RiderId::parse("r-1", "rider_id").unwrap());
        assert!(me.may_see(&view));
        assert!(Viewer::Company.may_see(&view));
        assert!(me.ensure_company().is_err());
        assert!(Viewer::Company.ensure_company().is_ok());
    }
}
