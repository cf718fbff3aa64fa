//! Whose rows a caller may read: the company sees everything, a restaurant its own calls, a rider its
//! own deliveries.

use baemin_kernel::{RestaurantId, RiderId};
use baemin_mesh_server::identity::{Caller, SUBJECT_HEADER};
use tonic::metadata::MetadataMap;

use crate::domain::{ReportError, Viewer};

/// The viewer a request speaks for.
pub fn viewer(metadata: &MetadataMap) -> Result<Viewer, ReportError> {
    let unusable = |role: &str, subject: &str| {
        ReportError::PermissionDenied(format!("subject {subject:?} is not a valid {role} id"))
    };
    match Caller::from_metadata(metadata).map_err(|e| ReportError::PermissionDenied(e.to_string()))? {
        Caller::Internal | Caller::Admin(_) => Ok(Viewer::Company),
        Caller::Restaurant(s) => RestaurantId::parse(&s, SUBJECT_HEADER)
            .map(Viewer::Restaurant)
            .map_err(|_| unusable("restaurant", &s)),
        Caller::Rider(s) => RiderId::parse(&s, SUBJECT_HEADER)
            .map(Viewer::Rider)
            .map_err(|_| unusable("rider", &s)),
    }
}

#[cfg(test)]
mod tests {
    use baemin_mesh_server::identity::ROLE_HEADER as ROLE;

    use super::*;

    const SUBJECT: &str = SUBJECT_HEADER;

    fn metadata(pairs: &[(&'static str, &'static str)]) -> MetadataMap {
        let mut map = MetadataMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn internal_callers_and_admins_are_the_company_and_others_see_their_own() {
        assert_eq!(viewer(&metadata(&[])).unwrap(), Viewer::Company);
        assert_eq!(
            viewer(&metadata(&[(ROLE, "admin"), (SUBJECT, "ops")])).unwrap(),
            Viewer::Company
        );
        assert_eq!(
            viewer(&metadata(&[(ROLE, "restaurant"), (SUBJECT, "store-1")])).unwrap(),
            Viewer::Restaurant(RestaurantId::parse("store-1", "x").unwrap())
        );
        assert_eq!(
            viewer(&metadata(&[(ROLE, "rider"), (SUBJECT, "r-1")])).unwrap(),
            Viewer::Rider(RiderId::parse("r-1", "x").unwrap())
        );
        for refused in [
            metadata(&[(ROLE, "rider")]),
            metadata(&[(ROLE, "guest"), (SUBJECT, "x")]),
        ] {
            assert!(matches!(viewer(&refused), Err(ReportError::PermissionDenied(_))));
        }
    }
}
