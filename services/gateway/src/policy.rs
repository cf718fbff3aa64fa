//! Which role may call which method from outside. Ownership of the objects (a rider's own deliveries, a
//! restaurant's own calls) is checked by the services themselves; this table only keeps a role away from
//! methods that are not meant for it at all.

use baemin_proto::{
    call::v1::call_service_server::SERVICE_NAME as CALL, payment::v1::payment_service_server::SERVICE_NAME as PAYMENT,
    report::v1::report_service_server::SERVICE_NAME as REPORT, rider::v1::rider_service_server::SERVICE_NAME as RIDER,
};

use crate::auth::Role::{self, Admin, Restaurant, Rider};

/// What the gateway knows about a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Routed, for these roles only.
    Roles(&'static [Role]),
    /// Exists, but is not reachable from outside the mesh (payment's writes: only the call and rider
    /// services make them).
    Internal,
    /// Not a method of the mesh.
    Unknown,
}

const EVERYONE: &[Role] = &[Restaurant, Rider, Admin];
const RESTAURANTS: &[Role] = &[Restaurant, Admin];
const RIDERS: &[Role] = &[Rider, Admin];
const COMPANY: &[Role] = &[Admin];

/// Who may call `method` of `service` (full gRPC names, e.g. `baemin.call.v1.CallService`, `PlaceCall`).
pub fn access(service: &str, method: &str) -> Access {
    let roles = match (service, method) {
        (CALL, "PlaceCall" | "CancelCall" | "GetCall" | "ListCalls" | "WatchCall") => RESTAURANTS,
        (RIDER, "ListOpenCalls" | "WatchOpenCalls" | "AcceptCall" | "PickUp" | "CompleteDelivery") => RIDERS,
        (RIDER, "GetDelivery" | "ListDeliveries") => RIDERS,
        (PAYMENT, "GetPayment") => COMPANY,
        (PAYMENT, "RegisterCost" | "HoldCost" | "Settle" | "VoidCost") => return Access::Internal,
        (REPORT, "GetDeliveryView" | "ListDeliveryViews" | "WatchDeliveryViews") => EVERYONE,
        (REPORT, "GetStats") => COMPANY,
        _ => return Access::Unknown,
    };
    Access::Roles(roles)
}

/// Whether `method` answers with a stream that lasts as long as its client (the watches).
pub fn is_long_stream(method: &str) -> bool {
    matches!(method, "WatchCall" | "WatchOpenCalls" | "WatchDeliveryViews")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rider_cannot_place_a_call_and_a_restaurant_cannot_accept_one() {
        assert!(!matches!(access(CALL, "PlaceCall"), Access::Roles(r) if r.contains(&Rider)));
        assert!(matches!(access(CALL, "PlaceCall"), Access::Roles(r) if r.contains(&Restaurant)));
        assert!(!matches!(access(RIDER, "AcceptCall"), Access::Roles(r) if r.contains(&Restaurant)));
    }

    #[test]
    fn nobody_outside_settles_or_registers_fees() {
        for method in ["RegisterCost", "HoldCost", "Settle", "VoidCost"] {
            assert_eq!(access(PAYMENT, method), Access::Internal);
        }
    }

    #[test]
    fn revenue_is_for_the_company_only() {
        assert_eq!(access(REPORT, "GetStats"), Access::Roles(COMPANY));
    }

    #[test]
    fn every_method_of_every_service_is_in_the_table() {
        use prost::Message as _;
        let set = prost_types::FileDescriptorSet::decode(baemin_proto::FILE_DESCRIPTOR_SET).unwrap();
        let mut seen = 0;
        for file in set.file {
            for service in &file.service {
                let full = format!("{}.{}", file.package(), service.name());
                for method in &service.method {
                    assert_ne!(
                        access(&full, method.name()),
                        Access::Unknown,
                        "{full}/{}",
                        method.name()
                    );
                    seen += 1;
                }
            }
        }
        assert!(seen >= 20, "read the descriptors: {seen} methods");
        assert_eq!(access(CALL, "DropTables"), Access::Unknown);
    }
}
