//! Principals: named callers with a secret and grants, stored in the warehouse.
//!
//! Each principal is one JSON object, `{warehouse}/.floe/principals/{name}.json`, created
//! with a create-only put (two `add`s of one name cannot both win). It holds the grants and
//! a salted HMAC-SHA256 of the secret, never the secret: the secret is 32 random bytes,
//! printed once by `add`. (A slow password hash buys nothing for a random 256-bit secret.)
//! The `.floe/` folder is outside every table, so the S3 signer never signs a request for
//! it and no namespace listing shows it.

use std::sync::Arc;

use futures::TryStreamExt;
use hmac::{Hmac, Mac};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use floe_table_format::ident::validate_name;
use floe_table_format::Warehouse;

use crate::error::{Error, Result};
use crate::grants::Grants;

type HmacSha256 = Hmac<Sha256>;

/// A stored principal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct Principal {
    /// Its name (the OAuth client id, the Postgres user).
    pub name: String,
    /// Its grants, as given (`read:fleet.*`, `admin`, …).
    pub grants: Vec<String>,
    /// Hex salt of the secret's hash.
    pub salt: String,
    /// Hex HMAC-SHA256(salt, secret).
    pub secret_hash: String,
    /// When it was created (ms since the epoch).
    pub created_ms: i64,
}

impl Principal {
    /// Its parsed grants (validated when it was added).
    pub fn grants(&self) -> Grants {
        Grants::parse(&self.grants).unwrap_or_default()
    }

    /// Whether `secret` is this principal's, compared in constant time.
    pub fn verify(&self, secret: &str) -> bool {
        let (Ok(salt), Ok(expected)) = (hex::decode(&self.salt), hex::decode(&self.secret_hash))
        else {
            return false;
        };
        let Ok(mut mac) = HmacSha256::new_from_slice(&salt) else {
            return false;
        };
        mac.update(secret.as_bytes());
        mac.verify_slice(&expected).is_ok()
    }
}

fn hash(salt: &[u8], secret: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(salt).expect("HMAC takes keys of any length");
    mac.update(secret.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The principals of one warehouse.
#[derive(Debug, Clone)]
pub struct PrincipalStore {
    warehouse: Warehouse,
}

impl PrincipalStore {
    /// The principals stored in `warehouse`.
    pub fn new(warehouse: Warehouse) -> Self {
        Self { warehouse }
    }

    fn store(&self) -> &Arc<dyn ObjectStore> {
        self.warehouse.store()
    }

    fn folder(&self) -> Result<Path> {
        Ok(self
            .warehouse
            .object_path(&self.warehouse.location(".floe/principals"))?)
    }

    fn object(&self, name: &str) -> Result<Path> {
        Ok(self.warehouse.object_path(
            &self
                .warehouse
                .location(&format!(".floe/principals/{name}.json")),
        )?)
    }

    /// Create principal `name` with `grants`; returns it and its secret (shown once).
    /// Refused if the name is taken or a grant is invalid; nothing is written then.
    pub async fn add(&self, name: &str, grants: &[String]) -> Result<(Principal, String)> {
        validate_name(name)?;
        Grants::parse(grants)?;
        if grants.is_empty() {
            return Err(Error::BadRequest(format!(
                "principal {name}: give at least one --grant (read:PATTERN, write:PATTERN or admin)"
            )));
        }
        let mut rng = rand::rng();
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        let secret = hex::encode(secret);
        let mut salt = [0u8; 16];
        rng.fill_bytes(&mut salt);
        let principal = Principal {
            name: name.to_string(),
            grants: grants.to_vec(),
            salt: hex::encode(salt),
            secret_hash: hash(&salt, &secret),
            created_ms: now_ms(),
        };
        let body = serde_json::to_vec_pretty(&principal).expect("a principal serializes");
        let path = self.object(name)?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store()
            .put_opts(&path, PutPayload::from(body), opts)
            .await
        {
            Ok(_) => Ok((principal, secret)),
            Err(object_store::Error::AlreadyExists { .. }) => Err(Error::Conflict(format!(
                "principal {name} already exists (revoke it first to replace it)"
            ))),
            Err(source) => Err(floe_table_format::Error::Write {
                location: path.to_string(),
                source,
            }
            .into()),
        }
    }

    /// Principal `name`, if it exists.
    pub async fn get(&self, name: &str) -> Result<Option<Principal>> {
        if validate_name(name).is_err() {
            return Ok(None);
        }
        let path = self.object(name)?;
        let bytes = match self.store().get(&path).await {
            Ok(r) => r.bytes().await,
            Err(e) => Err(e),
        };
        match bytes {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| Error::Internal(format!("principal object {path} is not valid: {e}"))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(floe_table_format::Error::Read {
                location: path.to_string(),
                source,
            }
            .into()),
        }
    }

    /// Every principal, by name.
    pub async fn list(&self) -> Result<Vec<Principal>> {
        let folder = self.folder()?;
        let metas: Vec<_> = self
            .store()
            .list(Some(&folder))
            .try_collect()
            .await
            .map_err(|source| floe_table_format::Error::List {
                location: folder.to_string(),
                source,
            })?;
        let mut out = Vec::new();
        for m in metas {
            let Some(name) = m.location.filename().and_then(|f| f.strip_suffix(".json")) else {
                continue;
            };
            if let Some(p) = self.get(name).await? {
                out.push(p);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Delete principal `name`; its tokens stop working at once.
    pub async fn revoke(&self, name: &str) -> Result<()> {
        if self.get(name).await?.is_none() {
            return Err(Error::NotFound(format!("principal {name} does not exist")));
        }
        let path = self.object(name)?;
        match self.store().delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(floe_table_format::Error::Write {
                location: path.to_string(),
                source,
            }
            .into()),
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn secrets_are_stored_only_as_salted_hashes() {
        let wh = Warehouse::open("memory://principals-test").unwrap();
        let store = PrincipalStore::new(wh.clone());
        let (p, secret) = store
            .add("dev_042", &["write:fleet.dev_042".to_string()])
            .await
            .unwrap();
        let raw = wh
            .store()
            .get(&store.object("dev_042").unwrap())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains(&secret));
        let loaded = store.get("dev_042").await.unwrap().unwrap();
        assert_eq!(loaded, p);
        assert!(loaded.verify(&secret));
        assert!(!loaded.verify(&secret[1..]));
        assert!(!loaded.verify(""));
        // Same secret, other salt: other hash.
        let (q, _) = store
            .add("dev_043", &["read:fleet".to_string()])
            .await
            .unwrap();
        assert_ne!(p.salt, q.salt);
        assert!(matches!(
            store.add("dev_042", &["admin".to_string()]).await,
            Err(Error::Conflict(_))
        ));
        assert!(store.add("Bad", &["admin".to_string()]).await.is_err());
        assert!(store.add("x", &["read:*".to_string()]).await.is_err());
        assert_eq!(store.list().await.unwrap().len(), 2);
        store.revoke("dev_042").await.unwrap();
        assert!(store.get("dev_042").await.unwrap().is_none());
        assert!(matches!(
            store.revoke("dev_042").await,
            Err(Error::NotFound(_))
        ));
    }
}
