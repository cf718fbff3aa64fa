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
/// flushes) and exits. A pid that is not a process (any more) is ignored.
#[cfg(unix)]
pub fn terminate(pid: u32) {
    let pid = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
}
