//! Who is calling: the gateway verifies the caller's token and passes its subject and role as metadata
//! (DESIGN.md, "Edge gateway"). A call without identity is an internal backend, trusted by the mesh
//! (Istio mTLS and AuthorizationPolicy decide who reaches the service at all).

use baemin_kernel::{RestaurantId, RiderId};
use tonic::metadata::MetadataMap;

use crate::domain::{ReportError, Viewer};

/// The verified subject of the caller.
pub const SUBJECT: &str = "x-baemin-subject";
/// The verified role of the caller: `restaurant`, `rider` or `admin`.
pub const ROLE: &str = "x-baemin-role";

/// The viewer a request speaks for.
pub fn viewer(metadata: &MetadataMap) -> Result<Viewer, ReportError> {
    let text = |key: &str| metadata.get(key).and_then(|v| v.to_str().ok());
    let subject = text(SUBJECT).unwrap_or_default();
    let unusable = |role: &str| ReportError::PermissionDenied(format!("subject {subject:?} is not a valid {role} id"));
    match text(ROLE) {
        None | Some("admin") => Ok(Viewer::Company),
        Some("restaurant") => RestaurantId::parse(subject, SUBJECT)
            .map(Viewer::Restaurant)
            .map_err(|_| unusable("restaurant")),
        Some("rider") => RiderId::parse(subject, SUBJECT)
            .map(Viewer::Rider)
            .map_err(|_| unusable("rider")),
        Some(other) => Err(ReportError::PermissionDenied(format!(
            "role {other:?} may not read the report"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
