//! The caller the identity layer verified, as the domain's [`Actor`]: internal backends, the mesh's own
//! services and admins are the company; a rider or restaurant subject must be a valid id of its kind.

use baemin_kernel::{RestaurantId, RiderId};
use baemin_mesh_server::identity::{Caller, SUBJECT_HEADER};
use tonic::Request;

use crate::domain::{Actor, RiderError};

/// The actor `request` speaks for; a subject that is no valid id is PERMISSION_DENIED.
pub fn actor<T>(request: &Request<T>) -> Result<Actor, RiderError> {
    from_caller(Caller::of(request))
}

fn from_caller(caller: Caller) -> Result<Actor, RiderError> {
    let unusable = |role: &str, subject: &str| {
        RiderError::Forbidden(format!(
            "subject {:?} is not a valid {role} id",
            subject.escape_debug().to_string()
        ))
    };
    match caller {
        Caller::Internal | Caller::Service(_) | Caller::Admin(_) => Ok(Actor::Company),
        Caller::Rider(s) => RiderId::parse(&s, SUBJECT_HEADER)
            .map(Actor::Rider)
            .map_err(|_| unusable("rider", &s)),
        Caller::Restaurant(s) => RestaurantId::parse(&s, SUBJECT_HEADER)
            .map(Actor::Restaurant)
            .map_err(|_| unusable("restaurant", &s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mesh_and_admins_are_the_company_and_people_act_as_themselves() {
        for company in [
            Caller::Internal,
            Caller::Service("call".into()),
            Caller::Admin("ops".into()),
        ] {
            assert_eq!(from_caller(company).unwrap(), Actor::Company);
        }
        assert_eq!(
            from_caller(Caller::Rider("r-1".into())).unwrap(),
            Actor::Rider(RiderId::parse("r-1", "x").unwrap())
        );
        assert!(matches!(
            from_caller(Caller::Rider("not an id".into())),
            Err(RiderError::Forbidden(_))
        ));
    }
}
