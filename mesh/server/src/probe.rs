//! Looking after a service from outside, as a supervisor does: is it SERVING, and asking it to drain.
//! Used by the local launcher (`baemin up`) and by tests that run services as processes.

use std::time::Duration;

use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

/// Whether the gRPC server at `url` answers its health check with SERVING (within a second).
pub async fn is_serving(url: &str) -> bool {
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(url.to_owned()) else {
        return false;
    };
    let Ok(channel) = endpoint.timeout(Duration::from_secs(1)).connect().await else {
        return false;
    };
    HealthClient::new(channel)
        .check(HealthCheckRequest { service: String::new() })
        .await
        .is_ok_and(|r| r.into_inner().status() == ServingStatus::Serving)
}

/// Sends SIGTERM to our child `pid`: a service drains on it (health NOT_SERVING, RPCs finish, outbox
/// flushes) and exits.
#[allow(unsafe_code)]
pub fn terminate(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return };
    // SAFETY: kill(2) with the pid of our own child, not yet reaped, and a valid signal has no memory effects.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}
