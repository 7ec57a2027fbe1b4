//! The gRPC contracts of CRS.
//!
//! Generated code lives in [`pb`], one module per versioned package (`pb::intake::v1`, ...).
//! [`FILE_DESCRIPTOR_SET`] feeds server reflection so `grpcurl` works without `.proto` files.

/// Generated messages, clients and servers, mirroring the proto package tree.
#[rustfmt::skip]
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    pub mod common {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/crs.common.v1.rs"));
        }
    }
    pub mod intake {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/crs.intake.v1.rs"));
        }
    }
    pub mod triage {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/crs.triage.v1.rs"));
        }
    }
    pub mod review {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/crs.review.v1.rs"));
        }
    }
    pub mod notification {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/crs.notification.v1.rs"));
        }
    }
}

/// The encoded `FileDescriptorSet` of every CRS proto (and the well-known types they import).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/crs_descriptor.bin"));

pub use pb::common::v1 as common;
pub use pb::intake::v1 as intake;
pub use pb::notification::v1 as notification;
pub use pb::review::v1 as review;
pub use pb::triage::v1 as triage;

/// Requests that travel through a transactional outbox carry the row's id as `event_id`, their
/// idempotency key at the receiver.
pub trait EventId {
    fn set_event_id(&mut self, id: String);
}

macro_rules! event_id {
    ($($ty:ty),* $(,)?) => {
        $(impl EventId for $ty {
            fn set_event_id(&mut self, id: String) {
                self.event_id = id;
            }
        })*
    };
}

event_id!(
    triage::AssessRequestRequest,
    review::EnqueueCaseRequest,
    review::ResumeCaseRequest,
    review::WithdrawCaseRequest,
    intake::UpdateStatusRequest,
    notification::NotifyRequest,
    notification::PutSubscriptionRequest,
);
