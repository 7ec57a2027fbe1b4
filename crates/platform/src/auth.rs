//! Who is calling: bearer tokens naming a principal, verified the same way by every service.
//!
//! Tokens are HS256 JWTs signed with the deployment's key. The subject names the principal
//! (`agency:<id>`, `reviewer:<id>`, `service:<name>`); reviewers carry roles. Servers verify every
//! call in one layer ([`crate::access`]) that puts the [`Principal`] into the request's extensions;
//! handlers ask for it with [`principal`] and check what it may do with the `require_*` helpers.

use std::sync::{Arc, Mutex};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::{Code, Request, Status};

use crate::config::AuthConfig;
use crate::error::ServiceError;

/// A reviewer's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Reviewer,
    SeniorReviewer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reviewer => "reviewer",
            Role::SeniorReviewer => "senior_reviewer",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "reviewer" => Some(Role::Reviewer),
            "senior_reviewer" => Some(Role::SeniorReviewer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The verified caller of an RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Agency { id: String },
    Reviewer { id: String, roles: Vec<Role> },
    Service { name: String },
}

impl Principal {
    /// Parses a subject such as `agency:42`, with the roles a reviewer token carries.
    pub fn from_subject(subject: &str, roles: &[String]) -> Option<Principal> {
        let (kind, id) = subject.split_once(':')?;
        if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return None;
        }
        match kind {
            "agency" => Some(Principal::Agency { id: id.to_owned() }),
            "service" => Some(Principal::Service { name: id.to_owned() }),
            "reviewer" => {
                let roles = roles.iter().map(|r| Role::parse(r)).collect::<Option<Vec<_>>>()?;
                Some(Principal::Reviewer { id: id.to_owned(), roles })
            }
            _ => None,
        }
    }

    pub fn subject(&self) -> String {
        match self {
            Principal::Agency { id } => format!("agency:{id}"),
            Principal::Reviewer { id, .. } => format!("reviewer:{id}"),
            Principal::Service { name } => format!("service:{name}"),
        }
    }

    pub fn has_role(&self, role: Role) -> bool {
        matches!(self, Principal::Reviewer { roles, .. } if roles.contains(&role))
    }
}

/// Why a caller was turned away.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid bearer token: {0}")]
    Invalid(String),
    #[error("{0} may not call this method")]
    Forbidden(String),
}

impl ServiceError for AuthError {
    fn code(&self) -> Code {
        match self {
            AuthError::Missing | AuthError::Invalid(_) => Code::Unauthenticated,
            AuthError::Forbidden(_) => Code::PermissionDenied,
        }
    }
}

impl From<AuthError> for Status {
    fn from(e: AuthError) -> Status {
        crate::error::to_status(&e)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    roles: Vec<String>,
    iss: String,
    iat: i64,
    exp: i64,
    jti: String,
}

/// A token as issued: the compact JWT, its id (for revocation) and expiry (unix seconds).
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub token_id: String,
    pub expires_at: i64,
}

/// Signs and verifies tokens with the deployment's key.
#[derive(Clone)]
pub struct TokenAuthority {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
}

impl std::fmt::Debug for TokenAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuthority").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

impl TokenAuthority {
    pub fn new(key: &SecretString, issuer: &str) -> anyhow::Result<Self> {
        let bytes = key.expose_secret().trim().as_bytes();
        anyhow::ensure!(bytes.len() >= 32, "auth.signing_key must be at least 32 bytes");
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.leeway = 30;
        Ok(Self {
            encoding: EncodingKey::from_secret(bytes)?,
            decoding: DecodingKey::from_secret(bytes)?,
            validation,
            issuer: issuer.to_owned(),
        })
    }

    /// Builds the authority from configuration: the key inline, or read from its file.
    pub fn from_config(cfg: &AuthConfig) -> anyhow::Result<Self> {
        let key = match (&cfg.signing_key, &cfg.signing_key_file) {
            (Some(key), _) => key.clone(),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("cannot read auth.signing_key_file {path}: {e}"))?;
                SecretString::from(text.trim().to_owned())
            }
            (None, None) => anyhow::bail!("set auth.signing_key (CRS_AUTH__SIGNING_KEY) or auth.signing_key_file"),
        };
        Self::new(&key, &cfg.issuer)
    }

    pub fn issue(&self, principal: &Principal, ttl_secs: u64) -> anyhow::Result<IssuedToken> {
        let now = chrono::Utc::now().timestamp();
        let roles = match principal {
            Principal::Reviewer { roles, .. } => roles.iter().map(|r| r.as_str().to_owned()).collect(),
            _ => Vec::new(),
        };
        let claims = Claims {
            sub: principal.subject(),
            roles,
            iss: self.issuer.clone(),
            iat: now,
            exp: now + ttl_secs as i64,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok(IssuedToken { token, token_id: claims.jti, expires_at: claims.exp })
    }

    /// Verifies a compact token and returns its principal and token id.
    pub fn verify(&self, token: &str) -> Result<(Principal, String), AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let principal = Principal::from_subject(&data.claims.sub, &data.claims.roles)
            .ok_or_else(|| AuthError::Invalid(format!("unknown subject {:?}", data.claims.sub)))?;
        Ok((principal, data.claims.jti))
    }

    /// The client-side interceptor for calls this service makes as `service:<name>`.
    pub fn service_credentials(&self, name: &str) -> ServiceCredentials {
        ServiceCredentials {
            authority: Arc::new(self.clone()),
            principal: Principal::Service { name: name.to_owned() },
            cached: Arc::new(Mutex::new(None)),
        }
    }
}

/// The id of the verified token, kept beside the principal (revocation is checked by it).
#[derive(Debug, Clone)]
pub struct TokenId(pub String);

/// Attaches a fresh `service:<name>` token to outgoing calls, re-issuing it before it expires.
#[derive(Clone, Debug)]
pub struct ServiceCredentials {
    authority: Arc<TokenAuthority>,
    principal: Principal,
    cached: Arc<Mutex<Option<CachedToken>>>,
}

const SERVICE_TOKEN_TTL_SECS: u64 = 3600;

/// The `authorization` value in use and its expiry (unix seconds).
type CachedToken = (MetadataValue<tonic::metadata::Ascii>, i64);

impl Interceptor for ServiceCredentials {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let now = chrono::Utc::now().timestamp();
        let mut cached = self.cached.lock().expect("credential cache poisoned");
        let fresh = matches!(&*cached, Some((_, exp)) if *exp - now > 300);
        if !fresh {
            let issued = self
                .authority
                .issue(&self.principal, SERVICE_TOKEN_TTL_SECS)
                .map_err(|e| Status::internal(format!("cannot issue service token: {e}")))?;
            let value = format!("Bearer {}", issued.token)
                .parse()
                .map_err(|_| Status::internal("service token is not valid metadata"))?;
            *cached = Some((value, issued.expires_at));
        }
        let (value, _) = cached.as_ref().expect("just filled");
        request.metadata_mut().insert("authorization", value.clone());
        crate::telemetry::inject_context(request.metadata_mut());
        Ok(request)
    }
}

/// The verified principal of a request (present on every call that passed the interceptor).
pub fn principal<T>(request: &Request<T>) -> Result<Principal, AuthError> {
    request.extensions().get::<Principal>().cloned().ok_or(AuthError::Missing)
}

/// Only CRS's own services may call this (outbox hand-offs).
pub fn require_service(p: &Principal) -> Result<(), AuthError> {
    match p {
        Principal::Service { .. } => Ok(()),
        other => Err(AuthError::Forbidden(other.subject())),
    }
}

/// Only reviewers holding one of `roles` may call this.
pub fn require_role(p: &Principal, roles: &[Role]) -> Result<(), AuthError> {
    if roles.iter().any(|r| p.has_role(*r)) { Ok(()) } else { Err(AuthError::Forbidden(p.subject())) }
}

/// Only an agency may call this; returns its id.
pub fn require_agency(p: &Principal) -> Result<&str, AuthError> {
    match p {
        Principal::Agency { id } => Ok(id),
        other => Err(AuthError::Forbidden(other.subject())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority() -> TokenAuthority {
        TokenAuthority::new(&SecretString::from("k".repeat(40)), "crs").unwrap()
    }

    #[test]
    fn issued_tokens_verify_to_their_principal() {
        let a = authority();
        let p = Principal::Reviewer { id: "ana".into(), roles: vec![Role::Reviewer, Role::Admin] };
        let issued = a.issue(&p, 60).unwrap();
        let (back, id) = a.verify(&issued.token).unwrap();
        assert_eq!(back, p);
        assert_eq!(id, issued.token_id);
    }

    #[test]
    fn tokens_signed_with_another_key_are_refused() {
        let other = TokenAuthority::new(&SecretString::from("x".repeat(40)), "crs").unwrap();
        let token = other.issue(&Principal::Agency { id: "1".into() }, 60).unwrap().token;
        assert!(matches!(authority().verify(&token), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn unknown_subjects_and_roles_are_refused() {
        assert_eq!(Principal::from_subject("robot:1", &[]), None);
        assert_eq!(Principal::from_subject("reviewer:1", &["god".into()]), None);
        assert_eq!(Principal::from_subject("agency:", &[]), None);
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(TokenAuthority::new(&SecretString::from("short"), "crs").is_err());
    }
}
