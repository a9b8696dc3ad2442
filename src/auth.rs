//! Authentication: JWT -> [`Principal`].
//!
//! Owns token verification (HS256 with the configured secret, and RS256 /
//! ES256 with a configured PEM public key; optional `aud` and `iss` checks;
//! a clock leeway), the claims chatgate reads (`sub`, `role`, `sid`, `exp`),
//! and minting (dev-mode tokens and the customer tokens the engine hands
//! out). It never logs a token.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

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
