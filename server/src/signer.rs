//! S3 remote signing (`POST /v1/aws/s3/sign`): clients that hold no S3 keys send the
//! request they are about to make; the server signs it with its own credential (SigV4,
//! through object_store's `AwsAuthorizer`) only if it lies inside the caller's grants:
//!
//! - the object must be inside a table's `data/` or `metadata/` folder of this warehouse
//!   (never `.floe/`, never another bucket);
//! - `GET`/`HEAD`: a table the caller may read;
//! - `PUT`/`POST` (multipart): a table the caller may write; never a copy
//!   (`x-amz-copy-source`), and never table metadata (`*.metadata.json`, the version
//!   hint): in the Hadoop layout a created version *is* a commit, so a client that could
//!   create one would bypass the REST commit's checks. Clients commit through the catalog;
//!   they write data files, manifests and manifest lists;
//! - `DELETE`: admins only.
//!
//! The answer holds the headers to add (`Authorization`, `x-amz-date`,
//! `x-amz-content-sha256`, a session token); the URI is returned unchanged.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::Json;
use object_store::aws::{AwsAuthorizer, AwsCredential};
use object_store::client::HttpRequestBody;
use serde::Deserialize;
use serde_json::json;

use floe_table_format::warehouse::StoreSpec;
use floe_table_format::{Namespace, TableIdent, Warehouse};

use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::grants::Level;
use crate::App;

/// The server's S3 credential and where its warehouse lives.
#[derive(Debug)]
pub struct Signer {
    credential: AwsCredential,
    region: String,
    endpoint: Option<String>,
    bucket: String,
    /// The warehouse root inside the bucket ("" or "prefix/…", no trailing slash).
    root: String,
}

impl Signer {
    /// A signer for an S3 warehouse, from the standard `AWS_*` variables; None for other
    /// warehouses or without keys.
    pub fn from_env(warehouse: &Warehouse) -> Option<Signer> {
        let StoreSpec::S3 { bucket } = warehouse.spec() else {
            return None;
        };
        let key_id = std::env::var("AWS_ACCESS_KEY_ID").ok()?;
        let secret_key = std::env::var("AWS_SECRET_ACCESS_KEY").ok()?;
        let token = std::env::var("AWS_SESSION_TOKEN").ok();
        let region = std::env::var("AWS_REGION")
            .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|_| "us-east-1".to_string());
        let endpoint = std::env::var("AWS_ENDPOINT_URL")
            .or_else(|_| std::env::var("AWS_ENDPOINT"))
            .ok();
        Some(Signer::new(
            AwsCredential {
                key_id,
                secret_key,
                token,
            },
            region,
            endpoint,
            warehouse,
            bucket,
        ))
    }

    /// A signer with an explicit credential.
    pub fn new(
        credential: AwsCredential,
        region: String,
        endpoint: Option<String>,
        warehouse: &Warehouse,
        bucket: &str,
    ) -> Signer {
        let root = warehouse
            .url()
            .strip_prefix(&format!("s3://{bucket}"))
            .unwrap_or("")
            .trim_matches('/')
            .to_string();
        Signer {
            credential,
            region,
            endpoint: endpoint.map(|e| e.trim_end_matches('/').to_string()),
            bucket: bucket.to_string(),
            root,
        }
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The S3-compatible endpoint, if not AWS itself.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// The object key a request URI addresses in this signer's bucket (path-style or
    /// virtual-hosted), percent-decoded; None when it is another bucket or host.
    ///
    /// The host decides the bucket, as S3 does: with an S3-compatible endpoint, only
    /// path-style requests to that endpoint; on AWS, `{bucket}.s3[.{region}].amazonaws.com`
    /// (virtual-hosted) or `s3[.{region}].amazonaws.com/{bucket}/` (path-style). A path
    /// that names this bucket on another bucket's host is not this bucket's.
    fn key_of(&self, uri: &url::Url) -> Option<String> {
        if !matches!(uri.scheme(), "http" | "https") {
            return None;
        }
        let host = uri.host_str()?;
        let path = uri.path();
        let bucket_path = format!("/{}/", self.bucket);
        let raw = match &self.endpoint {
            Some(endpoint) => {
                let endpoint = url::Url::parse(endpoint).ok()?;
                if endpoint.host_str() != Some(host)
                    || endpoint.port_or_known_default() != uri.port_or_known_default()
                {
                    return None;
                }
                path.strip_prefix(&bucket_path)?
            }
            None => {
                let (b, r) = (&self.bucket, &self.region);
                let virtual_hosts = [
                    format!("{b}.s3.amazonaws.com"),
                    format!("{b}.s3.{r}.amazonaws.com"),
                ];
                let path_hosts = [
                    "s3.amazonaws.com".to_string(),
                    format!("s3.{r}.amazonaws.com"),
                ];
                if virtual_hosts.iter().any(|h| h == host) {
                    path.strip_prefix('/')?
                } else if path_hosts.iter().any(|h| h == host) {
                    path.strip_prefix(&bucket_path)?
                } else {
                    return None;
                }
            }
        }
        .to_string();
        let decoded = percent_encoding::percent_decode_str(&raw)
            .decode_utf8()
            .ok()?
            .to_string();
        Some(decoded)
    }

    /// Where `key` lies: (table, folder, rest) for an object inside a table's `data/` or
    /// `metadata/` folder under the warehouse root; None otherwise.
    fn locate(&self, key: &str) -> Option<(TableIdent, String, String)> {
        let relative = if self.root.is_empty() {
            key
        } else {
            key.strip_prefix(&self.root)?.strip_prefix('/')?
        };
        let segments: Vec<&str> = relative.split('/').collect();
        let at = segments
            .iter()
            .position(|s| *s == "data" || *s == "metadata")?;
        if at < 2 || at + 1 >= segments.len() {
            return None;
        }
        let rest = &segments[at + 1..];
        if rest.iter().any(|s| s.is_empty() || *s == "." || *s == "..") {
            return None;
        }
        let ns = Namespace::new(segments[..at - 1].iter().copied()).ok()?;
        let ident = TableIdent::new(ns, segments[at - 1]).ok()?;
        Some((ident, segments[at].to_string(), rest.join("/")))
    }

    /// Decide whether `caller` may make this request; the reason when not.
    pub fn authorize(
        &self,
        caller: &Caller,
        method: &Method,
        uri: &url::Url,
        headers: &BTreeMap<String, Vec<String>>,
    ) -> Result<()> {
        let refuse = |why: String| Err(Error::Forbidden(format!("will not sign: {why}")));
        let Some(key) = self.key_of(uri) else {
            return refuse(format!("{uri} is not in this warehouse's bucket"));
        };
        let Some((ident, folder, rest)) = self.locate(&key) else {
            return refuse(format!(
                "{key} is not inside a table's data/ or metadata/ folder"
            ));
        };
        let query: Vec<String> = uri.query_pairs().map(|(k, _)| k.to_string()).collect();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.join(","))
        };
        let admin = caller.grants.is_admin();
        match *method {
            Method::GET | Method::HEAD => {
                if let Some(q) = query
                    .iter()
                    .find(|q| !matches!(q.as_str(), "partNumber" | "versionId"))
                {
                    return refuse(format!("query '{q}' on {key}"));
                }
                if !caller.grants.allows(Level::Read, &ident) {
                    return refuse(format!(
                        "principal {} has no read grant on {ident}",
                        caller.name
                    ));
                }
            }
            Method::PUT | Method::POST => {
                if !caller.grants.allows(Level::Write, &ident) {
                    return refuse(format!(
                        "principal {} has no write grant on {ident}",
                        caller.name
                    ));
                }
                if header("x-amz-copy-source").is_some() {
                    return refuse("server-side copies".to_string());
                }
                if let Some(q) = query
                    .iter()
                    .find(|q| !matches!(q.as_str(), "uploads" | "uploadId" | "partNumber"))
                {
                    return refuse(format!("query '{q}' on {key}"));
                }
                if *method == Method::POST && query.is_empty() {
                    return refuse(format!("POST without a multipart upload on {key}"));
                }
                // Metadata versions and the hint are the server's: in the Hadoop layout a
                // created `v{N+1}` *is* a commit, and a client that could create one would
                // bypass every check of the REST commit (requirements, confinement). Clients
                // commit through `POST …/tables/{t}`; they write data files, manifests and
                // manifest lists only.
                let is_table_metadata = folder == "metadata"
                    && (rest == "version-hint.text" || rest.ends_with(".metadata.json"));
                if is_table_metadata && !admin {
                    return refuse(format!(
                        "{key} is table metadata: commits go through the catalog (POST …/tables/{{table}}), not through signed puts"
                    ));
                }
            }
            Method::DELETE if admin => {}
            Method::DELETE => {
                return refuse(format!("principal {} may not delete ({key})", caller.name))
            }
            _ => return refuse(format!("method {method}")),
        }
        Ok(())
    }

    /// Sign the request: the headers to add.
    pub fn sign(
        &self,
        method: Method,
        uri: &url::Url,
        headers: &BTreeMap<String, Vec<String>>,
    ) -> Result<BTreeMap<String, Vec<String>>> {
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri(uri.as_str())
            .body(HttpRequestBody::empty())
            .map_err(|e| Error::BadRequest(format!("cannot sign {uri}: {e}")))?;
        let mut digest = None;
        let mut sign_payload = false;
        for (name, values) in headers {
            let lower = name.to_ascii_lowercase();
            if matches!(
                lower.as_str(),
                "authorization" | "x-amz-date" | "x-amz-security-token" | "host"
            ) {
                continue;
            }
            let value = values.join(", ");
            if lower == "x-amz-content-sha256" {
                if let Ok(d) = hex::decode(&value) {
                    if d.len() == 32 {
                        digest = Some(d);
                        sign_payload = true;
                    }
                }
            }
            let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(lower.as_bytes()),
                HeaderValue::from_str(&value),
            ) else {
                return Err(Error::BadRequest(format!("header {name} is not valid")));
            };
            request.headers_mut().append(n, v);
        }
        let before: HeaderMap = request.headers().clone();
        AwsAuthorizer::new(&self.credential, "s3", &self.region)
            .with_sign_payload(sign_payload)
            .authorize(&mut request, digest.as_deref());
        let mut added = BTreeMap::new();
        for (name, value) in request.headers() {
            if name == "host" || before.get(name) == Some(value) {
                continue;
            }
            let Ok(v) = value.to_str() else { continue };
            added
                .entry(name.as_str().to_string())
                .or_insert_with(Vec::new)
                .push(v.to_string());
        }
        Ok(added)
    }
}

#[derive(Deserialize)]
struct SignRequest {
    #[allow(dead_code)]
    region: Option<String>,
    uri: String,
    method: String,
    #[serde(default)]
    headers: BTreeMap<String, Vec<String>>,
}

/// `POST /v1/aws/s3/sign`.
pub async fn sign(
    State(app): State<Arc<App>>,
    caller: Caller,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let result = (|| {
        let Some(signer) = &app.signer else {
            return Err(Error::Unsupported(
                "this warehouse is not on S3 with server credentials: there is nothing to sign"
                    .into(),
            ));
        };
        let body =
            body.map_err(|e| Error::BadRequest(format!("cannot read the sign body: {e}")))?;
        let req: SignRequest = serde_json::from_slice(&body)
            .map_err(|e| Error::BadRequest(format!("invalid sign request: {e}")))?;
        let uri = url::Url::parse(&req.uri)
            .map_err(|e| Error::BadRequest(format!("invalid uri '{}': {e}", req.uri)))?;
        let method = Method::from_bytes(req.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| Error::BadRequest(format!("invalid method '{}'", req.method)))?;
        signer.authorize(&caller, &method, &uri, &req.headers)?;
        let headers = signer.sign(method.clone(), &uri, &req.headers)?;
        tracing::info!(principal = %caller.name, endpoint = "sign", %method, uri = %uri, "signed");
        Ok(Json(json!({ "uri": req.uri, "headers": headers })).into_response())
    })();
    match result {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(principal = %caller.name, endpoint = "sign", reason = %e, "refused");
            e.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grants::Grants;

    fn signer() -> Signer {
        signer_at(Some("http://127.0.0.1:4566"))
    }

    fn signer_at(endpoint: Option<&str>) -> Signer {
        let wh = Warehouse::open("memory://signer-test").unwrap();
        let mut s = Signer::new(
            AwsCredential {
                key_id: "AKID".into(),
                secret_key: "SECRET".into(),
                token: None,
            },
            "us-east-1".into(),
            endpoint.map(str::to_string),
            &wh,
            "bucket",
        );
        s.root = "wh".into();
        s
    }

    fn caller(grants: &[&str]) -> Caller {
        Caller {
            name: "p".into(),
            grants: Grants::parse(grants).unwrap(),
            incarnation: String::new(),
        }
    }

    fn ok(c: &Caller, method: Method, uri: &str, headers: &[(&str, &str)]) -> bool {
        let h = headers
            .iter()
            .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
            .collect();
        signer()
            .authorize(c, &method, &url::Url::parse(uri).unwrap(), &h)
            .is_ok()
    }

    const BASE: &str = "http://127.0.0.1:4566/bucket/wh";

    #[test]
    fn readers_get_reads_of_their_tables_only() {
        let party = caller(&["read:site_17.*"]);
        let f = format!("{BASE}/site_17/c1/data/day=1/f.parquet");
        assert!(ok(&party, Method::GET, &f, &[]));
        assert!(ok(&party, Method::HEAD, &f, &[]));
        assert!(!ok(&party, Method::PUT, &f, &[]));
        assert!(!ok(&party, Method::DELETE, &f, &[]));
        assert!(!ok(
            &party,
            Method::GET,
            &format!("{BASE}/fleet/d1/data/f.parquet"),
            &[]
        ));
        assert!(!ok(
            &party,
            Method::GET,
            &format!("{BASE}/site_17/c1/data/../../../fleet/d1/data/f"),
            &[]
        ));
        assert!(!ok(
            &party,
            Method::GET,
            &format!("{BASE}/site_17/c1/data/%2e%2e/x"),
            &[]
        ));
        assert!(!ok(
            &party,
            Method::GET,
            &format!("{BASE}/.floe/principals/admin.json"),
            &[]
        ));
        assert!(!ok(
            &party,
            Method::GET,
            &format!("{BASE}/site_17/c1/data/f?list-type=2"),
            &[]
        ));
        assert!(!ok(
            &party,
            Method::GET,
            "http://127.0.0.1:4566/other/wh/site_17/c1/data/f",
            &[]
        ));
        assert!(!ok(
            &party,
            Method::GET,
            "http://127.0.0.1:4566/bucket/site_17/c1/data/f",
            &[]
        ));
    }

    #[test]
    fn writers_put_into_their_own_table_and_never_delete() {
        let dev = caller(&["write:fleet.dev_042"]);
        let own = format!("{BASE}/fleet/dev_042");
        assert!(ok(&dev, Method::PUT, &format!("{own}/data/f.parquet"), &[]));
        assert!(ok(
            &dev,
            Method::PUT,
            &format!("{own}/metadata/snap-1.avro"),
            &[]
        ));
        assert!(ok(
            &dev,
            Method::POST,
            &format!("{own}/data/f.parquet?uploads"),
            &[]
        ));
        assert!(ok(
            &dev,
            Method::PUT,
            &format!("{own}/data/f.parquet?partNumber=1&uploadId=x"),
            &[]
        ));
        assert!(!ok(
            &dev,
            Method::PUT,
            &format!("{BASE}/fleet/dev_043/data/f.parquet"),
            &[]
        ));
        assert!(!ok(
            &dev,
            Method::DELETE,
            &format!("{own}/data/f.parquet"),
            &[]
        ));
        assert!(!ok(
            &dev,
            Method::PUT,
            &format!("{own}/metadata/version-hint.text"),
            &[]
        ));
        // No metadata version, create-only or not, and no pointer-style metadata file: a
        // created version would be a commit that bypasses the server's checks.
        for (name, headers) in [
            ("v3.metadata.json", vec![]),
            ("v3.metadata.json", vec![("If-None-Match", "*")]),
            ("00003-0f1e.metadata.json", vec![("If-None-Match", "*")]),
        ] {
            assert!(
                !ok(
                    &dev,
                    Method::PUT,
                    &format!("{own}/metadata/{name}"),
                    &headers
                ),
                "{name} {headers:?}"
            );
        }
        assert!(!ok(
            &dev,
            Method::PUT,
            &format!("{own}/data/f.parquet"),
            &[(
                "x-amz-copy-source",
                "bucket/wh/fleet/dev_043/data/f.parquet"
            )]
        ));
        let admin = caller(&["admin"]);
        assert!(ok(
            &admin,
            Method::DELETE,
            &format!("{own}/data/f.parquet"),
            &[]
        ));
        assert!(!ok(
            &admin,
            Method::GET,
            &format!("{BASE}/.floe/principals/admin.json"),
            &[]
        ));
    }

    #[test]
    fn the_host_decides_the_bucket_as_s3_does() {
        let dev = caller(&["read:fleet.dev_042"]);
        let aws = signer_at(None);
        let allowed = |s: &Signer, uri: &str| {
            s.authorize(
                &dev,
                &Method::GET,
                &url::Url::parse(uri).unwrap(),
                &BTreeMap::new(),
            )
            .is_ok()
        };
        for uri in [
            "https://bucket.s3.us-east-1.amazonaws.com/wh/fleet/dev_042/data/f.parquet",
            "https://bucket.s3.amazonaws.com/wh/fleet/dev_042/data/f.parquet",
            "https://s3.us-east-1.amazonaws.com/bucket/wh/fleet/dev_042/data/f.parquet",
        ] {
            assert!(allowed(&aws, uri), "{uri}");
        }
        for uri in [
            // Another bucket's host, whatever the path says.
            "https://bucket2.s3.us-east-1.amazonaws.com/wh/fleet/dev_042/data/f.parquet",
            "https://bucket2.s3.us-east-1.amazonaws.com/bucket/wh/fleet/dev_042/data/f.parquet",
            "https://bucket.evil.example/wh/fleet/dev_042/data/f.parquet",
            "https://evil.example/bucket/wh/fleet/dev_042/data/f.parquet",
            "ftp://bucket.s3.amazonaws.com/wh/fleet/dev_042/data/f.parquet",
        ] {
            assert!(!allowed(&aws, uri), "{uri}");
        }
        // With an S3-compatible endpoint: path-style on that endpoint only.
        let local = signer();
        assert!(allowed(
            &local,
            &format!("{BASE}/fleet/dev_042/data/f.parquet")
        ));
        for uri in [
            "http://127.0.0.1:4567/bucket/wh/fleet/dev_042/data/f.parquet",
            "http://localhost:4566/bucket/wh/fleet/dev_042/data/f.parquet",
            "https://bucket.s3.us-east-1.amazonaws.com/wh/fleet/dev_042/data/f.parquet",
        ] {
            assert!(!allowed(&local, uri), "{uri}");
        }
    }

    #[test]
    fn signing_adds_the_sigv4_headers_and_signs_the_create_only_condition() {
        let uri = url::Url::parse(&format!("{BASE}/fleet/d/metadata/v2.metadata.json")).unwrap();
        let headers: BTreeMap<String, Vec<String>> =
            [("If-None-Match".to_string(), vec!["*".to_string()])].into();
        let added = signer().sign(Method::PUT, &uri, &headers).unwrap();
        let auth = &added["authorization"][0];
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKID/"),
            "{auth}"
        );
        assert!(
            auth.contains("if-none-match"),
            "the condition must be signed: {auth}"
        );
        assert!(added.contains_key("x-amz-date"));
        assert_eq!(added["x-amz-content-sha256"][0], "UNSIGNED-PAYLOAD");
        assert!(
            !added.contains_key("if-none-match"),
            "unchanged headers are not repeated"
        );
    }

    /// LocalStack does not check header signatures, so the tests cannot learn from S3 that
    /// a signature is right. This recomputes AWS Signature V4 from its specification (with
    /// the HMAC and SHA-256 crates) and compares it with what the signer produced.
    #[test]
    fn the_signature_verifies_against_the_servers_key_by_the_sigv4_rules() {
        use hmac::{Hmac, Mac};
        use sha2::{Digest, Sha256};
        fn hmac(key: &[u8], data: &str) -> Vec<u8> {
            let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
            m.update(data.as_bytes());
            m.finalize().into_bytes().to_vec()
        }
        let uri = url::Url::parse(&format!("{BASE}/fleet/d/metadata/v2.metadata.json")).unwrap();
        let headers: BTreeMap<String, Vec<String>> =
            [("If-None-Match".to_string(), vec!["*".to_string()])].into();
        let added = signer().sign(Method::PUT, &uri, &headers).unwrap();
        let auth = &added["authorization"][0];
        let amz_date = &added["x-amz-date"][0];
        let payload = &added["x-amz-content-sha256"][0];
        let field = |name: &str| {
            auth.split([' ', ','])
                .find_map(|p| p.strip_prefix(name))
                .unwrap()
                .to_string()
        };
        let (signed_headers, signature) = (field("SignedHeaders="), field("Signature="));
        assert_eq!(
            signed_headers,
            "host;if-none-match;x-amz-content-sha256;x-amz-date"
        );
        let canonical_headers = format!(
            "host:127.0.0.1:4566\nif-none-match:*\nx-amz-content-sha256:{payload}\nx-amz-date:{amz_date}\n"
        );
        let canonical_request = format!(
            "PUT\n{}\n\n{canonical_headers}\n{signed_headers}\n{payload}",
            uri.path()
        );
        let date = &amz_date[..8];
        let scope = format!("{date}/us-east-1/s3/aws4_request");
        assert!(auth.contains(&format!("Credential=AKID/{scope}")), "{auth}");
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical_request.as_bytes()))
        );
        let key = ["us-east-1", "s3", "aws4_request"]
            .iter()
            .fold(hmac(b"AWS4SECRET", date), |k, part| hmac(&k, part));
        assert_eq!(signature, hex::encode(hmac(&key, &string_to_sign)));
        // Another key would not produce it: the signature is the server's.
        let other = ["us-east-1", "s3", "aws4_request"]
            .iter()
            .fold(hmac(b"AWS4OTHER", date), |k, part| hmac(&k, part));
        assert_ne!(signature, hex::encode(hmac(&other, &string_to_sign)));
    }
}
