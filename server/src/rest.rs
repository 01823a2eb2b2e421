//! The Iceberg REST catalog endpoints.
//!
//! Every handler authenticates the caller ([`Caller`]) and checks its grants *before* it
//! touches storage, so a refusal (403) is the same whether or not the object exists and
//! changes nothing. Namespace changes, drops, registrations and renames are for `admin`.
//! Request bodies are parsed here, with iceberg's own types for their content
//! (`Schema`, `TableRequirement`, `TableUpdate`, …), so a malformed body is a 400 that
//! names what is wrong.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use floe_catalog::rest::FROM_TEMPLATE;
use floe_catalog::{NamespaceDoc, NamespaceUpdate};
use floe_table_format::external::ApplyUpdates;
use floe_table_format::iceberg::spec::{Schema, SortOrder, UnboundPartitionSpec};
use floe_table_format::iceberg::{TableRequirement, TableUpdate};
use floe_table_format::{Namespace, Table, TableDefinition, TableIdent};

use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::grants::Level;
use crate::idempotency;
use crate::App;

type AppState = State<Arc<App>>;

/// The endpoints served, as `/v1/config` lists them.
const ENDPOINTS: &[&str] = &[
    "GET /v1/{prefix}/namespaces",
    "POST /v1/{prefix}/namespaces",
    "GET /v1/{prefix}/namespaces/{namespace}",
    "HEAD /v1/{prefix}/namespaces/{namespace}",
    "DELETE /v1/{prefix}/namespaces/{namespace}",
    "POST /v1/{prefix}/namespaces/{namespace}/properties",
    "GET /v1/{prefix}/namespaces/{namespace}/tables",
    "POST /v1/{prefix}/namespaces/{namespace}/tables",
    "GET /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "HEAD /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "DELETE /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "POST /v1/{prefix}/namespaces/{namespace}/register",
    "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}/metrics",
    "POST /v1/{prefix}/tables/rename",
];

/// Log one request's outcome and turn it into a response.
fn finish(caller: &str, endpoint: &str, target: &str, result: Result<Response>) -> Response {
    match result {
        Ok(r) => {
            tracing::info!(
                principal = caller,
                endpoint,
                target,
                status = r.status().as_u16(),
                "ok"
            );
            r
        }
        Err(e) => {
            let status = e.status().0.as_u16();
            tracing::info!(principal = caller, endpoint, target, status, reason = %e, "refused");
            e.into_response()
        }
    }
}

fn parse_body<T: DeserializeOwned>(
    body: std::result::Result<Bytes, BytesRejection>,
    what: &str,
) -> Result<T> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::TooLarge(format!("the {what} body is too large"))
        } else {
            Error::BadRequest(format!("cannot read the {what} body: {e}"))
        }
    })?;
    serde_json::from_slice(&body)
        .map_err(|e| Error::BadRequest(format!("invalid {what} request: {e}")))
}

/// A namespace from a path segment (parts joined by the unit separator, `%1F`).
fn namespace(raw: &str) -> Result<Namespace> {
    Namespace::new(raw.split('\u{1f}')).map_err(|e| Error::BadRequest(e.to_string()))
}

fn table_ident(ns: &str, table: &str) -> Result<TableIdent> {
    TableIdent::new(namespace(ns)?, table).map_err(|e| Error::BadRequest(e.to_string()))
}

fn need_admin(caller: &Caller, what: &str) -> Result<()> {
    if caller.grants.is_admin() {
        Ok(())
    } else {
        Err(Error::Forbidden(format!(
            "principal {} may not {what} (admin only)",
            caller.name
        )))
    }
}

fn need_table(caller: &Caller, level: Level, ident: &TableIdent) -> Result<()> {
    if caller.grants.allows(level, ident) {
        return Ok(());
    }
    let verb = match level {
        Level::Read => "read",
        Level::Write => "write",
    };
    Err(Error::Forbidden(format!(
        "principal {} has no {verb} grant on {ident}",
        caller.name
    )))
}

fn need_namespace(caller: &Caller, ns: &Namespace) -> Result<()> {
    if caller.grants.sees(ns) {
        Ok(())
    } else {
        Err(Error::Forbidden(format!(
            "principal {} has no grant in namespace {ns}",
            caller.name
        )))
    }
}

fn ns_json(ns: &Namespace) -> Value {
    json!(ns.parts())
}

/// `POST /v1/oauth/tokens`: client credentials → bearer token (OAuth2 error bodies).
pub async fn token(
    State(app): AppState,
    form: std::result::Result<
        Form<HashMap<String, String>>,
        axum::extract::rejection::FormRejection,
    >,
) -> Response {
    let oauth_error = |status: StatusCode, error: &str, description: &str| {
        (
            status,
            Json(json!({ "error": error, "error_description": description })),
        )
            .into_response()
    };
    let Ok(Form(form)) = form else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "expected a form-encoded client_credentials request",
        );
    };
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only grant_type=client_credentials is supported",
        );
    }
    let (Some(id), Some(secret)) = (form.get("client_id"), form.get("client_secret")) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client_id and client_secret are required",
        );
    };
    match app.auth.check_credentials(id, secret).await {
        Ok(caller) => match app.auth.issue(&caller) {
            Ok(token) => {
                tracing::info!(principal = %caller.name, endpoint = "token", "issued");
                Json(json!({
                    "access_token": token,
                    "token_type": "bearer",
                    "expires_in": app.auth.token_ttl().as_secs(),
                    "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                }))
                .into_response()
            }
            Err(e) => e.into_response(),
        },
        Err(Error::Unauthorized(_)) => {
            tracing::info!(client = %id, endpoint = "token", "refused");
            oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "invalid client credentials",
            )
        }
        Err(e) => e.into_response(),
    }
}

/// `GET /v1/config`.
pub async fn config(State(app): AppState, caller: Caller) -> Response {
    // Floe's own client opens the server's warehouse for files (on S3 through the
    // signer, with the storage settings below).
    let mut overrides = storage_config(&app);
    overrides.insert(
        "floe.warehouse".into(),
        app.catalog.warehouse().url().to_string(),
    );
    let body = json!({
        "defaults": {},
        "overrides": overrides,
        "endpoints": ENDPOINTS,
        "idempotency-key-lifetime": format!("PT{}S", app.idempotency_lifetime.as_secs()),
    });
    finish(&caller.name, "config", "", Ok(Json(body).into_response()))
}

/// `GET /v1/namespaces[?parent=]`: only namespaces the caller sees.
pub async fn list_namespaces(
    State(app): AppState,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let result = async {
        let parent = q.get("parent").map(|p| namespace(p)).transpose()?;
        if let Some(p) = &parent {
            need_namespace(&caller, p)?;
        }
        let list = app.catalog.list_namespaces(parent.as_ref()).await?;
        let visible: Vec<Value> = list
            .iter()
            .filter(|ns| caller.grants.sees(ns))
            .map(ns_json)
            .collect();
        Ok(Json(json!({ "namespaces": visible })).into_response())
    }
    .await;
    finish(
        &caller.name,
        "list-namespaces",
        q.get("parent").map(String::as_str).unwrap_or(""),
        result,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateNamespace {
    namespace: Vec<String>,
    #[serde(default)]
    properties: BTreeMap<String, String>,
}

/// `POST /v1/namespaces` (admin).
pub async fn create_namespace(
    State(app): AppState,
    caller: Caller,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let work = async {
        need_admin(&caller, "create namespaces")?;
        let req: CreateNamespace = parse_body(body, "create-namespace")?;
        let ns = Namespace::new(req.namespace.iter().cloned())
            .map_err(|e| Error::BadRequest(e.to_string()))?;
        let doc = NamespaceDoc {
            properties: req.properties.clone(),
            ..NamespaceDoc::default()
        };
        app.catalog.create_namespace(&ns, doc).await?;
        Ok(
            Json(json!({ "namespace": ns_json(&ns), "properties": req.properties }))
                .into_response(),
        )
    };
    idempotent(&app, &caller, &headers, "create-namespace", "", work).await
}

/// Run a mutation under its idempotency key, and log it.
async fn idempotent(
    app: &App,
    caller: &Caller,
    headers: &HeaderMap,
    endpoint: &str,
    target: &str,
    work: impl std::future::Future<Output = Result<Response>>,
) -> Response {
    let key = match idempotency::key(headers) {
        Ok(k) => k,
        Err(e) => return finish(&caller.name, endpoint, target, Err(e)),
    };
    let scope = format!("{endpoint} {target}");
    app.idempotency
        .run(&caller.name, &scope, key, app.idempotency_lifetime, async {
            finish(&caller.name, endpoint, target, work.await)
        })
        .await
}

/// `GET /v1/namespaces/{ns}`.
pub async fn load_namespace(
    State(app): AppState,
    caller: Caller,
    Path(ns): Path<String>,
) -> Response {
    let result = async {
        let ns = namespace(&ns)?;
        need_namespace(&caller, &ns)?;
        let doc = app.catalog.describe_namespace(&ns).await?;
        Ok(
            Json(json!({ "namespace": ns_json(&ns), "properties": doc.properties }))
                .into_response(),
        )
    }
    .await;
    finish(&caller.name, "load-namespace", &ns, result)
}

/// `HEAD /v1/namespaces/{ns}`.
pub async fn namespace_exists(
    State(app): AppState,
    caller: Caller,
    Path(ns): Path<String>,
) -> Response {
    let result = async {
        let ns = namespace(&ns)?;
        need_namespace(&caller, &ns)?;
        Ok(if app.catalog.namespace_exists(&ns).await? {
            StatusCode::NO_CONTENT.into_response()
        } else {
            StatusCode::NOT_FOUND.into_response()
        })
    }
    .await;
    finish(&caller.name, "namespace-exists", &ns, result)
}

/// `DELETE /v1/namespaces/{ns}` (admin; refused unless empty).
pub async fn drop_namespace(
    State(app): AppState,
    caller: Caller,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Response {
    let work = async {
        need_admin(&caller, "drop namespaces")?;
        let ns = namespace(&raw)?;
        app.catalog.drop_namespace(&ns).await.map_err(|e| match e {
            floe_catalog::Error::Table(floe_table_format::Error::InvalidArgument {
                argument,
                reason,
            }) => Error::Conflict(format!("{argument}: {reason}")),
            other => other.into(),
        })?;
        Ok(StatusCode::NO_CONTENT.into_response())
    };
    idempotent(&app, &caller, &headers, "drop-namespace", &raw, work).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateNamespace {
    #[serde(default)]
    removals: Vec<String>,
    #[serde(default)]
    updates: BTreeMap<String, String>,
}

/// `POST /v1/namespaces/{ns}/properties` (admin).
pub async fn update_namespace(
    State(app): AppState,
    caller: Caller,
    headers: HeaderMap,
    Path(raw): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let work = async {
        need_admin(&caller, "change namespace properties")?;
        let ns = namespace(&raw)?;
        let req: UpdateNamespace = parse_body(body, "update-namespace-properties")?;
        if let Some(k) = req.removals.iter().find(|k| req.updates.contains_key(*k)) {
            return Err(Error::BadRequest(format!(
                "property '{k}' is both updated and removed"
            )));
        }
        let before = app.catalog.describe_namespace(&ns).await?;
        let change = NamespaceUpdate {
            set: req.updates.clone(),
            unset: req.removals.clone(),
            ..NamespaceUpdate::default()
        };
        app.catalog.update_namespace(&ns, &change).await?;
        let (removed, missing): (Vec<_>, Vec<_>) = req
            .removals
            .iter()
            .partition(|k| before.properties.contains_key(*k));
        Ok(Json(json!({
            "updated": req.updates.keys().collect::<Vec<_>>(),
            "removed": removed,
            "missing": missing,
        }))
        .into_response())
    };
    idempotent(&app, &caller, &headers, "update-namespace", &raw, work).await
}

/// `GET /v1/namespaces/{ns}/tables`: only tables the caller may read.
pub async fn list_tables(
    State(app): AppState,
    caller: Caller,
    Path(raw): Path<String>,
) -> Response {
    let result = async {
        let ns = namespace(&raw)?;
        need_namespace(&caller, &ns)?;
        let tables = app.catalog.list_tables(&ns).await?;
        let ids: Vec<Value> = tables
            .iter()
            .filter(|t| caller.grants.allows(Level::Read, t))
            .map(|t| json!({ "namespace": ns_json(t.namespace()), "name": t.name() }))
            .collect();
        Ok(Json(json!({ "identifiers": ids })).into_response())
    }
    .await;
    finish(&caller.name, "list-tables", &raw, result)
}

/// A table's head as load and commit answers carry it: `metadata-location`, `metadata`.
fn head_json(table: &Table) -> Result<Value> {
    let metadata = serde_json::to_value(table.metadata().as_ref())
        .map_err(|e| Error::Internal(format!("cannot serialize metadata: {e}")))?;
    Ok(json!({
        "metadata-location": table.metadata_location(),
        "metadata": metadata,
    }))
}

/// The load-table result: metadata, its location, and how to reach the files.
fn load_result(app: &App, table: &Table) -> Result<Response> {
    let mut body = head_json(table)?;
    body["config"] = json!(storage_config(app));
    let mut response = Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&etag(table.metadata_location())) {
        response.headers_mut().insert(header::ETAG, v);
    }
    Ok(response)
}

/// The ETag of a table head: a digest of its metadata location (each commit writes a
/// new metadata file, so the location changes exactly when the table does).
fn etag(metadata_location: &str) -> String {
    use sha2::Digest;
    format!(
        "\"{}\"",
        hex::encode(&sha2::Sha256::digest(metadata_location.as_bytes())[..16])
    )
}

/// FileIO settings for clients: on S3, the server signs their requests (they hold no
/// keys); on local and memory warehouses, the server is the only way in.
fn storage_config(app: &App) -> BTreeMap<String, String> {
    let mut config = BTreeMap::new();
    if let Some(signer) = &app.signer {
        config.insert("s3.signer".into(), "S3V4RestSigner".into());
        config.insert("s3.signer.uri".into(), app.public_url.clone());
        config.insert("s3.signer.endpoint".into(), "v1/aws/s3/sign".into());
        config.insert("s3.remote-signing-enabled".into(), "true".into());
        config.insert("s3.region".into(), signer.region().to_string());
        config.insert("client.region".into(), signer.region().to_string());
        config.insert(
            "py-io-impl".into(),
            "pyiceberg.io.fsspec.FsspecFileIO".into(),
        );
        if let Some(endpoint) = signer.endpoint() {
            config.insert("s3.endpoint".into(), endpoint.to_string());
            config.insert("s3.path-style-access".into(), "true".into());
        }
    }
    config
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct CreateTable {
    name: String,
    #[serde(default)]
    location: Option<String>,
    schema: Schema,
    #[serde(default)]
    partition_spec: Option<UnboundPartitionSpec>,
    #[serde(default)]
    write_order: Option<SortOrder>,
    #[serde(default)]
    stage_create: Option<bool>,
    #[serde(default)]
    properties: HashMap<String, String>,
}

/// `POST /v1/namespaces/{ns}/tables`: a writer of the table may create it. Non-admin
/// writers get their namespace's template when it has one (the fleet's contract: a
/// device does not choose its own schema or properties).
pub async fn create_table(
    State(app): AppState,
    caller: Caller,
    headers: HeaderMap,
    Path(raw): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let work = async {
        let req: CreateTable = parse_body(body, "create-table")?;
        let ident = table_ident(&raw, &req.name)?;
        need_table(&caller, Level::Write, &ident)?;
        if req.stage_create == Some(true) {
            return Err(Error::Unsupported(
                "staged creates are not supported: create the table, then commit".into(),
            ));
        }
        if req.write_order.as_ref().is_some_and(|o| !o.is_unsorted()) {
            return Err(Error::Unsupported(
                "Floe tables are created unsorted (sort orders are not supported yet)".into(),
            ));
        }
        let expected = app.catalog.warehouse().location(&ident.path());
        if let Some(loc) = &req.location {
            if loc.trim_end_matches('/') != expected {
                return Err(Error::BadRequest(format!(
                    "table {ident} lives at {expected}, not {loc}"
                )));
            }
        }
        // Floe's client asks for the template explicitly (a device's first append).
        let mut properties = req.properties;
        let from_template = properties
            .remove(FROM_TEMPLATE)
            .is_some_and(|v| v == "true");
        let template = if caller.grants.is_admin() && !from_template {
            None
        } else {
            match app.catalog.describe_namespace(ident.namespace()).await {
                Ok(doc) => doc.template,
                Err(floe_catalog::Error::NamespaceNotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            }
        };
        let definition = match template {
            Some(t) => t.definition()?,
            None if from_template => {
                return Err(Error::NoSuchTable(format!(
                    "table {ident} does not exist and namespace {} has no table template",
                    ident.namespace()
                )))
            }
            None => TableDefinition {
                schema: req.schema,
                partition: req.partition_spec.unwrap_or_default(),
                properties,
            },
        };
        let table = app.catalog.create_table(&ident, definition).await?;
        load_result(&app, &table)
    };
    let target = raw.clone();
    idempotent(&app, &caller, &headers, "create-table", &target, work).await
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RegisterTable {
    name: String,
    metadata_location: String,
    #[serde(default)]
    overwrite: bool,
}

/// `POST /v1/namespaces/{ns}/register` (admin).
pub async fn register_table(
    State(app): AppState,
    caller: Caller,
    headers: HeaderMap,
    Path(raw): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let work = async {
        need_admin(&caller, "register tables")?;
        let req: RegisterTable = parse_body(body, "register-table")?;
        if req.overwrite {
            return Err(Error::Unsupported(
                "register with overwrite is not supported (drop the table first)".into(),
            ));
        }
        let ident = table_ident(&raw, &req.name)?;
        let table = app
            .catalog
            .register_table(&ident, &req.metadata_location)
            .await?;
        load_result(&app, &table)
    };
    idempotent(&app, &caller, &headers, "register-table", &raw, work).await
}

/// `GET /v1/namespaces/{ns}/tables/{table}`, with an ETag; `If-None-Match` → 304.
pub async fn load_table(
    State(app): AppState,
    caller: Caller,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let target = format!("{ns}.{name}");
    let result = async {
        let ident = table_ident(&ns, &name)?;
        need_table(&caller, Level::Read, &ident)?;
        let table = app.catalog.load_table(&ident).await?;
        let tag = etag(table.metadata_location());
        if headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == tag))
        {
            let mut r = StatusCode::NOT_MODIFIED.into_response();
            if let Ok(v) = HeaderValue::from_str(&tag) {
                r.headers_mut().insert(header::ETAG, v);
            }
            return Ok(r);
        }
        load_result(&app, &table)
    }
    .await;
    finish(&caller.name, "load-table", &target, result)
}

/// `HEAD /v1/namespaces/{ns}/tables/{table}`.
pub async fn table_exists(
    State(app): AppState,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let target = format!("{ns}.{name}");
    let result = async {
        let ident = table_ident(&ns, &name)?;
        need_table(&caller, Level::Read, &ident)?;
        match app.catalog.load_table(&ident).await {
            Ok(_) => Ok(StatusCode::NO_CONTENT.into_response()),
            Err(floe_catalog::Error::Table(floe_table_format::Error::TableNotFound { .. })) => {
                Ok(StatusCode::NOT_FOUND.into_response())
            }
            Err(e) => Err(e.into()),
        }
    }
    .await;
    finish(&caller.name, "table-exists", &target, result)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitTable {
    #[serde(default)]
    identifier: Option<Value>,
    #[serde(default)]
    requirements: Vec<TableRequirement>,
    #[serde(default)]
    updates: Vec<TableUpdate>,
}

/// `POST /v1/namespaces/{ns}/tables/{table}`: check the requirements against the head,
/// apply the updates and commit through the one commit driver, confined to the table.
/// The idempotency key, when given, is the commit id.
pub async fn commit_table(
    State(app): AppState,
    caller: Caller,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let target = format!("{ns}.{name}");
    let key = idempotency::key(&headers).ok().flatten();
    let work = async {
        let ident = table_ident(&ns, &name)?;
        need_table(&caller, Level::Write, &ident)?;
        let req: CommitTable = parse_body(body, "commit-table")?;
        if let Some(id) = &req.identifier {
            let same = id.get("name").and_then(Value::as_str) == Some(ident.name())
                && id.get("namespace") == Some(&ns_json(ident.namespace()));
            if !same {
                return Err(Error::BadRequest(format!(
                    "the request's identifier {id} is not the table in the path, {ident}"
                )));
            }
        }
        let mut table = app.catalog.load_table(&ident).await?;
        let mut action = ApplyUpdates::new(req.requirements, req.updates);
        let commit_id = key.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        table
            .commit(&commit_id, &app.commit_policy, &mut action)
            .await?;
        Ok(Json(head_json(&table)?).into_response())
    };
    idempotent(&app, &caller, &headers, "commit-table", &target, work).await
}

/// `DELETE /v1/namespaces/{ns}/tables/{table}[?purgeRequested=true]` (admin).
pub async fn drop_table(
    State(app): AppState,
    caller: Caller,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let target = format!("{ns}.{name}");
    let work = async {
        need_admin(&caller, "drop tables")?;
        let ident = table_ident(&ns, &name)?;
        let purge = q.get("purgeRequested").is_some_and(|v| v == "true");
        app.catalog.drop_table(&ident, purge).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    };
    idempotent(&app, &caller, &headers, "drop-table", &target, work).await
}

/// `POST …/tables/{table}/metrics`: accepted and discarded.
pub async fn metrics(caller: Caller, Path((ns, name)): Path<(String, String)>) -> Response {
    let target = format!("{ns}.{name}");
    let result = table_ident(&ns, &name)
        .and_then(|ident| need_table(&caller, Level::Read, &ident))
        .map(|()| StatusCode::NO_CONTENT.into_response());
    finish(&caller.name, "metrics", &target, result)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameTable {
    source: IdentJson,
    destination: IdentJson,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentJson {
    namespace: Vec<String>,
    name: String,
}

impl IdentJson {
    fn ident(&self) -> Result<TableIdent> {
        Namespace::new(self.namespace.iter().cloned())
            .and_then(|ns| TableIdent::new(ns, &self.name))
            .map_err(|e| Error::BadRequest(e.to_string()))
    }
}

/// `POST /v1/tables/rename` (admin; SQL catalogs only).
pub async fn rename_table(
    State(app): AppState,
    caller: Caller,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let work = async {
        need_admin(&caller, "rename tables")?;
        let req: RenameTable = parse_body(body, "rename-table")?;
        let (from, to) = (req.source.ident()?, req.destination.ident()?);
        app.catalog
            .rename_table(&from, &to)
            .await
            .map_err(|e| match e {
                floe_catalog::Error::Table(floe_table_format::Error::InvalidArgument {
                    argument,
                    reason,
                }) => Error::Unsupported(format!("{argument}: {reason}")),
                other => other.into(),
            })?;
        Ok(StatusCode::NO_CONTENT.into_response())
    };
    idempotent(&app, &caller, &headers, "rename-table", "", work).await
}

/// `POST /v1/transactions/commit`: refused, since Floe cannot make two tables' commits
/// atomic (each table commits on its own head, with no lock over several).
pub async fn multi_table_commit(caller: Caller) -> Response {
    finish(
        &caller.name,
        "transactions-commit",
        "",
        Err(Error::Unsupported(
            "multi-table transactions are not supported: Floe commits each table atomically on its own; commit the tables one by one".into(),
        )),
    )
}
