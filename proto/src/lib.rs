//! The gRPC contracts of CRS.
//!
//! Generated code lives in [`pb`], one module per versioned package (`pb::intake::v1`, ...).
//! [`FILE_DESCRIPTOR_SET`] feeds server reflection so `grpcurl` works without `.proto` files.
//! [`convert`] maps the wire enums onto the domain's vocabulary; [`InternalCall`] names the one
//! RPC each hand-off message travels to, which is also its outbox topic.

/// Generated messages, clients and servers, mirroring the proto package tree.
#[rustfmt::skip]
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    pub mod admin {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/crs.admin.v1.rs"));
        }
    }
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

pub mod convert;
pub mod internal;

/// The encoded `FileDescriptorSet` of every CRS proto (and the well-known types they import).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/crs_descriptor.bin"));

pub use convert::ShortName;
pub use internal::InternalCall;
pub use pb::admin::v1 as admin;
pub use pb::common::v1 as common;
pub use pb::intake::v1 as intake;
pub use pb::notification::v1 as notification;
pub use pb::review::v1 as review;
pub use pb::triage::v1 as triage;
