//! Authentication: OAuth2 client credentials in, short-lived bearer tokens out.
//!
//! `POST /v1/oauth/tokens` takes `grant_type=client_credentials` with `client_id` (the
//! principal's name) and `client_secret`, and returns an HS256 JWT naming the principal,
//! valid for the server's token lifetime. Every other endpoint wants
//! `Authorization: Bearer <token>`; for scripts, the bearer may also be `NAME:SECRET`
//! itself. The principal is looked up on every request (cached for a few seconds at
//! most), so a revoked principal's tokens stop working and grant changes apply.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::grants::Grants;
use crate::principals::{Principal, PrincipalStore};
use crate::App;

/// The claims of a Floe token.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// The principal.
    sub: String,
    /// Expiry, seconds since the epoch.
    exp: u64,
    /// Issued at.
    iat: u64,
    /// A fresh id per token.
    jti: String,
    /// Which incarnation of the principal the token was issued to (a digest of its salt),
    /// so that a revoked name added again does not revive the old tokens.
    pv: String,
}

/// Issues and checks tokens, and finds principals.
pub struct Authenticator {
    principals: PrincipalStore,
    encoding: EncodingKey,
    decoding: DecodingKey,
    token_ttl: Duration,
    cache_ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, Option<Principal>)>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("token_ttl", &self.token_ttl)
            .finish_non_exhaustive()
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The principal's name.
    pub name: String,
    /// Its grants.
    pub grants: Grants,
    /// The incarnation of the principal (see the token's `pv` claim).
    pub incarnation: String,
}

impl Caller {
    fn of(p: &Principal) -> Caller {
        use sha2::Digest;
        Caller {
            name: p.name.clone(),
            grants: p.grants(),
            incarnation: hex::encode(&sha2::Sha256::digest(p.salt.as_bytes())[..8]),
        }
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Authenticator {
    /// Tokens signed with `key`, valid for `token_ttl`; principals re-read after
    /// `cache_ttl`.
    pub fn new(
        principals: PrincipalStore,
        key: &[u8],
        token_ttl: Duration,
        cache_ttl: Duration,
    ) -> Self {
        Self {
            principals,
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            token_ttl,
            cache_ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The token lifetime.
    pub fn token_ttl(&self) -> Duration {
        self.token_ttl
    }

    async fn principal(&self, name: &str) -> Result<Option<Principal>> {
        if !self.cache_ttl.is_zero() {
            let cache = self.cache.lock().expect("the cache lock is never poisoned");
            if let Some((at, p)) = cache.get(name) {
                if at.elapsed() < self.cache_ttl {
                    return Ok(p.clone());
                }
            }
        }
        let p = self.principals.get(name).await?;
        if !self.cache_ttl.is_zero() {
            let mut cache = self.cache.lock().expect("the cache lock is never poisoned");
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(name.to_string(), (Instant::now(), p.clone()));
        }
        Ok(p)
    }

    /// Check a client id and secret; the same answer for an unknown name and a wrong
    /// secret, so the answer reveals no principal's existence.
    pub async fn check_credentials(&self, name: &str, secret: &str) -> Result<Caller> {
        match self.principals.get(name).await? {
            Some(p) if p.verify(secret) => Ok(Caller::of(&p)),
            _ => Err(Error::Unauthorized(
                "invalid client credentials".to_string(),
            )),
        }
    }

    /// The principal `name` as it is now (through the cache), or None when it was revoked.
    pub async fn current(&self, name: &str) -> Result<Option<Caller>> {
        Ok(self.principal(name).await?.map(|p| Caller::of(&p)))
    }

    /// A token for `caller`.
    pub fn issue(&self, caller: &Caller) -> Result<String> {
        let iat = now_secs();
        let claims = Claims {
            sub: caller.name.clone(),
            iat,
            exp: iat + self.token_ttl.as_secs().max(1),
            jti: uuid::Uuid::new_v4().to_string(),
            pv: caller.incarnation.clone(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| Error::Internal(format!("cannot sign a token: {e}")))
    }

    /// The caller a bearer value names: a token this server issued, or `NAME:SECRET`.
    pub async fn caller(&self, bearer: &str) -> Result<Caller> {
        if let Some((name, secret)) = bearer.split_once(':') {
            return self.check_credentials(name, secret).await;
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(bearer, &self.decoding, &validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    Error::Unauthorized("the token has expired; get a new one".to_string())
                }
                _ => Error::Unauthorized("the token is not valid".to_string()),
            },
        )?;
        match self.principal(&data.claims.sub).await? {
            Some(p) if Caller::of(&p).incarnation == data.claims.pv => Ok(Caller::of(&p)),
            _ => Err(Error::Unauthorized(
                "the token's principal has been revoked".to_string(),
            )),
        }
    }
}

impl FromRequestParts<std::sync::Arc<App>> for Caller {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &std::sync::Arc<App>,
    ) -> Result<Self, Self::Rejection> {
        let result = authenticate(parts, app).await;
        if let Err(e) = &result {
            // Refused before any handler runs: logged here, as every request is.
            tracing::info!(
                principal = "",
                endpoint = %parts.uri.path(),
                status = e.status().0.as_u16(),
                reason = %e,
                "refused"
            );
        }
        result
    }
}

/// The caller a request's `Authorization` header names.
async fn authenticate(parts: &mut Parts, app: &std::sync::Arc<App>) -> Result<Caller> {
    {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                Error::Unauthorized(
                    "missing Authorization header (get a token at /v1/oauth/tokens)".to_string(),
                )
            })?;
        let value = header
            .to_str()
            .map_err(|_| Error::Unauthorized("the Authorization header is not text".to_string()))?;
        let bearer = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| {
                Error::Unauthorized("the Authorization header is not a Bearer token".to_string())
            })?;
        let caller = app.auth.caller(bearer.trim()).await?;
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}
