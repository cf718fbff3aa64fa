//! The client stack for synchronous calls between services (deadline now; breaker, retry and limits slot in here).
