//! Webhooks as Standard Webhooks 1.0 specifies them, so receivers verify with the published
//! libraries in any language: a POST of the audience's message with `webhook-id` (the delivery
//! id, the same on every attempt), `webhook-timestamp` (this attempt's Unix seconds) and
//! `webhook-signature`: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` per secret in force,
//! space-separated while a secret rotates. Receivers reject a timestamp outside their tolerance
//! (five minutes in the reference libraries), so a captured webhook cannot be replayed later.
//!
//! Only https endpoints (http in development mode), only addresses the egress policy allows,
//! checked where the connection is made; redirects are never followed (a 3xx is a failure), and
//! no proxy from the environment is used.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use crs_platform::error::FieldViolations;
use crs_platform::secrets::{SecretBox, WebhookSecret};
use crs_platform::time::now_millis;
use crs_proto::notification::{Audience, Channel as ChannelKind};
use futures::FutureExt as _;
use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tracing::Instrument;

use super::{Attempt, Channel, Failure, Outcome};
use crate::egress::{EgressPolicy, PolicyResolver};
use crate::entities::subscription;

/// The longest endpoint URL accepted.
const MAX_URL_LEN: usize = 2048;

/// The signature of one secret over `id.timestamp.body`: `v1,<base64>`.
pub fn sign(secret: &WebhookSecret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.key()).expect("HMAC takes a key of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// Where a subscription's secrets are sealed: bound to the subscription and to the slot.
pub fn secret_context(subscription_id: &str, slot: &str) -> String {
    format!("subscription:{subscription_id}:{slot}")
}

/// The secrets in force for `sub` at `now`: the current one, and the previous one until its
/// overlap ends.
pub fn secrets_in_force(
    secrets: &SecretBox,
    sub: &subscription::Model,
    now: i64,
) -> anyhow::Result<Vec<WebhookSecret>> {
    let mut out = vec![secrets.open_webhook_secret(&sub.secret, &secret_context(&sub.id, "current"))?];
    if !sub.previous_secret.is_empty() && sub.previous_secret_expires_at.is_some_and(|at| at > now) {
        out.push(secrets.open_webhook_secret(&sub.previous_secret, &secret_context(&sub.id, "previous"))?);
    }
    Ok(out)
}

pub struct Webhooks {
    http: reqwest::Client,
    policy: EgressPolicy,
    secrets: SecretBox,
    /// `webhooks.timeout_ms`: one request, connection included.
    timeout: Duration,
}

impl Webhooks {
    pub fn new(policy: EgressPolicy, secrets: SecretBox, timeout: Duration) -> anyhow::Result<Webhooks> {
        // One process-wide TLS provider for HTTPS endpoints; a second install is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .https_only(!policy.allows_http())
            .dns_resolver(std::sync::Arc::new(PolicyResolver { policy: policy.clone() }))
            .user_agent(concat!("crs-notification/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the webhook client: {e}"))?;
        Ok(Webhooks { http, policy, secrets, timeout })
    }

    async fn post(&self, attempt: &Attempt) -> Outcome {
        let sub = &attempt.subscription;
        let id = attempt.delivery.id.as_str();
        let url = match url::Url::parse(&sub.endpoint) {
            Ok(url) => url,
            Err(e) => return Outcome::Failed(refusal("the endpoint is not a valid URL", format!("{e}"))),
        };
        if let Err(refused) = self.policy.check_url(&url) {
            crate::metrics::ADDRESSES_REFUSED.with_label_values(&[refused.range.as_str()]).inc();
            return Outcome::Failed(refusal("the endpoint's address is not allowed", refused.to_string()));
        }
        let now = now_millis();
        let secrets = match secrets_in_force(&self.secrets, sub, now) {
            Ok(s) => s,
            Err(e) => return Outcome::Failed(Failure::internal(format!("cannot open the signing secret: {e:#}"))),
        };
        let timestamp = now / 1000;
        let body = attempt.message.payload.as_bytes();
        let signature = secrets.iter().map(|s| sign(s, id, timestamp, body)).collect::<Vec<_>>().join(" ");

        let span = tracing::info_span!(
            "http client",
            otel.name = "POST",
            otel.kind = "client",
            http.request.method = "POST",
            server.address = %url.host_str().unwrap_or_default(),
            server.port = i64::from(url.port_or_known_default().unwrap_or(0)),
            url.full = %redacted(&url),
            http.response.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let sent = async {
            let mut request = self
                .http
                .post(url.clone())
                .header("content-type", "application/json")
                .header("webhook-id", id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", signature);
            // The receiver can continue this request's trace.
            if let Some(traceparent) = crs_platform::telemetry::current_traceparent() {
                request = request.header("traceparent", traceparent);
            }
            request.body(body.to_vec()).send().await
        }
        .instrument(span.clone())
        .await;
        let outcome = match sent {
            Ok(response) => {
                let status = response.status();
                span.record("http.response.status_code", i64::from(status.as_u16()));
                if status.is_success() {
                    Outcome::Delivered
                } else {
                    span.record("error.type", status.as_str());
                    Outcome::Failed(answered(status, response.headers()))
                }
            }
            Err(e) => {
                let failure = unreachable(&e);
                span.record("error.type", if e.is_timeout() { "timeout" } else { "connection" });
                Outcome::Failed(failure)
            }
        };
        if matches!(outcome, Outcome::Failed(_)) {
            span.record("otel.status_code", "ERROR");
        }
        outcome
    }
}

/// A failure trying again cannot fix.
fn refusal(summary: &str, detail: String) -> Failure {
    Failure { permanent: true, summary: summary.into(), detail, retry_after: None, endpoint_unwell: false }
}

/// What an answer other than 2xx means. 410 Gone says the endpoint is no more (the
/// specification's signal to stop); a redirect is not followed; 429 and 503 may say when to
/// come back.
fn answered(status: reqwest::StatusCode, headers: &reqwest::header::HeaderMap) -> Failure {
    let retry_after = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let code = status.as_u16();
    let summary = format!("the endpoint answered {code}");
    if status == reqwest::StatusCode::GONE {
        return refusal(&summary, format!("{status}: the endpoint is gone"));
    }
    if status.is_redirection() {
        let to = headers.get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("?");
        return Failure {
            permanent: false,
            summary: format!("{summary}; redirects are not followed"),
            detail: format!("{status} to {to}: redirects are not followed; subscribe the final URL"),
            retry_after: None,
            endpoint_unwell: true,
        };
    }
    Failure { permanent: false, summary, detail: status.to_string(), retry_after, endpoint_unwell: true }
}

/// A request that got no answer: refused by the egress policy, timed out, or not connected.
fn unreachable(e: &reqwest::Error) -> Failure {
    if let Some(refused) = crate::egress::refusal_in(e) {
        return refusal("the endpoint's address is not allowed", refused.to_string());
    }
    let detail = crs_platform::error::error_chain(e);
    let summary =
        if e.is_timeout() { "the endpoint did not answer in time" } else { "the endpoint could not be reached" };
    Failure { permanent: false, summary: summary.into(), detail, retry_after: None, endpoint_unwell: true }
}

/// The URL for traces: no credentials, query or fragment (they may carry tokens).
fn redacted(url: &url::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

impl Channel for Webhooks {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Webhook
    }

    fn signs(&self) -> bool {
        true
    }

    fn longest_attempt(&self) -> Duration {
        self.timeout
    }

    fn check_endpoint(&self, _audience: Audience, endpoint: &str, v: &mut FieldViolations) {
        if endpoint.len() > MAX_URL_LEN {
            v.add("endpoint", format!("longer than {MAX_URL_LEN} characters"));
            return;
        }
        let url = match url::Url::parse(endpoint) {
            Ok(u) => u,
            Err(_) => return v.add("endpoint", "must be an https URL"),
        };
        match url.scheme() {
            "https" => {}
            "http" if self.policy.allows_http() => {}
            "http" => return v.add("endpoint", "must be https (http only in development mode)"),
            _ => return v.add("endpoint", "must be an https URL"),
        }
        if url.host_str().is_none_or(str::is_empty) {
            return v.add("endpoint", "names no host");
        }
        if !url.username().is_empty() || url.password().is_some() {
            return v.add("endpoint", "must not carry credentials; deliveries are signed instead");
        }
        if let Err(refused) = self.policy.check_url(&url) {
            crate::metrics::ADDRESSES_REFUSED.with_label_values(&[refused.range.as_str()]).inc();
            v.add(
                "endpoint",
                format!(
                    "names {}, a {} address, which webhooks may not reach",
                    refused.ip,
                    refused.range.as_str().replace('_', " ")
                ),
            );
        }
    }

    fn deliver<'a>(&'a self, attempt: &'a Attempt) -> BoxFuture<'a, Outcome> {
        self.post(attempt).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector of the reference implementation.
    #[test]
    fn signatures_match_the_specifications_vector() {
        let secret = WebhookSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        assert_eq!(
            sign(&secret, "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1649367553, body),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn traces_show_no_credentials_or_query() {
        let url = url::Url::parse("https://user:pw@hooks.example/a/b?token=x#f").unwrap();
        assert_eq!(redacted(&url), "https://hooks.example/a/b");
    }
}
