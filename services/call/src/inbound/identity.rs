//! The caller the identity layer verified, as the domain's [`Actor`]: internal backends, the mesh's own
//! services and admins are the company; a restaurant or rider subject must be a valid id of its kind.

use baemin_kernel::{RestaurantId, RiderId};
use baemin_mesh_server::identity::{Caller, SUBJECT_HEADER};

use crate::domain::{Actor, CallError};

/// The actor `caller` speaks for; a subject that is no valid id is PERMISSION_DENIED.
pub fn actor(caller: Caller) -> Result<Actor, CallError> {
    let unusable = |role: &str, subject: &str| {
        CallError::Forbidden(format!(
            "subject {:?} is not a valid {role} id",
            subject.escape_debug().to_string()
        ))
    };
    match caller {
        Caller::Internal | Caller::Service(_) | Caller::Admin(_) => Ok(Actor::Company),
        Caller::Restaurant(s) => RestaurantId::parse(&s, SUBJECT_HEADER)
            .map(Actor::Restaurant)
            .map_err(|_| unusable("restaurant", &s)),
        Caller::Rider(s) => RiderId::parse(&s, SUBJECT_HEADER)
            .map(Actor::Rider)
            .map_err(|_| unusable("rider", &s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mesh_and_admins_are_the_company_and_others_act_as_themselves() {
        for company in [
            Caller::Internal,
            Caller::Service("rider".into()),
            Caller::Admin("ops".into()),
        ] {
            assert_eq!(actor(company).unwrap(), Actor::Company);
        }
        assert_eq!(
            actor(Caller::Restaurant("store-1".into())).unwrap(),
            Actor::Restaurant(RestaurantId::parse("store-1", "x").unwrap())
        );
        assert_eq!(
            actor(Caller::Rider("r-1".into())).unwrap(),
            Actor::Rider(RiderId::parse("r-1", "x").unwrap())
        );
    }

    #[test]
    fn a_subject_that_is_no_valid_id_is_refused() {
        assert!(matches!(
            actor(Caller::Restaurant("not an id".into())),
            Err(CallError::Forbidden(_))
        ));
    }
}
