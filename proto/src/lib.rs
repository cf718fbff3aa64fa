//! Generated types of the Baemin Riders mesh contracts. Protobuf types stop at each service's gRPC adapter.

/// `baemin.call.v1`: restaurants place and follow calls.
pub mod call {
    #[allow(missing_docs, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("baemin.call.v1");
    }
}

/// `baemin.rider.v1`: the open-call board and deliveries.
pub mod rider {
    #[allow(missing_docs, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("baemin.rider.v1");
    }
}

/// `baemin.payment.v1`: fee registration and settlement.
pub mod payment {
    #[allow(missing_docs, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("baemin.payment.v1");
    }

    /// Payment's machine-readable refusal reasons (`google.rpc.ErrorInfo`, AIP-193): part of its contract,
    /// so the callers that branch on them and payment that sends them name them once, here.
    pub mod reasons {
        /// The `ErrorInfo.domain` of every reason below.
        pub const DOMAIN: &str = "payment.baemin";
        /// The fee was voided: the call was cancelled.
        pub const FEE_VOIDED: &str = "FEE_VOIDED";
        /// The fee was settled already: it can no longer be voided.
        pub const FEE_SETTLED: &str = "FEE_SETTLED";
        /// The fee was settled to another rider.
        pub const SETTLED_WITH_ANOTHER_RIDER: &str = "SETTLED_WITH_ANOTHER_RIDER";
        /// The fee is held for the rider who picked the food up: it can no longer be voided.
        pub const FEE_HELD: &str = "FEE_HELD";
        /// The fee is held for another rider.
        pub const HELD_FOR_ANOTHER_RIDER: &str = "HELD_FOR_ANOTHER_RIDER";
    }
}

/// `baemin.report.v1`: the company's read model.
pub mod report {
    #[allow(missing_docs, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("baemin.report.v1");
    }
}

/// `baemin.events.v1`: the events on JetStream.
pub mod events {
    #[allow(missing_docs, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("baemin.events.v1");
    }
    mod subject;
    pub use subject::{SUBJECT_PREFIX, subject_of};
}

/// The encoded `FileDescriptorSet` of every contract, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/baemin_descriptor.bin"));

/// Converts between `prost_types::Timestamp` and milliseconds since the epoch.
pub mod time;
