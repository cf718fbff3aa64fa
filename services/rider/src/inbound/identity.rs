//! A rider acts only as itself (BOLA): the caller the gateway verified must be the rider named in the
//! request. Internal backends and admins act for anyone.

use baemin_kernel::RiderId;
use baemin_mesh_server::identity::Caller;
use tonic::metadata::MetadataMap;

use crate::domain::RiderError;

/// Refuses a caller that is neither the company nor the rider named in the request.
pub fn ensure_acting_as(metadata: &MetadataMap, rider: &RiderId) -> Result<(), RiderError> {
    let caller = Caller::from_metadata(metadata).map_err(|e| RiderError::ActingAsAnother {
        caller: e.to_string(),
        requested: rider.clone(),
    })?;
    match caller {
        Caller::Internal | Caller::Admin(_) => Ok(()),
        Caller::Rider(subject) if subject == rider.as_str() => Ok(()),
        Caller::Rider(subject) | Caller::Restaurant(subject) => Err(RiderError::ActingAsAnother {
            caller: subject,
            requested: rider.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use baemin_mesh_server::identity::{ROLE_HEADER as ROLE, SUBJECT_HEADER as SUBJECT};

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
        for refused in [
            metadata(&[(ROLE, "rider"), (SUBJECT, "r-2")]),
            metadata(&[(ROLE, "restaurant"), (SUBJECT, "store-1")]),
            metadata(&[(ROLE, "rider")]),
        ] {
            assert!(matches!(
                ensure_acting_as(&refused, &r1),
                Err(RiderError::ActingAsAnother { .. })
            ));
        }
    }
}
