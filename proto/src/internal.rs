//! The hand-offs between services: each message type travels to exactly one internal RPC, named
//! here once. The outbox uses that RPC's path as the row's topic and the relay routes by it, so a
//! topic is never a string copied between services.

use crate::{intake, notification, review, triage};

/// A request message that is handed to another service's internal RPC through the outbox.
pub trait InternalCall: prost::Message + Default + Send + 'static {
    /// The gRPC path of the RPC it is sent to, e.g. `/crs.triage.v1.TriageInternalService/AssessRequest`.
    const METHOD: &'static str;

    /// Stamps the outbox row's id as the receiver's idempotency key.
    fn set_event_id(&mut self, id: String);
}

macro_rules! internal_calls {
    ($($ty:ty => $service:literal / $method:literal),* $(,)?) => {
        $(impl InternalCall for $ty {
            const METHOD: &'static str = concat!("/", $service, "/", $method);
            fn set_event_id(&mut self, id: String) {
                self.event_id = id;
            }
        })*

        /// Every internal RPC, with the full name of the message it takes.
        pub const ALL: &[(&str, &str)] = &[$((<$ty as InternalCall>::METHOD, stringify!($ty))),*];
    };
}

internal_calls!(
    triage::AssessRequestRequest => "crs.triage.v1.TriageInternalService" / "AssessRequest",
    triage::RecordDecisionRequest => "crs.triage.v1.TriageInternalService" / "RecordDecision",
    review::EnqueueCaseRequest => "crs.review.v1.LegalReviewInternalService" / "EnqueueCase",
    review::ResumeCaseRequest => "crs.review.v1.LegalReviewInternalService" / "ResumeCase",
    review::WithdrawCaseRequest => "crs.review.v1.LegalReviewInternalService" / "WithdrawCase",
    intake::UpdateStatusRequest => "crs.intake.v1.IntakeInternalService" / "UpdateStatus",
    notification::NotifyRequest => "crs.notification.v1.NotificationInternalService" / "Notify",
    notification::PutSubscriptionRequest => "crs.notification.v1.NotificationInternalService" / "PutAgencySubscription",
);

/// Whether `path` (`/package.Service/Method`) belongs to an internal service.
pub fn is_internal(path: &str) -> bool {
    path.trim_start_matches('/').split('/').next().is_some_and(|service| service.ends_with("InternalService"))
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use prost_types::FileDescriptorSet;

    use super::*;

    /// Every internal call names an RPC that exists, in an internal service, taking that message.
    #[test]
    fn every_internal_call_names_a_real_rpc_taking_its_message() {
        let fds = FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET).unwrap();
        for (path, ty) in ALL {
            let (service, method) = path.trim_start_matches('/').rsplit_once('/').unwrap();
            let (package, service_name) = service.rsplit_once('.').unwrap();
            let m = fds
                .file
                .iter()
                .filter(|f| f.package() == package)
                .flat_map(|f| f.service.iter())
                .filter(|s| s.name() == service_name)
                .flat_map(|s| s.method.iter())
                .find(|m| m.name() == method)
                .unwrap_or_else(|| panic!("{path} is not an RPC"));
            let message = ty.rsplit("::").next().unwrap().trim();
            assert!(m.input_type().ends_with(&format!(".{message}")), "{path} takes {}, not {ty}", m.input_type());
            assert!(is_internal(path), "{path} must be in an internal service");
        }
    }
}
