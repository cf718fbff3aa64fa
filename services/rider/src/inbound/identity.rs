//! Who is calling: the gateway verifies the caller's token and passes its subject and role as metadata
//! (DESIGN.md, "Edge gateway"). A rider may act only as itself; a call without identity is an internal
//! backend, trusted by the mesh (Istio mTLS and AuthorizationPolicy decide who reaches us at all).

use baemin_kernel::RiderId;
use tonic::metadata::MetadataMap;

use crate::domain::RiderError;

/// The verified subject of the caller.
pub const SUBJECT: &str = "x-baemin-subject";
/// The verified role of the caller: `restaurant`, `rider` or `admin`.
pub const ROLE: &str = "x-baemin-role";

/// Refuses a caller with role `rider` that names another rider in its request.
pub fn ensure_acting_as(metadata: &MetadataMap, rider: &RiderId) -> Result<(), RiderError> {
    let role = metadata.get(ROLE).and_then(|v| v.to_str().ok());
    if role != Some("rider") {
        return Ok(());
    }
    let caller = metadata.get(SUBJECT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if caller == rider.as_str() {
        Ok(())
    } else {
        Err(RiderError::ActingAsAnother {
            caller: caller.to_owned(),
            requested: rider.clone(),
        })
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
    fn a_rider_acts_only_as_itself_and_internal_callers_are_trusted() {
        let r1 = RiderId::parse("r-1", "rider_id").unwrap();
        assert!(ensure_acting_as(&metadata(&[]), &r1).is_ok());
        assert!(ensure_acting_as(&metadata(&[(ROLE, "admin"), (SUBJECT, "ops")]), &r1).is_ok());
        assert!(ensure_acting_as(&metadata(&[(ROLE, "rider"), (SUBJECT, "r-1")]), &r1).is_ok());
        assert!(matches!(
            ensure_acting_as(&metadata(&[(ROLE, "rider"), (SUBJECT, "r-2")]), &r1),
            Err(RiderError::ActingAsAnother { .. })
        ));
        assert!(ensure_acting_as(&metadata(&[(ROLE, "rider")]), &r1).is_err());
    }
}
