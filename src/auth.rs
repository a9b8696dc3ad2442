//! Authentication: JWT -> [`Principal`].
//!
//! Owns token verification (HS256 with the configured secret, and RS256 /
//! ES256 with a configured PEM public key; optional `aud` and `iss` checks;
//! a clock leeway), the claims chatgate reads (`sub`, `role`, `sid`, `exp`),
//! minting (dev-mode tokens and the customer tokens the engine hands out),
//! and the [`Authenticated`] extractor that admits a request: a bearer
//! token of one of the endpoint's roles, every refusal counted in
//! `chatgate_auth_rejects_total` by reason. It never logs a token.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{FromRef, FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::metrics::Metrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Agent,
    Customer,
    Supervisor,
    Service,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Customer => "customer",
            Role::Supervisor => "supervisor",
            Role::Service => "service",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub exp: u64,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub role: Role,
    pub sub: String,
    pub session: Option<String>,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing token")]
    Missing,
    #[error("invalid token")]
    Invalid,
    #[error("expired token")]
    Expired,
    #[error("a customer token needs a sid")]
    NoSession,
    #[error("this endpoint does not accept this role")]
    WrongRole,
}

impl AuthError {
    /// 403 for a role the endpoint does not accept, 401 otherwise.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::WrongRole => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Invalid => "invalid",
            AuthError::Expired => "expired",
            AuthError::NoSession => "no_sid",
            AuthError::WrongRole => "wrong_role",
        }
    }
}

/// The refusal of [`Authenticated`]: the gateway's `{"error": ...}` body.
/// (The engine's routes answer in their own shape: they take
/// `Result<Authenticated<_>, AuthError>`.)
impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        (self.status(), Json(json!({ "error": self.to_string() }))).into_response()
    }
}

/// A configured key chatgate cannot verify with (it refuses to start).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("CHATGATE_JWT_PUBLIC_KEY is neither an RSA nor an EC public key in PEM")]
    NotAPublicKey,
}

/// Checks on top of the signature and `exp` (all off by default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimChecks {
    /// Required `aud` (one of the token's audiences).
    pub audience: Option<String>,
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Seconds tolerated past `exp` and before `nbf`.
    pub leeway_secs: u64,
}

/// Verifies and mints tokens.
pub struct Authenticator {
    secret: Vec<u8>,
    public_key: Option<(DecodingKey, Algorithm)>,
    checks: ClaimChecks,
}

/// What a minted token carries: the claims, plus `aud` and `iss` when the
/// authenticator requires them (its own tokens must pass its own checks).
#[derive(Serialize)]
struct MintedClaims<'a> {
    #[serde(flatten)]
    claims: &'a Claims,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
}

impl Authenticator {
    /// `secret` signs and verifies HS256; `public_key`, a PEM, verifies
    /// RS256 or ES256 tokens as well.
    pub fn new(secret: &[u8], public_key_pem: Option<&str>) -> Result<Self, KeyError> {
        let public_key = match public_key_pem {
            None => None,
            Some(pem) => Some(parse_public_key(pem)?),
        };
        Ok(Self {
            secret: secret.to_vec(),
            public_key,
            checks: ClaimChecks::default(),
        })
    }

    /// Adds `aud` / `iss` checks and a leeway.
    pub fn with_checks(mut self, checks: ClaimChecks) -> Self {
        self.checks = checks;
        self
    }

    /// Seconds a token stays valid past its `exp`.
    pub fn leeway_secs(&self) -> u64 {
        self.checks.leeway_secs
    }

    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        let (key, alg) = match header.alg {
            Algorithm::HS256 if !self.secret.is_empty() => {
                (DecodingKey::from_secret(&self.secret), Algorithm::HS256)
            }
            alg => match &self.public_key {
                Some((key, expected)) if *expected == alg => (key.clone(), alg),
                _ => return Err(AuthError::Invalid),
            },
        };
        let data =
            decode::<Claims>(token, &key, &self.validation(alg)).map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid,
            })?;
        let c = data.claims;
        if c.role == Role::Customer && c.sid.as_deref().is_none_or(str::is_empty) {
            return Err(AuthError::NoSession);
        }
        Ok(Principal {
            role: c.role,
            sub: c.sub,
            session: c.sid,
            exp: c.exp,
        })
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut validation = Validation::new(alg);
        validation.leeway = self.checks.leeway_secs;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &self.checks.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &self.checks.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        validation
    }

    /// Mints an HS256 token valid for `ttl_secs`.
    pub fn mint(&self, role: Role, sub: &str, sid: Option<&str>, ttl_secs: u64) -> String {
        let claims = Claims {
            sub: sub.to_owned(),
            role,
            sid: sid.map(str::to_owned),
            exp: now_secs() + ttl_secs,
        };
        // HS256 encoding of a serializable struct with a non-empty key
        // cannot fail.
        let minted = MintedClaims {
            claims: &claims,
            aud: self.checks.audience.as_deref(),
            iss: self.checks.issuer.as_deref(),
        };
        encode(
            &Header::new(Algorithm::HS256),
            &minted,
            &EncodingKey::from_secret(&self.secret),
        )
        .unwrap_or_default()
    }
}

fn parse_public_key(pem: &str) -> Result<(DecodingKey, Algorithm), KeyError> {
    if let Ok(k) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
        return Ok((k, Algorithm::RS256));
    }
    if let Ok(k) = DecodingKey::from_ec_pem(pem.as_bytes()) {
        return Ok((k, Algorithm::ES256));
    }
    Err(KeyError::NotAPublicKey)
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The bearer token of a request: the `Authorization: Bearer` header, else
/// the `access_token` query parameter.
pub fn bearer_token<'a>(
    authorization: Option<&'a str>,
    access_token: Option<&'a str>,
) -> Option<&'a str> {
    authorization
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .or(access_token)
        .filter(|t| !t.is_empty())
}

/// The roles an endpoint accepts, as a type: [`Authenticated`]'s parameter.
pub trait RoleSet: Send + Sync + 'static {
    const ROLES: &'static [Role];
    /// Whether the token may also come as the `access_token` query
    /// parameter: only on `/ws`, since browsers cannot set headers on a
    /// WebSocket. Elsewhere a token in a URL (and so in access logs) is
    /// not looked at.
    const QUERY_TOKEN: bool = false;
}

/// The role sets of chatgate's endpoints.
pub mod roles {
    use super::{Role, RoleSet};

    /// An agent (the engine's agent API).
    pub struct Agent;
    /// A customer (the widget's operations).
    pub struct Customer;
    /// An upstream publishing events (`POST /upstream/events`).
    pub struct Service;
    /// Who may read the directory.
    pub struct AgentOrSupervisor;
    /// Who may open `/ws`, token in the header or the query.
    pub struct Subscriber;

    impl RoleSet for Agent {
        const ROLES: &'static [Role] = &[Role::Agent];
    }
    impl RoleSet for Customer {
        const ROLES: &'static [Role] = &[Role::Customer];
    }
    impl RoleSet for Service {
        const ROLES: &'static [Role] = &[Role::Service];
    }
    impl RoleSet for AgentOrSupervisor {
        const ROLES: &'static [Role] = &[Role::Agent, Role::Supervisor];
    }
    impl RoleSet for Subscriber {
        const ROLES: &'static [Role] = &[Role::Agent, Role::Customer, Role::Supervisor];
        const QUERY_TOKEN: bool = true;
    }
}

/// What [`Authenticated`] takes from a router's state (by `FromRef`): the
/// verifier, and the counters its refusals go to.
#[derive(Clone)]
pub struct Gate {
    pub authenticator: Arc<Authenticator>,
    pub metrics: Arc<Metrics>,
}

impl Gate {
    /// Verifies `token` and checks that its role is one of `roles`.
    /// Refusals are counted and logged by reason only: a token is never
    /// logged.
    pub fn admit(&self, token: Option<&str>, roles: &[Role]) -> Result<Principal, AuthError> {
        let token = token.ok_or(AuthError::Missing);
        let principal = token
            .and_then(|t| self.authenticator.verify(t))
            .inspect_err(|e| {
                self.metrics.auth_rejects.inc(e.label());
                tracing::debug!(reason = e.label(), "authentication refused");
            })?;
        if !roles.contains(&principal.role) {
            self.metrics.auth_rejects.inc(AuthError::WrongRole.label());
            tracing::debug!(role = principal.role.as_str(), "role refused");
            return Err(AuthError::WrongRole);
        }
        Ok(principal)
    }
}

/// A request's caller, authenticated by its bearer token (the
/// `Authorization: Bearer` header; on `/ws`, else the `access_token` query
/// parameter) and of one of `R`'s roles. An axum extractor over any state
/// that gives a [`Gate`].
pub struct Authenticated<R: RoleSet> {
    pub principal: Principal,
    roles: PhantomData<fn() -> R>,
}

#[derive(Deserialize)]
struct TokenQuery {
    access_token: Option<String>,
}

impl<S, R> FromRequestParts<S> for Authenticated<R>
where
    S: Send + Sync,
    R: RoleSet,
    Gate: FromRef<S>,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let authorization = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        // A query that does not parse carries no token.
        let query = match R::QUERY_TOKEN {
            true => Query::<TokenQuery>::try_from_uri(&parts.uri).ok(),
            false => None,
        };
        let access_token = query.as_ref().and_then(|q| q.access_token.as_deref());
        let principal =
            Gate::from_ref(state).admit(bearer_token(authorization, access_token), R::ROLES)?;
        Ok(Self {
            principal,
            roles: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mint_then_verify_and_refusals() {
        let auth = Authenticator::new(b"secret-one", None).unwrap();
        let t = auth.mint(Role::Customer, "p1", Some("s1"), 60);
        let p = auth.verify(&t).unwrap();
        assert_eq!(p.role, Role::Customer);
        assert_eq!(p.session.as_deref(), Some("s1"));

        let other = Authenticator::new(b"secret-two", None).unwrap();
        assert_eq!(other.verify(&t), Err(AuthError::Invalid));
        assert_eq!(auth.verify("garbage"), Err(AuthError::Invalid));
        let no_sid = auth.mint(Role::Customer, "p1", None, 60);
        assert_eq!(auth.verify(&no_sid), Err(AuthError::NoSession));
    }

    #[test]
    fn expired_tokens_are_refused() {
        let auth = Authenticator::new(b"s", None).unwrap();
        let claims = Claims {
            sub: "a".into(),
            role: Role::Agent,
            sid: None,
            exp: now_secs() - 10,
        };
        let t = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"s"),
        )
        .unwrap();
        assert_eq!(auth.verify(&t), Err(AuthError::Expired));
    }
}
