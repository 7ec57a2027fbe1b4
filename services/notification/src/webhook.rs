//! Webhook delivery: one signed POST per delivery, recorded attempt by attempt.
//!
//! Each POST carries `X-CRS-Delivery-Id` (stable across retries, so receivers drop repeats) and
//! `X-CRS-Signature: sha256=<hex HMAC of the body>` when the subscription has a secret.

use std::time::Duration;

use crs_platform::outbox::{Envelope, Handler, handler};
use crs_platform::time::now_millis;
use crs_proto::notification::{Audience, Delivery, DeliveryState};
use hmac::{Hmac, Mac};
use sea_orm::{ActiveModelTrait, DatabaseConnection, EntityTrait, Set};
use sha2::Sha256;

use crate::entities::{delivery, notification};

/// Delivery attempts by audience (the channel: agency, content owner, enforcement, on-call) and
/// resulting state.
pub static DELIVERIES: std::sync::LazyLock<prometheus::IntCounterVec> = std::sync::LazyLock::new(|| {
    prometheus::register_int_counter_vec!(
        "crs_deliveries_total",
        "Webhook delivery attempts by audience and resulting state.",
        &["audience", "state"]
    )
    .expect("registers once")
});

/// Outbox topic of a pending delivery.
pub const TOPIC: &str = "webhook.deliver";

#[derive(Clone)]
pub struct Sender {
    db: DatabaseConnection,
    http: reqwest::Client,
}

impl Sender {
    pub fn new(db: DatabaseConnection, timeout: Duration) -> anyhow::Result<Self> {
        // One process-wide TLS provider for HTTPS endpoints; a second install is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("crs-notification/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the webhook client: {e}"))?;
        Ok(Self { db, http })
    }

    pub fn handler(&self) -> Handler {
        let sender = self.clone();
        handler(move |e: Envelope| {
            let sender = sender.clone();
            async move { sender.deliver(e).await.map_err(crs_platform::outbox::HandoffError::from) }
        })
    }

    async fn deliver(&self, envelope: Envelope) -> anyhow::Result<()> {
        let id = envelope.decode::<Delivery>()?.id;
        let Some(row) = delivery::Entity::find_by_id(id.clone()).one(&self.db).await? else {
            anyhow::bail!("delivery {id} not found");
        };
        if row.state == DeliveryState::Delivered as i32 {
            return Ok(());
        }
        let note = notification::Entity::find_by_id(row.notification_id.clone())
            .one(&self.db)
            .await?
            .ok_or_else(|| anyhow::anyhow!("notification {} not found", row.notification_id))?;
        let mut body: serde_json::Value = serde_json::from_str(&note.payload)?;
        body["delivery_id"] = row.id.clone().into();
        body["audience"] = crs_proto::convert::short_name_of::<Audience>(row.audience).into();
        let bytes = serde_json::to_vec(&body)?;
        let mut post = self
            .http
            .post(&row.endpoint)
            .header("content-type", "application/json")
            .header("x-crs-delivery-id", &row.id)
            .header("x-crs-notification-id", &note.id);
        // The receiver can continue this delivery's trace.
        if let Some(traceparent) = crs_platform::telemetry::current_traceparent() {
            post = post.header("traceparent", traceparent);
        }
        if !row.secret.is_empty() {
            let mut mac = Hmac::<Sha256>::new_from_slice(row.secret.as_bytes()).expect("any key length");
            mac.update(&bytes);
            post = post.header("x-crs-signature", format!("sha256={}", hex::encode(mac.finalize().into_bytes())));
        }
        let outcome = match post.body(bytes).send().await {
            Ok(resp) if resp.status().is_success() => Ok(()),
            Ok(resp) => Err(format!("endpoint answered {}", resp.status())),
            Err(e) => Err(format!("cannot reach endpoint: {e}")),
        };
        let mut active: delivery::ActiveModel = row.clone().into();
        active.attempts = Set(row.attempts + 1);
        match &outcome {
            Ok(()) => {
                active.state = Set(DeliveryState::Delivered as i32);
                active.delivered_at = Set(Some(now_millis()));
                active.last_error = Set(String::new());
            }
            Err(why) => {
                active.state = Set(DeliveryState::Retrying as i32);
                active.last_error = Set(why.clone());
            }
        }
        active.update(&self.db).await?;
        let audience = crs_proto::convert::short_name_of::<Audience>(row.audience);
        DELIVERIES.with_label_values(&[audience, if outcome.is_ok() { "delivered" } else { "retrying" }]).inc();
        match outcome {
            Ok(()) => {
                tracing::info!(delivery_id = %row.id, endpoint = %row.endpoint, "delivered");
                Ok(())
            }
            Err(why) => Err(anyhow::anyhow!(why)),
        }
    }
}
