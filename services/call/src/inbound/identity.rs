//! The caller the identity layer verified, as the domain's [`Actor`]: internal backends, the mesh's own
//! services and admins are the company; restaurants and riders act as the ids the layer parsed.

use baemin_mesh_server::identity::Caller;

use crate::domain::Actor;

/// The actor `caller` speaks for.
pub fn actor(caller: Caller) -> Actor {
    match caller {
        Caller::Internal | Caller::Service(_) | Caller::Admin(_) => Actor::Company,
        Caller::Restaurant(id) => Actor::Restaurant(id),
        Caller::Rider(id) => Actor::Rider(id),
    }
}

#[cfg(test)]
mod tests {
    use baemin_kernel::{RestaurantId, RiderId};

    use super::*;

    #[test]
    fn the_mesh_and_admins_are_the_company_and_others_act_as_themselves() {
        for company in [
            Caller::Internal,
            Caller::Service("rider".into()),
            Caller::Admin("ops".into()),
        ] {
            assert_eq!(actor(company), Actor::Company);
        }
        let store = RestaurantId::parse("store-1", "x").unwrap();
        assert_eq!(actor(Caller::Restaurant(store.clone())), Actor::Restaurant(store));
        let rider = RiderId::parse("r-1", "x").unwrap();
        assert_eq!(actor(Caller::Rider(rider.clone())), Actor::Rider(rider));
    }
}
