//! Floe as a service: an Iceberg REST catalog over a Floe warehouse (its folders or an SQL
//! catalog), where every principal reaches exactly what its grants allow.
//!
//! - [`rest`]: the REST catalog endpoints; commits go through the one commit driver
//!   (`Table::commit` with `ApplyUpdates`), confined to the table's own folders.
//! - [`auth`]: OAuth2 client credentials → short-lived bearer tokens.
//! - [`principals`]: named callers with salted secret hashes and grants, in the warehouse.
//! - [`grants`]: `read:PATTERN`, `write:PATTERN`, `admin`, and what they allow.
//! - [`signer`]: S3 remote signing, only for requests inside the caller's grants.
//! - [`idempotency`]: `Idempotency-Key` replay.
//! - [`policy`]: the STS session policy for vended credentials, confined to one table.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let warehouse = floe_table_format::Warehouse::open("./warehouse")?;
//! let catalog = floe_catalog::Catalog::new(warehouse);
//! let config = floe_server::ServerConfig::default();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8181").await?;
//! floe_server::serve(catalog, config, listener, std::future::pending()).await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod auth;
pub mod cache;
pub mod error;
pub mod grants;
pub mod idempotency;
pub mod pg;
pub mod policy;
pub mod principals;
pub mod rest;
pub mod signer;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use tower_http::timeout::TimeoutLayer;

use floe_catalog::Catalog;

pub use error::{Error, Result};

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The URL clients reach the server at (for the S3 signer's address in load
    /// responses). Default: `http://` + the listening address.
    pub public_url: Option<String>,
    /// Bearer-token lifetime.
    pub token_ttl: Duration,
    /// How long a principal's record is reused before it is read again (revocations and
    /// grant changes take effect within this). Zero: read on every request.
    pub principal_cache_ttl: Duration,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Longest a request may take.
    pub request_timeout: Duration,
    /// How long an `Idempotency-Key`'s first answer is kept.
    pub idempotency_lifetime: Duration,
    /// The key tokens are signed with (random per start when None: tokens then end with
    /// the process, and clients simply ask for a new one).
    pub token_key: Option<Vec<u8>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            public_url: None,
            token_ttl: Duration::from_secs(3600),
            principal_cache_ttl: Duration::from_secs(5),
            max_body_bytes: 8 << 20,
            request_timeout: Duration::from_secs(60),
            idempotency_lifetime: Duration::from_secs(1800),
            token_key: None,
        }
    }
}

/// The server's shared state.
#[derive(Debug)]
pub struct App {
    /// The catalog served.
    pub catalog: Catalog,
    /// Tokens and principals.
    pub auth: auth::Authenticator,
    /// First answers by idempotency key.
    pub idempotency: idempotency::Replays,
    /// The S3 signer, for S3 warehouses with credentials.
    pub signer: Option<signer::Signer>,
    /// The URL clients reach the server at.
    pub public_url: String,
    /// How long an idempotency key lives.
    pub idempotency_lifetime: Duration,
    /// The commit driver's retry limits: it gives up (409, or 500 for an unknown outcome)
    /// within half the request timeout, so a commit is never cut by the timeout's 408.
    pub commit_policy: floe_table_format::RetryPolicy,
}

/// The router over `app`.
pub fn router(app: Arc<App>, config: &ServerConfig) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/v1/oauth/tokens", post(rest::token))
        .route("/v1/config", get(rest::config))
        .route(
            "/v1/namespaces",
            get(rest::list_namespaces).post(rest::create_namespace),
        )
        .route(
            "/v1/namespaces/{ns}",
            get(rest::load_namespace)
                .head(rest::namespace_exists)
                .delete(rest::drop_namespace),
        )
        .route(
            "/v1/namespaces/{ns}/properties",
            post(rest::update_namespace),
        )
        .route(
            "/v1/namespaces/{ns}/tables",
            get(rest::list_tables).post(rest::create_table),
        )
        .route("/v1/namespaces/{ns}/register", post(rest::register_table))
        .route(
            "/v1/namespaces/{ns}/tables/{table}",
            get(rest::load_table)
                .head(rest::table_exists)
                .post(rest::commit_table)
                .delete(rest::drop_table),
        )
        .route(
            "/v1/namespaces/{ns}/tables/{table}/metrics",
            post(rest::metrics),
        )
        .route("/v1/tables/rename", post(rest::rename_table))
        .route("/v1/transactions/commit", post(rest::multi_table_commit))
        .route("/v1/aws/s3/sign", post(signer::sign))
        .fallback(|| async {
            Error::NotFound("no such endpoint (see GET /v1/config for the ones served)".into())
        })
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ))
        .with_state(app)
}

/// Build the shared state for `catalog`.
pub fn app(catalog: Catalog, config: &ServerConfig, public_url: String) -> Result<Arc<App>> {
    let key = match &config.token_key {
        Some(k) => k.clone(),
        None => {
            use rand::RngCore;
            let mut k = vec![0u8; 32];
            rand::rng().fill_bytes(&mut k);
            k
        }
    };
    let principals = principals::PrincipalStore::new(catalog.warehouse().clone());
    let signer = signer::Signer::from_env(catalog.warehouse());
    Ok(Arc::new(App {
        auth: auth::Authenticator::new(
            principals,
            &key,
            config.token_ttl,
            config.principal_cache_ttl,
        ),
        idempotency: idempotency::Replays::default(),
        signer,
        public_url: public_url.trim_end_matches('/').to_string(),
        idempotency_lifetime: config.idempotency_lifetime,
        commit_policy: floe_table_format::RetryPolicy {
            max_elapsed: (config.request_timeout / 2)
                .min(floe_table_format::RetryPolicy::default().max_elapsed),
            ..floe_table_format::RetryPolicy::default()
        },
        catalog,
    }))
}

/// Serve `catalog` as a REST catalog on `listener` and, when given, over the Postgres wire
/// protocol ([`pg`]) on its own listener, until `shutdown` resolves.
pub async fn serve_all(
    catalog: Catalog,
    config: ServerConfig,
    listener: tokio::net::TcpListener,
    pg: Option<(tokio::net::TcpListener, pg::PgConfig)>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let app = app(catalog, &config, public_url).map_err(std::io::Error::other)?;
    let (stop, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut rest_stop = stop.subscribe();
    let rest =
        axum::serve(listener, router(app.clone(), &config)).with_graceful_shutdown(async move {
            let _ = rest_stop.recv().await;
        });
    let pg_task = pg.map(|(l, c)| {
        let mut pg_stop = stop.subscribe();
        tokio::spawn(pg::serve_pg(app, c, l, async move {
            let _ = pg_stop.recv().await;
        }))
    });
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(());
    });
    rest.await?;
    if let Some(t) = pg_task {
        t.await.map_err(std::io::Error::other)??;
    }
    Ok(())
}

/// Serve `catalog` on `listener` until `shutdown` resolves, then finish the requests in
/// flight and return.
pub async fn serve(
    catalog: Catalog,
    config: ServerConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_all(catalog, config, listener, None, shutdown).await
}
