//! Whose rows a caller may read: the company (internal backends, the mesh's own services, admins) sees
//! everything, a restaurant its own calls, a rider its own deliveries.

use baemin_mesh_server::identity::Caller;
use tonic::Request;

use crate::domain::Viewer;

/// The viewer `request` speaks for, as the identity layer verified it.
pub fn viewer<T>(request: &Request<T>) -> Viewer {
    from_caller(Caller::of(request))
}

fn from_caller(caller: Caller) -> Viewer {
    match caller {
        Caller::Internal | Caller::Service(_) | Caller::Admin(_) => Viewer::Company,
        Caller::Restaurant(id) => Viewer::Restaurant(id),
        Caller::Rider(id) => Viewer::Rider(id),
    }
}

#[cfg(test)]
mod tests {
    use baemin_kernel::{RestaurantId, RiderId};

    use super::*;

    #[test]
    fn the_mesh_and_admins_are_the_company_and_others_see_their_own() {
        for company in [
            Caller::Internal,
            Caller::Service("call".into()),
            Caller::Admin("ops".into()),
        ] {
            assert_eq!(from_caller(company), Viewer::Company);
        }
        let store = RestaurantId::parse("store-1", "x").unwrap();
        assert_eq!(
            from_caller(Caller::Restaurant(store.clone())),
            Viewer::Restaurant(store)
        );
        let rider = RiderId::parse("r-1", "x").unwrap();
        assert_eq!(from_caller(Caller::Rider(rider.clone())), Viewer::Rider(rider));
    }
}
