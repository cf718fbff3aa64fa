//! The shared kernel of the delivery domain: ids, money and the lifecycle. No I/O, no protobuf.
//!
//! Every value here is parsed on construction, so a value that exists is valid.

mod ids;
mod invalid;
mod lifecycle;
mod money;
mod page;
mod text;

pub use ids::{CallId, RequestId, RestaurantId, RiderId};
pub use invalid::{FieldViolation, InvalidInput};
pub use lifecycle::{DeliveryStatus, IllegalTransition};
pub use money::{CommissionRate, Fee, Settlement};
pub use page::{PageSize, PageToken};
pub use text::{CancelReason, Destination};

/// Milliseconds since the Unix epoch: how every service stores and compares instants.
pub type Millis = i64;

/// The current time in milliseconds since the Unix epoch.
pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
