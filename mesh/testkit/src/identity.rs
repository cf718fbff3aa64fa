//! Caller identity in tests: the mesh's identity key every test service is started with, and requests
//! signed with it as the edge gateway would sign them.

use std::time::SystemTime;

use baemin_mesh_server::identity::IdentityKey;

/// `BAEMIN_IDENTITY_KEY` of every service and gateway a test starts (unless the test sets its own).
pub const TEST_IDENTITY_KEY: &str = "baemin-test-identity-key-0123456789abcdef";

/// The key of [`TEST_IDENTITY_KEY`].
pub fn test_identity_key() -> IdentityKey {
    IdentityKey::new(TEST_IDENTITY_KEY.as_bytes()).unwrap_or_else(|e| panic!("test identity key: {e}"))
}

/// `message` as a request from `role` (`restaurant`, `rider`, `admin`, or `service`) `subject`, with the
/// signed identity the gateway forwards after verifying a token.
pub fn as_caller<T>(role: &str, subject: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let mut headers = std::mem::take(request.metadata_mut()).into_headers();
    test_identity_key()
        .sign_into(&mut headers, role, subject, SystemTime::now())
        .unwrap_or_else(|e| panic!("signing {role} {subject}: {e}"));
    *request.metadata_mut() = tonic::metadata::MetadataMap::from_headers(headers);
    request
}
