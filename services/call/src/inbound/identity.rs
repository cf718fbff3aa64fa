//! The caller the gateway vouched for, as the domain's [`Actor`]: internal backends and admins are the
//! company, a restaurant or rider subject must be a valid id of its kind.

use baemin_kernel::{RestaurantId, RiderId};
use baemin_mesh_server::identity::{Caller, SUBJECT_HEADER};
use tonic::metadata::MetadataMap;

use crate::domain::{Actor, CallError};

/// The actor a request speaks for; unusable identity metadata is PERMISSION_DENIED.
pub fn actor(metadata: &MetadataMap) -> Result<Actor, CallError> {
    let unusable =
        |role: &str, subject: &str| CallError::Forbidden(format!("subject {subject:?} is not a valid {role} id"));
    match Caller::from_metadata(metadata).map_err(|e| CallError::Forbidden(e.to_string()))? {
        Caller::Internal | Caller::Admin(_) => Ok(Actor::Company),
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
    use baemin_mesh_server::identity::ROLE_HEADER as ROLE;

    use super::*;

    const SUBJECT: &str = SUBJECT_HEADER;

    /// Request metadata made of `pairs`.
    fn metadata(pairs: &[(&'static str, &'static str)]) -> MetadataMap {
        let mut map = MetadataMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn internal_callers_and_admins_are_the_company_and_others_act_as_themselves() {
        assert_eq!(actor(&metadata(&[])).unwrap(), Actor::Company);
        assert_eq!(
            actor(&metadata(&[(ROLE, "admin"), (SUBJECT, "ops")])).unwrap(),
            Actor::Company
        );
        assert_eq!(
            actor(&metadata(&[(ROLE, "restaurant"), (SUBJECT, "store-1")])).unwrap(),
            Actor::Restaurant(RestaurantId::parse("store-1", "x").unwrap())
        );
        assert_eq!(
            actor(&metadata(&[(ROLE, "rider"), (SUBJECT, "r-1")])).unwrap(),
            Actor::Rider(RiderId::parse("r-1", "x").unwrap())
        );
    }

    #[test]
    fn unusable_identity_is_refused() {
        for refused in [
            metadata(&[(ROLE, "rider")]),
            metadata(&[(ROLE, "guest"), (SUBJECT, "x")]),
            metadata(&[(ROLE, "restaurant"), (SUBJECT, "not an id")]),
        ] {
            assert!(matches!(actor(&refused), Err(CallError::Forbidden(_))), "{refused:?}");
        }
    }
}
