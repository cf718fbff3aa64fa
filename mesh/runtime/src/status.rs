//! The gRPC answer to a failed database operation, the same in every service.

use sea_orm::DbErr;
use tonic::Status;

/// `service`'s database failed with `err`: UNAVAILABLE naming the database when it cannot be reached
/// or refuses work for now ([`baemin_mesh_store::is_unavailable`]; logged at warn, the client may
/// retry); ABORTED when the transaction lost a race the database detected (serialization failure or
/// deadlock, [`baemin_mesh_store::is_contention`]; nothing was written, the client retries the whole
/// call); otherwise INTERNAL with a generic message (a bug or corrupt data; logged at error with its
/// cause chain). Never INTERNAL for an outage: the design's error table says a dependency that is
/// down is UNAVAILABLE.
pub fn database(service: &str, err: &DbErr) -> Status {
    if baemin_mesh_store::is_unavailable(err) {
        tracing::warn!(service, error = %err, "the database is unavailable");
        baemin_mesh_server::status::unavailable(&format!("{service} database"), err)
    } else if baemin_mesh_store::is_contention(err) {
        tracing::info!(service, error = %err, "a transaction lost a race and was rolled back");
        Status::aborted(format!(
            "{service}: a concurrent change to the same records won; nothing was written, retry the call"
        ))
    } else {
        baemin_mesh_server::status::internal(&format!("{service} storage"), err)
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnAcquireErr, RuntimeErr};
    use tonic::Code;

    use super::*;

    #[test]
    fn an_outage_is_unavailable_naming_the_database() {
        let status = database("payment", &DbErr::ConnectionAcquire(ConnAcquireErr::Timeout));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(
            status.message().starts_with("payment database is unavailable: "),
            "{}",
            status.message()
        );
        let closed = database("call", &DbErr::Conn(RuntimeErr::Internal("Disconnected".into())));
        assert_eq!(closed.code(), Code::Unavailable);
        assert!(closed.message().starts_with("call database is unavailable"));
    }

    #[test]
    fn a_bug_is_internal_and_tells_the_client_nothing() {
        let status = database(
            "rider",
            &DbErr::Custom("deliveries row x: invalid secret status".into()),
        );
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "rider storage failed; see the service log");
    }
}
