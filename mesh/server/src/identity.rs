//! Who is calling. The edge gateway verifies the caller's token and passes the subject and role as
//! metadata (DESIGN.md, "Edge gateway"); inside the mesh the services trust it. A call without identity
//! is an internal backend with full rights (Istio mTLS and AuthorizationPolicy decide who gets in at all).

use tonic::metadata::MetadataMap;

/// Metadata key of the verified subject.
pub const SUBJECT_HEADER: &str = "x-baemin-subject";
/// Metadata key of the verified role: `restaurant`, `rider` or `admin`.
pub const ROLE_HEADER: &str = "x-baemin-role";

/// A role a verified caller has. The gateway reads it from the token's `role` claim and passes it on in
/// [`ROLE_HEADER`]; `baemin token` mints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A restaurant: places, reads and cancels its own calls.
    Restaurant,
    /// A rider: takes calls and delivers them.
    Rider,
    /// The company's staff: sees everything.
    Admin,
}

impl Role {
    /// The name used in tokens and in `x-baemin-role`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Restaurant => "restaurant",
            Self::Rider => "rider",
            Self::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, IdentityError> {
        match s {
            "restaurant" => Ok(Self::Restaurant),
            "rider" => Ok(Self::Rider),
            "admin" => Ok(Self::Admin),
            other => Err(IdentityError::UnknownRole(other.to_owned())),
        }
    }
}

/// The caller of an RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No identity: another backend inside the mesh.
    Internal,
    /// The company's staff: sees everything.
    Admin(String),
    /// A restaurant, by id.
    Restaurant(String),
    /// A rider, by id.
    Rider(String),
}

/// The identity metadata is present but unusable; answer PERMISSION_DENIED.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// A role this mesh does not know.
    #[error("role {0:?} is not one of restaurant, rider, admin")]
    UnknownRole(String),
    /// A role without a subject.
    #[error("role {0} comes without a subject")]
    MissingSubject(&'static str),
}

impl Caller {
    /// Reads the caller from request metadata.
    pub fn from_metadata(metadata: &MetadataMap) -> Result<Self, IdentityError> {
        let text = |key: &str| metadata.get(key).and_then(|v| v.to_str().ok()).map(str::trim);
        let Some(role) = text(ROLE_HEADER) else {
            return Ok(Self::Internal);
        };
        let subject = |role: &'static str| {
            text(SUBJECT_HEADER)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or(IdentityError::MissingSubject(role))
        };
        match role.parse::<Role>()? {
            Role::Admin => subject("admin").map(Self::Admin),
            Role::Restaurant => subject("restaurant").map(Self::Restaurant),
            Role::Rider => subject("rider").map(Self::Rider),
        }
    }

    /// Whether the caller may see and do everything (internal backends and admins).
    pub fn is_company(&self) -> bool {
        matches!(self, Self::Internal | Self::Admin(_))
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
    fn no_identity_is_an_internal_backend_and_roles_carry_their_subject() {
        assert_eq!(Caller::from_metadata(&metadata(&[])), Ok(Caller::Internal));
        assert_eq!(
            Caller::from_metadata(&metadata(&[(ROLE_HEADER, "rider"), (SUBJECT_HEADER, "r-1")])),
            Ok(Caller::Rider("r-1".into()))
        );
        assert!(
            Caller::from_metadata(&metadata(&[(ROLE_HEADER, "admin"), (SUBJECT_HEADER, "ops")]))
                .unwrap()
                .is_company()
        );
    }

    #[test]
    fn unknown_roles_and_missing_subjects_are_refused() {
        assert_eq!(
            Caller::from_metadata(&metadata(&[(ROLE_HEADER, "guest"), (SUBJECT_HEADER, "x")])),
            Err(IdentityError::UnknownRole("guest".into()))
        );
        assert_eq!(
            Caller::from_metadata(&metadata(&[(ROLE_HEADER, "rider")])),
            Err(IdentityError::MissingSubject("rider"))
        );
    }
}
