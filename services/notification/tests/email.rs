//! Email through a real SMTP server run by the test: each person is written to in their
//! language (English when there is no template in it), the content owner with the statement of
//! reasons and how to appeal, the agency with its question, acknowledgement and decision.

mod support;

use std::time::Duration;

use crs_proto::notification::*;
use crs_testkit::smtp::{Answer, Mail};
use crs_testkit::{Backend, SmtpSink, eventually};
use support::*;

const PATIENCE: Duration = Duration::from_secs(30);

async fn with_email(sink: &SmtpSink) -> crs_testkit::ServiceEnv {
    env(Backend::Sqlite)
        .await
        .set("CRS_EMAIL__SMTP_URL", sink.url())
        .set("CRS_EMAIL__FROM", "CRS <notifications@crs.test>")
        .set("CRS_APPEAL__URL", "https://platform.example/appeals")
        .set("CRS_APPEAL__LANGUAGES__RU__URL", "https://platform.example/ru/appeals")
}

async fn subscribe_email(running: &crs_testkit::Running, audience: Audience, address: &str, language: &str) {
    admin(running)
        .await
        .put_subscription(PutSubscriptionRequest {
            audience: audience as i32,
            channel: Channel::Email as i32,
            endpoint: address.into(),
            language: language.into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

fn to<'a>(mails: &'a [Mail], address: &str) -> Vec<&'a Mail> {
    mails.iter().filter(|m| m.to.iter().any(|t| t == address)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_person_is_written_to_in_their_language() {
    let sink = SmtpSink::start().await.unwrap();
    let env = with_email(&sink).await;
    let running = start(&env).await;
    // The agency's contact address arrives from intake, in Kazakh.
    internal(&running, "intake")
        .await
        .put_agency_subscription(PutSubscriptionRequest {
            audience: Audience::Agency as i32,
            agency_id: "agency-kz".into(),
            channel: Channel::Email as i32,
            endpoint: "requests@ministry.kz".into(),
            language: "kk".into(),
            recipient_name: "Цифрлық даму министрлігі".into(),
            source_version: 1,
            event_id: "agency-kz:email:1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    subscribe_email(&running, Audience::ContentOwner, "owners@relay.platform.example", "ru").await;
    subscribe_email(&running, Audience::OnCall, "oncall@platform.example", "de").await;

    let mut notify = internal(&running, "legal-review").await;
    notify.notify(acknowledged("m-1", "agency-kz")).await.unwrap();
    notify.notify(question("m-1", "agency-kz", "Which court ruling declared the assembly unlawful?")).await.unwrap();
    notify.notify(decided("m-1", "agency-kz")).await.unwrap();
    notify.notify(sla_warning("m-1", 75)).await.unwrap();
    let mails = eventually("every email arrives", PATIENCE, || async {
        let mails = sink.mails();
        (mails.len() == 5).then_some(mails)
    })
    .await;
    assert!(mails.iter().all(|m| m.from == "notifications@crs.test"));

    // The agency, in Kazakh: acknowledgement, question, decision.
    let agency = to(&mails, "requests@ministry.kz");
    assert_eq!(agency.len(), 3);
    let subjects: Vec<&str> = agency.iter().map(|m| m.subject.as_str()).collect();
    assert!(subjects.contains(&"m-1 сұрауы қабылданды (сіздің нөміріңіз MDD-2026/118)"), "{subjects:?}");
    let asked = agency.iter().find(|m| m.subject.contains("сұрақ")).expect("the question");
    assert!(asked.body.contains("Which court ruling declared the assembly unlawful?"), "{}", asked.body);
    assert!(asked.body.contains("Құрметті Цифрлық даму министрлігі!"), "{}", asked.body);
    let decision = agency.iter().find(|m| m.subject.contains("шешім")).expect("the decision");
    for expected in ["мына елде қолжетімділігі шектелді: KZ", "ешқандай шара қолданылмады", "бүкіл әлемде жойылды"]
    {
        assert!(decision.body.contains(expected), "{expected} in {}", decision.body);
    }

    // The content owner, in Russian: the statement of reasons and how to appeal.
    let owner = to(&mails, "owners@relay.platform.example");
    assert_eq!(owner.len(), 1);
    let sor = &owner[0].body;
    assert_eq!(owner[0].subject, "Решение в отношении вашего контента");
    for expected in [
        "Запрос направил: Ministry of Digital Development (KZ)",
        "доступ ограничен в стране: KZ",
        "незаконный контент согласно: Law on Online Platforms, Art. 9(4)(2)",
        "удалён во всём мире",
        "нарушение наших правил: Community Standards: violent threats",
        "Факты и причины: The post calls for an assembly a court declared unlawful.",
        "Как обжаловать",
        "https://platform.example/ru/appeals",
    ] {
        assert!(sor.contains(expected), "{expected:?} in {sor}");
    }
    assert!(!sor.contains("MDD-2026/118") && !sor.contains("agency-kz"), "no internal reference: {sor}");
    assert!(!sor.contains("posts/m-1/1"), "no word of the item left alone: {sor}");

    // On-call reads German, which has no template: English.
    let on_call = to(&mails, "oncall@platform.example");
    assert_eq!(on_call.len(), 1);
    assert!(on_call[0].subject.starts_with("SLA warning: request m-1 (KZ) at 75%"), "{}", on_call[0].subject);

    // Every email is a recorded delivery. The sink keeps a mail before it accepts it, and the
    // outcome is written after that.
    let recorded = eventually("every email is recorded delivered", PATIENCE, || async {
        let recorded = deliveries(&running).await;
        recorded.iter().all(|d| d.state == DeliveryState::Delivered as i32).then_some(recorded)
    })
    .await;
    assert_eq!(recorded.iter().filter(|d| d.channel == Channel::Email as i32).count(), 5);
    running.stop().await;
    env.db.drop_now().await.unwrap();
}

/// A mail server's 5xx is its final word: the delivery is given up at once; a 4xx is retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_by_the_mail_server_is_final_and_a_deferral_is_retried() {
    let sink = SmtpSink::start().await.unwrap();
    let env = with_email(&sink).await;
    let running = start(&env).await;
    subscribe_email(&running, Audience::OnCall, "oncall@platform.example", "en").await;
    sink.answer(Answer::Refuse);
    let mut notify = internal(&running, "legal-review").await;
    notify.notify(sla_warning("m-2", 50)).await.unwrap();
    let refused = eventually("the refused email is given up", PATIENCE, || async {
        deliveries(&running).await.into_iter().find(|d| d.state == DeliveryState::Failed as i32)
    })
    .await;
    assert_eq!(refused.attempts, 1);
    assert!(refused.last_error.contains("550"), "{refused:?}");

    sink.answer(Answer::Defer);
    notify.notify(sla_warning("m-2", 75)).await.unwrap();
    eventually("the deferred email is retried", PATIENCE, || async {
        deliveries(&running).await.into_iter().find(|d| d.state == DeliveryState::Retrying as i32 && d.attempts >= 2)
    })
    .await;
    sink.answer(Answer::Accept);
    eventually("and then delivered", PATIENCE, || async { (sink.mails().len() == 1).then_some(()) }).await;
    running.stop().await;
    env.db.drop_now().await.unwrap();
}

/// Without an SMTP server, email subscriptions are refused with a reason; email is for people.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_needs_a_mail_server_and_a_person_to_write_to() {
    let plain = env(Backend::Sqlite).await;
    let running = start(&plain).await;
    let mut admin = admin(&running).await;
    let unconfigured = admin
        .put_subscription(PutSubscriptionRequest {
            audience: Audience::OnCall as i32,
            channel: Channel::Email as i32,
            endpoint: "oncall@platform.example".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unconfigured.code(), tonic::Code::FailedPrecondition, "{unconfigured:?}");
    running.stop().await;
    plain.db.drop_now().await.unwrap();

    let sink = SmtpSink::start().await.unwrap();
    let env = with_email(&sink).await;
    let running = start(&env).await;
    let mut admin = support::admin(&running).await;
    for (audience, endpoint, language, field) in [
        (Audience::Enforcement, "enforcement@platform.example", "en", "channel"),
        (Audience::OnCall, "not an address", "en", "endpoint"),
        (Audience::OnCall, "oncall@platform.example", "Kazakh", "language"),
    ] {
        let refused = admin
            .put_subscription(PutSubscriptionRequest {
                audience: audience as i32,
                channel: Channel::Email as i32,
                endpoint: endpoint.into(),
                language: language.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(refused.message().contains(field), "{field}: {}", refused.message());
    }
    running.stop().await;
    env.db.drop_now().await.unwrap();
}
