//! Whose rows a caller may read: the company (internal backends, the mesh's own services, admins) sees
//! everything, a restaurant its own calls, a rider its own deliveries.

use baemin_kernel::{RestaurantId, RiderId};
use baemin_mesh_server::identity::{Caller, SUBJECT_HEADER};
use tonic::Request;

use crate::domain::{ReportError, Viewer};

/// The viewer `request` speaks for; a subject that is no valid id is PERMISSION_DENIED.
pub fn viewer<T>(request: &Request<T>) -> Result<Viewer, ReportError> {
    from_caller(Caller::of(request))
}

fn from_caller(caller: Caller) -> Result<Viewer, ReportError> {
    let unusable = |role: &str, subject: &str| {
        ReportError::PermissionDenied(format!(
            "subject {:?} is not a valid {role} id",
            subject.escape_debug().to_string()
        ))
    };
    match caller {
        Caller::Internal | Caller::Service(_) | Caller::Admin(_) => Ok(Viewer::Company),
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
    use super::*;

    #[test]
    fn the_mesh_and_admins_are_the_company_and_others_see_their_own() {
        for company in [
            Caller::Internal,
            Caller::Service("call".into()),
            Caller::Admin("ops".into()),
        ] {
            assert_eq!(from_caller(company).unwrap(), Viewer::Company);
        }
        assert_eq!(
            from_caller(Caller::Restaurant("store-1".into())).unwrap(),
            Viewer::Restaurant(RestaurantId::parse("store-1", "x").unwrap())
        );
        assert_eq!(
            from_caller(Caller::Rider("r-1".into())).unwrap(),
            Viewer::Rider(RiderId::parse("r-1", "x").unwrap())
        );
        assert!(matches!(
            from_caller(Caller::Rider("not an id".into())),
            Err(ReportError::PermissionDenied(_))
        ));
    }
}
