//! The caller the identity layer verified, as the domain's [`Actor`]: internal backends, the mesh's own
//! services and admins are the company; riders and restaurants act as the ids the layer parsed.

use baemin_mesh_server::identity::Caller;
use tonic::Request;

use crate::domain::Actor;

/// The actor `request` speaks for.
pub fn actor<T>(request: &Request<T>) -> Actor {
    from_caller(Caller::of(request))
}

fn from_caller(caller: Caller) -> Actor {
    match caller {
        Caller::Internal | Caller::Service(_) | Caller::Admin(_) => Actor::Company,
        Caller::Rider(id) => Actor::Rider(id),
        Caller::Restaurant(id) => Actor::Restaurant(id),
    }
}

#[cfg(test)]
mod tests {
    use baemin_kernel::RiderId;

    use super::*;

    #[test]
    fn the_mesh_and_admins_are_the_company_and_people_act_as_themselves() {
        for company in [
            Caller::Internal,
            Caller::Service("call".into()),
            Caller::Admin("ops".into()),
        ] {
            assert_eq!(from_caller(company), Actor::Company);
        }
        let rider = RiderId::parse("r-1", "x").unwrap();
        assert_eq!(from_caller(Caller::Rider(rider.clone())), Actor::Rider(rider));
    }
}
