//! Who is calling: bearer tokens naming a principal, verified the same way by every service.
//!
//! Tokens are EdDSA (Ed25519) JWTs naming a principal (`agency:<id>`, `reviewer:<id>`,
//! `service:<name>`) and the services they are good for (`aud`); reviewers carry roles. People's
//! and agencies' tokens are signed by the token issuer (intake) with a key only it holds; each
//! service signs its own calls with its own key; every service verifies with public keys only,
//! so no service can mint another's identity or anyone's token but its own. Servers verify every
//! call in one layer ([`crate::access`]) that puts the [`Principal`] into the request's extensions;
//! handlers ask for it with [`principal`] and check what it may do with the `require_*` helpers.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
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
    /// A system outside CRS (an enforcement bridge, an on-call pager) that reads notification
    /// streams and may do nothing else.
    Consumer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reviewer => "reviewer",
            Role::SeniorReviewer => "senior_reviewer",
            Role::Admin => "admin",
            Role::Consumer => "consumer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "reviewer" => Some(Role::Reviewer),
            "senior_reviewer" => Some(Role::SeniorReviewer),
            "admin" => Some(Role::Admin),
            "consumer" => Some(Role::Consumer),
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
    aud: Vec<String>,
    iat: i64,
    exp: i64,
    jti: String,
}

/// How long after `exp` a token is still accepted (clocks differ); revocations outlive it.
pub const LEEWAY_SECS: u64 = 30;

/// The audience a service's tokens must name: `crs-<service>`.
pub fn audience(service: &str) -> String {
    format!("crs-{service}")
}

/// The audiences a person's token is good for: an agency calls intake (and reads its own
/// deliveries at notification); reviewers, seniors and admins call every service.
pub fn audiences_of(principal: &Principal) -> Vec<String> {
    match principal {
        Principal::Agency { .. } => vec![audience("intake"), audience("notification")],
        _ => crate::keys::SERVICES.iter().map(|s| audience(s)).collect(),
    }
}

/// A token as issued: the compact JWT, its id (for revocation) and expiry (unix seconds).
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub token_id: String,
    pub expires_at: i64,
}

fn sign(key: &EncodingKey, kid: &str, claims: &Claims) -> anyhow::Result<String> {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    Ok(jsonwebtoken::encode(&header, claims, key)?)
}

/// Signs agencies' and reviewers' tokens with the token issuer's private key. Only the issuer
/// (intake's `IssueToken`, and `crsctl dev token` in development) holds it; it cannot mint a
/// service's identity, which every service proves with its own key.
#[derive(Clone)]
pub struct TokenIssuer {
    key: EncodingKey,
    kid: String,
    issuer: String,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer").field("kid", &self.kid).field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// An issuer signing with the Ed25519 private key `private_pem` (PKCS#8).
    pub fn new(private_pem: &str, issuer: &str) -> anyhow::Result<Self> {
        let public = crate::keys::public_of(private_pem)?;
        Ok(Self {
            key: EncodingKey::from_ed_pem(private_pem.as_bytes())?,
            kid: crate::keys::key_id(&public),
            issuer: issuer.to_owned(),
        })
    }

    pub fn from_file(path: &Path, issuer: &str) -> anyhow::Result<Self> {
        Self::new(&crate::keys::read("auth.token_signing_key_file", path)?, issuer)
            .map_err(|e| anyhow::anyhow!("auth.token_signing_key_file {}: {e}", path.display()))
    }

    /// A token for an agency or a reviewer, good for `ttl_secs` and the audiences its kind calls.
    pub fn issue(&self, principal: &Principal, ttl_secs: u64) -> anyhow::Result<IssuedToken> {
        anyhow::ensure!(
            !matches!(principal, Principal::Service { .. }),
            "service principals prove themselves with their own keys; the token issuer does not mint them"
        );
        let now = chrono::Utc::now().timestamp();
        let roles = match principal {
            Principal::Reviewer { roles, .. } => roles.iter().map(|r| r.as_str().to_owned()).collect(),
            _ => Vec::new(),
        };
        let claims = Claims {
            sub: principal.subject(),
            roles,
            iss: self.issuer.clone(),
            aud: audiences_of(principal),
            iat: now,
            exp: now + ttl_secs as i64,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let token = sign(&self.key, &self.kid, &claims)?;
        Ok(IssuedToken { token, token_id: claims.jti, expires_at: claims.exp })
    }
}

/// A service's own identity: its private key signs its calls to peers, each token naming the
/// one peer it is for.
#[derive(Clone)]
pub struct ServiceIdentity {
    name: String,
    key: EncodingKey,
}

impl std::fmt::Debug for ServiceIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceIdentity").field("name", &self.name).finish_non_exhaustive()
    }
}

const SERVICE_TOKEN_TTL_SECS: i64 = 3600;

impl ServiceIdentity {
    pub fn new(name: &str, private_pem: &str) -> anyhow::Result<Self> {
        Ok(Self { name: name.to_owned(), key: EncodingKey::from_ed_pem(private_pem.as_bytes())? })
    }

    pub fn from_file(name: &str, path: &Path) -> anyhow::Result<Self> {
        Self::new(name, &crate::keys::read("auth.service_key_file", path)?)
            .map_err(|e| anyhow::anyhow!("auth.service_key_file {}: {e}", path.display()))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A token proving this service to `peer` (a service name), for an hour.
    pub fn token_for(&self, peer: &str) -> anyhow::Result<IssuedToken> {
        self.token_for_peers(&[peer])
    }

    /// A token proving this service to each of `peers`.
    pub fn token_for_peers(&self, peers: &[&str]) -> anyhow::Result<IssuedToken> {
        let now = chrono::Utc::now().timestamp();
        let subject = Principal::Service { name: self.name.clone() }.subject();
        let claims = Claims {
            sub: subject.clone(),
            roles: Vec::new(),
            iss: subject.clone(),
            aud: peers.iter().map(|p| audience(p)).collect(),
            iat: now,
            exp: now + SERVICE_TOKEN_TTL_SECS,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        Ok(IssuedToken { token: sign(&self.key, &subject, &claims)?, token_id: claims.jti, expires_at: claims.exp })
    }

    /// The client-side interceptor for calls to `peer`.
    pub fn credentials_for(&self, peer: &str) -> ServiceCredentials {
        ServiceCredentials {
            identity: Arc::new(self.clone()),
            peer: peer.to_owned(),
            cached: Arc::new(Mutex::new(None)),
        }
    }
}

/// A verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub principal: Principal,
    pub token_id: String,
    /// Unix seconds.
    pub issued_at: i64,
    pub expires_at: i64,
}

/// Verifies tokens for one service: people's tokens against the token issuer's public keys
/// (several while a key rotates, chosen by `kid`), a service's token against that service's own
/// public key; each must name this service in its audience.
#[derive(Clone)]
pub struct TokenVerifier {
    audience: String,
    issuer: String,
    user_keys: Vec<(String, DecodingKey)>,
    service_keys: HashMap<String, DecodingKey>,
    /// Tokens already verified, until they expire (see [`TokenVerifier::verify`]).
    verified: Arc<Mutex<HashMap<String, Verified>>>,
}

/// Verified tokens kept at most; beyond, the expired ones go, and if that is not enough, all.
const VERIFIED_KEPT: usize = 4096;

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("audience", &self.audience)
            .field("user_keys", &self.user_keys.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("service_keys", &self.service_keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl TokenVerifier {
    /// A verifier for `service`, trusting the token issuer's `user_public_pems` and the services'
    /// `service_public_pems` (by service name).
    pub fn new(
        service: &str,
        issuer: &str,
        user_public_pems: &[String],
        service_public_pems: &[(String, String)],
    ) -> anyhow::Result<Self> {
        let user_keys = user_public_pems
            .iter()
            .map(|pem| {
                let pem = crate::keys::public_key(pem)?;
                Ok((crate::keys::key_id(&pem), DecodingKey::from_ed_pem(pem.as_bytes())?))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let service_keys = service_public_pems
            .iter()
            .map(|(name, pem)| {
                let pem = crate::keys::public_key(pem).map_err(|e| anyhow::anyhow!("service {name}: {e}"))?;
                Ok((name.clone(), DecodingKey::from_ed_pem(pem.as_bytes())?))
            })
            .collect::<anyhow::Result<HashMap<_, _>>>()?;
        Ok(Self {
            audience: audience(service),
            issuer: issuer.to_owned(),
            user_keys,
            service_keys,
            verified: Default::default(),
        })
    }

    /// Builds the verifier of `service` from its configuration.
    pub fn from_config(service: &str, cfg: &AuthConfig) -> anyhow::Result<Self> {
        let user = cfg
            .token_public_key_files
            .iter()
            .map(|f| crate::keys::read("auth.token_public_key_files", Path::new(f)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(!user.is_empty(), "auth.token_public_key_files names no key");
        for (f, pem) in cfg.token_public_key_files.iter().zip(&user) {
            crate::keys::public_key(pem).map_err(|e| anyhow::anyhow!("auth.token_public_key_files {f}: {e}"))?;
        }
        let mut services = Vec::new();
        for name in crate::keys::SERVICES {
            let path = Path::new(&cfg.service_public_keys_dir).join(format!("{name}.pub"));
            // A peer whose key is absent cannot call this service.
            if let Ok(pem) = std::fs::read_to_string(&path) {
                crate::keys::public_key(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                services.push((name.to_owned(), pem));
            }
        }
        Self::new(service, &cfg.issuer, &user, &services)
    }

    /// Verifies a compact token.
    ///
    /// A caller sends the same token with every call (a peer's until it is re-issued, an
    /// agency's for its lifetime), and checking the Ed25519 signature is most of what verifying
    /// costs; so a token once verified is remembered until it expires. It is remembered by the
    /// whole token: only that very string is spared the check, and a token whose signature or
    /// claims differ by one character is checked in full. Revocation is not remembered: callers
    /// check it on every call, by the token's id.
    pub fn verify(&self, token: &str) -> Result<Verified, AuthError> {
        let now = chrono::Utc::now().timestamp();
        if let Some(v) = self.recall(token, now) {
            return Ok(v);
        }
        let verified = self.check(token)?;
        self.remember(token, &verified, now);
        Ok(verified)
    }

    /// A token verified before, while it has not expired (with the leeway the check allows).
    fn recall(&self, token: &str, now: i64) -> Option<Verified> {
        let mut kept = self.verified.lock().expect("verified tokens poisoned");
        match kept.get(token) {
            Some(v) if now <= v.expires_at + LEEWAY_SECS as i64 => Some(v.clone()),
            Some(_) => {
                kept.remove(token);
                None
            }
            None => None,
        }
    }

    fn remember(&self, token: &str, verified: &Verified, now: i64) {
        let mut kept = self.verified.lock().expect("verified tokens poisoned");
        if kept.len() >= VERIFIED_KEPT {
            kept.retain(|_, v| now <= v.expires_at + LEEWAY_SECS as i64);
            if kept.len() >= VERIFIED_KEPT {
                kept.clear();
            }
        }
        kept.insert(token.to_owned(), verified.clone());
    }

    /// Checks a token's signature and claims in full.
    fn check(&self, token: &str) -> Result<Verified, AuthError> {
        let invalid = |why: String| AuthError::Invalid(why);
        let header = jsonwebtoken::decode_header(token).map_err(|e| invalid(e.to_string()))?;
        if header.alg != Algorithm::EdDSA {
            return Err(invalid(format!("algorithm {:?} is not accepted", header.alg)));
        }
        let kid = header.kid.unwrap_or_default();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = LEEWAY_SECS;
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "sub", "aud", "iss"]);
        let service = kid.strip_prefix("service:");
        let key = match service {
            Some(name) => {
                validation.set_issuer(&[&kid]);
                self.service_keys.get(name).ok_or_else(|| invalid(format!("no key is trusted for service {name}")))?
            }
            None => {
                validation.set_issuer(&[&self.issuer]);
                self.user_keys
                    .iter()
                    .find(|(id, _)| *id == kid)
                    .map(|(_, k)| k)
                    .ok_or_else(|| invalid("signed with a key this service does not trust".into()))?
            }
        };
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| invalid(e.to_string()))?;
        let claims = data.claims;
        let principal = Principal::from_subject(&claims.sub, &claims.roles)
            .ok_or_else(|| invalid(format!("unknown subject {:?}", claims.sub)))?;
        // A service's key proves that service and nobody else; the issuer's key proves people only.
        match (&principal, service) {
            (Principal::Service { name }, Some(signer)) if name == signer => {}
            (Principal::Service { .. }, _) => {
                return Err(invalid("a service token must be signed by that service".into()));
            }
            (_, Some(_)) => return Err(invalid("a service key cannot sign for a person or an agency".into())),
            _ => {}
        }
        Ok(Verified { principal, token_id: claims.jti, issued_at: claims.iat, expires_at: claims.exp })
    }
}

/// Checks the `[auth]` section as start-up would use it: every key file readable and an Ed25519
/// key of the right half, and the public keys' directory present.
pub fn check_config(cfg: &AuthConfig) -> anyhow::Result<()> {
    anyhow::ensure!(!cfg.token_public_key_files.is_empty(), "auth.token_public_key_files names no key");
    for f in &cfg.token_public_key_files {
        let pem = crate::keys::read("auth.token_public_key_files", Path::new(f))?;
        crate::keys::public_key(&pem).map_err(|e| anyhow::anyhow!("auth.token_public_key_files {f}: {e}"))?;
    }
    let own = crate::keys::read("auth.service_key_file", Path::new(&cfg.service_key_file))?;
    crate::keys::public_of(&own).map_err(|e| anyhow::anyhow!("auth.service_key_file {}: {e}", cfg.service_key_file))?;
    if !cfg.token_signing_key_file.is_empty() {
        let key = crate::keys::read("auth.token_signing_key_file", Path::new(&cfg.token_signing_key_file))?;
        crate::keys::public_of(&key)
            .map_err(|e| anyhow::anyhow!("auth.token_signing_key_file {}: {e}", cfg.token_signing_key_file))?;
    }
    anyhow::ensure!(
        Path::new(&cfg.service_public_keys_dir).is_dir(),
        "auth.service_public_keys_dir {} is not a directory",
        cfg.service_public_keys_dir
    );
    for name in crate::keys::SERVICES {
        let path = Path::new(&cfg.service_public_keys_dir).join(format!("{name}.pub"));
        if let Ok(pem) = std::fs::read_to_string(&path) {
            crate::keys::public_key(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// The id of the verified token, kept beside the principal (revocation is checked by it).
#[derive(Debug, Clone)]
pub struct TokenId(pub String);

/// Attaches a fresh token proving this service to one peer, re-issuing it before it expires,
/// and the current trace context.
#[derive(Clone, Debug)]
pub struct ServiceCredentials {
    identity: Arc<ServiceIdentity>,
    peer: String,
    cached: Arc<Mutex<Option<CachedToken>>>,
}

/// The `authorization` value in use and its expiry (unix seconds).
type CachedToken = (MetadataValue<tonic::metadata::Ascii>, i64);

impl Interceptor for ServiceCredentials {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let now = chrono::Utc::now().timestamp();
        let mut cached = self.cached.lock().expect("credential cache poisoned");
        let fresh = matches!(&*cached, Some((_, exp)) if *exp - now > 300);
        if !fresh {
            let issued = self
                .identity
                .token_for(&self.peer)
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
    use crate::keys::KeyPair;

    struct World {
        tokens: KeyPair,
        services: Vec<(String, KeyPair)>,
    }

    fn world() -> World {
        World {
            tokens: KeyPair::from_seed([1; 32]).unwrap(),
            services: crate::keys::SERVICES
                .iter()
                .enumerate()
                .map(|(i, s)| (s.to_string(), KeyPair::from_seed([10 + i as u8; 32]).unwrap()))
                .collect(),
        }
    }

    impl World {
        fn verifier(&self, service: &str) -> TokenVerifier {
            let services: Vec<(String, String)> =
                self.services.iter().map(|(n, k)| (n.clone(), k.public_pem.clone())).collect();
            TokenVerifier::new(service, "crs", std::slice::from_ref(&self.tokens.public_pem), &services).unwrap()
        }
        fn issuer(&self) -> TokenIssuer {
            TokenIssuer::new(&self.tokens.private_pem, "crs").unwrap()
        }
        fn identity(&self, service: &str) -> ServiceIdentity {
            let key = &self.services.iter().find(|(n, _)| n == service).unwrap().1;
            ServiceIdentity::new(service, &key.private_pem).unwrap()
        }
    }

    #[test]
    fn issued_tokens_verify_to_their_principal_where_their_audience_allows() {
        let w = world();
        let p = Principal::Reviewer { id: "ana".into(), roles: vec![Role::Reviewer, Role::Admin] };
        let issued = w.issuer().issue(&p, 60).unwrap();
        let verified = w.verifier("legal-review").verify(&issued.token).unwrap();
        assert_eq!((verified.principal, verified.token_id), (p, issued.token_id));
        let agency = w.issuer().issue(&Principal::Agency { id: "1".into() }, 60).unwrap();
        assert!(w.verifier("intake").verify(&agency.token).is_ok());
        assert!(
            matches!(w.verifier("legal-review").verify(&agency.token), Err(AuthError::Invalid(_))),
            "not its audience"
        );
    }

    #[test]
    fn a_service_token_is_good_for_its_one_peer_and_proves_only_its_signer() {
        let w = world();
        let token = w.identity("intake").token_for("triage").unwrap().token;
        let verified = w.verifier("triage").verify(&token).unwrap();
        assert_eq!(verified.principal, Principal::Service { name: "intake".into() });
        assert!(w.verifier("legal-review").verify(&token).is_err(), "wrong audience");
        // triage's key cannot speak for intake, and the issuer's key cannot mint services.
        let forged = Claims {
            sub: "service:intake".into(),
            roles: vec![],
            iss: "service:triage".into(),
            aud: vec![audience("legal-review")],
            iat: 0,
            exp: chrono::Utc::now().timestamp() + 60,
            jti: "x".into(),
        };
        let triage_key = EncodingKey::from_ed_pem(w.services[1].1.private_pem.as_bytes()).unwrap();
        let token = sign(&triage_key, "service:triage", &forged).unwrap();
        assert!(w.verifier("legal-review").verify(&token).is_err());
        assert!(w.issuer().issue(&Principal::Service { name: "intake".into() }, 60).is_err());
    }

    #[test]
    fn foreign_keys_and_expired_tokens_are_refused() {
        let w = world();
        let other = TokenIssuer::new(&KeyPair::from_seed([99; 32]).unwrap().private_pem, "crs").unwrap();
        let token = other.issue(&Principal::Agency { id: "1".into() }, 60).unwrap().token;
        assert!(matches!(w.verifier("intake").verify(&token), Err(AuthError::Invalid(_))));
        let old = Claims {
            sub: "agency:1".into(),
            roles: vec![],
            iss: "crs".into(),
            aud: vec![audience("intake")],
            iat: 0,
            exp: chrono::Utc::now().timestamp() - LEEWAY_SECS as i64 - 5,
            jti: "y".into(),
        };
        let key = EncodingKey::from_ed_pem(w.tokens.private_pem.as_bytes()).unwrap();
        let token = sign(&key, &crate::keys::key_id(&w.tokens.public_pem), &old).unwrap();
        assert!(matches!(w.verifier("intake").verify(&token), Err(AuthError::Invalid(_))));
        assert!(w.verifier("intake").verify("not.a.token").is_err());
    }

    #[test]
    fn a_remembered_token_is_accepted_until_it_expires_and_only_as_it_was_signed() {
        let w = world();
        let verifier = w.verifier("intake");
        let issued = w.issuer().issue(&Principal::Agency { id: "1".into() }, 60).unwrap();
        let first = verifier.verify(&issued.token).unwrap();
        assert_eq!(verifier.verify(&issued.token).unwrap(), first, "the same token, remembered");
        // One character of the signature changed: checked in full, and refused.
        let mut tampered: Vec<char> = issued.token.chars().collect();
        let at = tampered.len() - 10;
        tampered[at] = if tampered[at] == 'A' { 'B' } else { 'A' };
        let tampered: String = tampered.into_iter().collect();
        assert!(verifier.verify(&tampered).is_err());
        // Past its expiry and the leeway, a remembered token is forgotten.
        let now = chrono::Utc::now().timestamp();
        assert!(verifier.recall(&issued.token, now).is_some());
        assert!(verifier.recall(&issued.token, first.expires_at + LEEWAY_SECS as i64 + 1).is_none());
        assert!(verifier.recall(&issued.token, now).is_none(), "and checked in full the next time");
        // The store stays bounded.
        for i in 0..VERIFIED_KEPT + 10 {
            verifier.remember(&format!("token-{i}"), &first, now);
        }
        assert!(verifier.verified.lock().unwrap().len() <= VERIFIED_KEPT);
    }

    #[test]
    fn unknown_subjects_and_roles_are_refused() {
        assert_eq!(Principal::from_subject("robot:1", &[]), None);
        assert_eq!(Principal::from_subject("reviewer:1", &["god".into()]), None);
        assert_eq!(Principal::from_subject("agency:", &[]), None);
    }
}
