//! Floe's own client of an Iceberg REST catalog (`floe serve`, or any server that follows
//! `spec/rest.md`): `floe --catalog http://host:8181 --credential NAME:SECRET …`.
//!
//! - Names, loads and creates go to the server's endpoints; a refusal is the server's
//!   one-line reason.
//! - A table's head is the server's ([`RestHead`]): Floe's actions build the next metadata
//!   as for any table, and the claim sends the difference as `TableUpdate`s with
//!   requirements on the base (`floe_table_format::diff`). The server commits them through
//!   its own driver and cleans up after them; the client never deletes.
//! - Files are read and written where the server's warehouse is (`floe.warehouse` in
//!   `/v1/config`): on S3 through the server's signer ([`crate::rest_store`]), so the client
//!   holds no S3 keys; a local or memory warehouse only on the server's own machine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use iceberg::spec::TableMetadata;
use reqwest::{Method, StatusCode};
use serde_json::json;

use floe_table_format::commit::{PutOutcome, ReadBack};
use floe_table_format::head::{Claim, Head, HeadStore};
use floe_table_format::{diff, pointer, version};
use floe_table_format::{Namespace, Table, TableDefinition, TableIdent, Version, Warehouse};

use crate::error::{Error, Result};
use crate::rest_api::RestApi;

/// The path segment of a namespace (parts joined by the unit separator, encoded).
fn ns_segment(ns: &Namespace) -> String {
    ns.parts().join("%1F")
}

fn table_path(ident: &TableIdent) -> String {
    format!(
        "/v1/namespaces/{}/tables/{}",
        ns_segment(ident.namespace()),
        ident.name()
    )
}

/// A REST catalog's view of the fleet, with the warehouse its files live in.
#[derive(Debug, Clone)]
pub struct RestBackend {
    api: Arc<RestApi>,
    warehouse: Warehouse,
}

impl RestBackend {
    /// Connect to `uri` as `credential`, and open the server's warehouse for files.
    pub async fn connect(uri: &str, credential: &str) -> Result<RestBackend> {
        let api = Arc::new(RestApi::connect(uri, credential).await?);
        let config = api.config().await?;
        let Some(url) = config.get("floe.warehouse") else {
            return Err(Error::Rest {
                catalog: api.uri().to_string(),
                status: 0,
                message: "the server names no floe.warehouse in /v1/config: is it a Floe server?"
                    .into(),
            });
        };
        let warehouse = if url.starts_with("s3://") {
            crate::rest_store::signed_warehouse(url, &config, Arc::clone(&api))?
        } else {
            Warehouse::open(url)?
        };
        Ok(RestBackend { api, warehouse })
    }

    /// The warehouse the server's tables live in.
    pub fn warehouse(&self) -> &Warehouse {
        &self.warehouse
    }

    fn not_found(&self, ident: &TableIdent) -> Error {
        floe_table_format::Error::TableNotFound {
            table: ident.to_string(),
            location: self.api.uri().to_string(),
        }
        .into()
    }

    /// Namespaces directly under `parent`.
    pub async fn list_namespaces(&self, parent: Option<&Namespace>) -> Result<Vec<Namespace>> {
        let path = match parent {
            Some(p) => format!("/v1/namespaces?parent={}", ns_segment(p)),
            None => "/v1/namespaces".to_string(),
        };
        let v = self.api.ok(Method::GET, &path, None).await?;
        let mut out = Vec::new();
        for ns in v["namespaces"].as_array().into_iter().flatten() {
            let parts: Vec<String> = ns
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect();
            out.push(Namespace::new(parts)?);
        }
        Ok(out)
    }

    /// `GET path` about namespace `ns`: its answer, 404 as [`Error::NamespaceNotFound`].
    async fn get_in_namespace(&self, path: &str, ns: &Namespace) -> Result<serde_json::Value> {
        let (status, v) = self.api.call(Method::GET, path, None).await?;
        if status == StatusCode::NOT_FOUND {
            return Err(Error::NamespaceNotFound {
                namespace: ns.to_string(),
            });
        }
        if !status.is_success() {
            return Err(self.api.error(status, &v));
        }
        Ok(v)
    }

    /// Tables of `namespace` the caller may read.
    pub async fn list_tables(&self, namespace: &Namespace) -> Result<Vec<TableIdent>> {
        let path = format!("/v1/namespaces/{}/tables", ns_segment(namespace));
        let v = self.get_in_namespace(&path, namespace).await?;
        let mut out = Vec::new();
        for t in v["identifiers"].as_array().into_iter().flatten() {
            if let Some(name) = t["name"].as_str() {
                out.push(TableIdent::new(namespace.clone(), name)?);
            }
        }
        out.sort_by_key(|t| t.to_string());
        Ok(out)
    }

    /// Whether the namespace exists (and the caller sees it).
    pub async fn namespace_exists(&self, ns: &Namespace) -> Result<bool> {
        let path = format!("/v1/namespaces/{}", ns_segment(ns));
        let (status, v) = self.api.call(Method::GET, &path, None).await?;
        match status {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => Err(self.api.error(s, &v)),
        }
    }

    /// A namespace's properties.
    pub async fn namespace_properties(&self, ns: &Namespace) -> Result<HashMap<String, String>> {
        let path = format!("/v1/namespaces/{}", ns_segment(ns));
        let v = self.get_in_namespace(&path, ns).await?;
        Ok(v["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
            .collect())
    }

    /// Load a table whose head the server keeps.
    pub async fn load_table(&self, ident: &TableIdent) -> Result<Table> {
        let head = Arc::new(RestHead {
            api: Arc::clone(&self.api),
            ident: ident.clone(),
            location: Mutex::new(String::new()),
            landed: Mutex::new(None),
        });
        match Table::load_with_head(&self.warehouse, ident, head.clone()).await {
            Ok(t) => {
                *head.location.lock().expect("never poisoned") = t.location().to_string();
                Ok(t)
            }
            Err(floe_table_format::Error::TableNotFound { .. }) => Err(self.not_found(ident)),
            Err(e) => Err(e.into()),
        }
    }

    /// Create a table. With `from_template`, the server must create it from its
    /// namespace's template (and answers 404 when there is none).
    pub async fn create_table(
        &self,
        ident: &TableIdent,
        definition: &TableDefinition,
        from_template: bool,
    ) -> Result<Table> {
        let mut properties: HashMap<String, String> = definition.properties.clone();
        if from_template {
            properties.insert(FROM_TEMPLATE.into(), "true".into());
        }
        let body = json!({
            "name": ident.name(),
            "schema": definition.schema,
            "partition-spec": definition.partition,
            "properties": properties,
        });
        let path = format!("/v1/namespaces/{}/tables", ns_segment(ident.namespace()));
        let (status, v) = self.api.call(Method::POST, &path, Some(&body)).await?;
        match status {
            s if s.is_success() => self.load_table(ident).await,
            StatusCode::CONFLICT => Err(floe_table_format::Error::TableExists {
                table: ident.to_string(),
                location: self.api.uri().to_string(),
            }
            .into()),
            StatusCode::NOT_FOUND if from_template => Err(self.not_found(ident)),
            s => Err(self.api.error(s, &v)),
        }
    }

    /// Drop a table (admins).
    pub async fn drop_table(&self, ident: &TableIdent, purge: bool) -> Result<usize> {
        let path = format!("{}?purgeRequested={purge}", table_path(ident));
        let (status, v) = self.api.call(Method::DELETE, &path, None).await?;
        match status {
            s if s.is_success() => Ok(1),
            StatusCode::NOT_FOUND => Err(self.not_found(ident)),
            s => Err(self.api.error(s, &v)),
        }
    }
}

/// The create-table property by which a Floe client asks for its namespace's template
/// (the server removes it; see spec/rest.md).
pub const FROM_TEMPLATE: &str = "floe.create-from-template";

/// The version a REST head's metadata file name carries (`v{N}.metadata.json` or
/// `{N}-{uuid}.metadata.json`).
fn version_of(location: &str) -> Version {
    let name = location.rsplit('/').next().unwrap_or_default();
    version::parse_metadata_file_name(name).unwrap_or(Version(pointer::sequence_of(location)))
}

/// A table head kept by a REST catalog: a claim is a commit request.
#[derive(Debug)]
pub struct RestHead {
    api: Arc<RestApi>,
    ident: TableIdent,
    /// The table's location (known once loaded).
    location: Mutex<String>,
    /// The head and metadata the server made current for the claim named by the first
    /// element.
    landed: Mutex<Option<(String, Head, TableMetadata)>>,
}

impl RestHead {
    fn catalog_error(
        &self,
        status: u16,
        message: String,
        retryable: bool,
    ) -> floe_table_format::Error {
        floe_table_format::Error::Catalog {
            catalog: format!("{} (status {status})", self.api.uri()),
            reason: format!("{}: {message}", self.ident),
            retryable,
        }
    }

    fn to_table_error(&self, e: Error) -> floe_table_format::Error {
        match e {
            Error::Table(t) => t,
            other => self.catalog_error(0, other.to_string(), true),
        }
    }

    /// The server's head now, with its metadata.
    async fn load(&self) -> floe_table_format::Result<Option<(Head, TableMetadata)>> {
        let (status, v) = self
            .api
            .call(Method::GET, &table_path(&self.ident), None)
            .await
            .map_err(|e| self.to_table_error(e))?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            let message = v["error"]["message"]
                .as_str()
                .unwrap_or("refused")
                .to_string();
            return Err(self.catalog_error(status.as_u16(), message, status.is_server_error()));
        }
        self.head_of(status, &v, false).map(Some)
    }

    /// The head and metadata a load or commit answer carries (`metadata-location`,
    /// `metadata`); an unreadable answer is an error whose retryability is `retryable`.
    fn head_of(
        &self,
        status: StatusCode,
        v: &serde_json::Value,
        retryable: bool,
    ) -> floe_table_format::Result<(Head, TableMetadata)> {
        let location = v["metadata-location"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let metadata: TableMetadata =
            serde_json::from_value(v["metadata"].clone()).map_err(|e| {
                self.catalog_error(
                    status.as_u16(),
                    format!("unreadable metadata: {e}"),
                    retryable,
                )
            })?;
        Ok((
            Head {
                version: version_of(&location),
                metadata_location: location,
            },
            metadata,
        ))
    }
}

#[async_trait]
impl HeadStore for RestHead {
    fn layout(&self) -> &'static str {
        "REST catalog"
    }

    async fn current(&self, _known: Option<&Head>) -> floe_table_format::Result<Option<Head>> {
        Ok(self.load().await?.map(|(head, _)| head))
    }

    fn next_location(&self, target: Version) -> String {
        // A name for this claim only: the server writes the metadata file of its choice.
        let location = self.location.lock().expect("never poisoned").clone();
        format!(
            "{location}/metadata/{:05}-{}.metadata.json",
            target.0,
            uuid::Uuid::new_v4()
        )
    }

    async fn claim(&self, claim: &Claim<'_>) -> floe_table_format::Result<PutOutcome> {
        let updates = diff::updates(claim.base_metadata, claim.next)?;
        let body = json!({
            "identifier": {"namespace": self.ident.namespace().parts(), "name": self.ident.name()},
            "requirements": diff::requirements(claim.base_metadata),
            "updates": updates,
        });
        let answer = self
            .api
            .call(Method::POST, &table_path(&self.ident), Some(&body))
            .await;
        let (status, v) = match answer {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(table = %self.ident, error = %e, "commit request had no answer");
                return Ok(PutOutcome::Unknown);
            }
        };
        if status.is_success() {
            let (head, metadata) = self.head_of(status, &v, true)?;
            *self.landed.lock().expect("never poisoned") =
                Some((claim.location.to_string(), head, metadata));
            return Ok(PutOutcome::Won);
        }
        let message = v["error"]["message"]
            .as_str()
            .unwrap_or("refused")
            .to_string();
        match status {
            StatusCode::CONFLICT => Ok(PutOutcome::Lost),
            s if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT => {
                tracing::warn!(table = %self.ident, status = s.as_u16(), %message, "commit outcome unknown");
                Ok(PutOutcome::Unknown)
            }
            s => Err(self.catalog_error(s.as_u16(), message, false)),
        }
    }

    async fn read_back(&self, claim: &Claim<'_>) -> ReadBack {
        let Ok(Some((head, metadata))) = self.load().await else {
            return ReadBack::Failed;
        };
        let added: Vec<i64> = claim
            .next
            .snapshots()
            .map(|s| s.snapshot_id())
            .filter(|id| claim.base_metadata.snapshot_by_id(*id).is_none())
            .collect();
        if !added.is_empty()
            && added
                .iter()
                .all(|id| metadata.snapshot_by_id(*id).is_some())
        {
            *self.landed.lock().expect("never poisoned") =
                Some((claim.location.to_string(), head, metadata));
            return ReadBack::Ours;
        }
        if head.metadata_location == claim.base.metadata_location {
            ReadBack::Missing
        } else {
            ReadBack::Theirs
        }
    }

    async fn after_win(&self, _head: &Head) {}

    fn landed(&self, location: &str) -> Option<(Head, TableMetadata)> {
        let mut landed = self.landed.lock().expect("never poisoned");
        match landed.take() {
            Some((claimed, head, metadata)) if claimed == location => Some((head, metadata)),
            other => {
                *landed = other;
                None
            }
        }
    }

    fn cleans_up(&self) -> bool {
        false
    }
}
