//! `floe serve --pg ADDR`: Floe's SQL over the Postgres wire protocol (v3), for psql,
//! Grafana, BI tools and drivers, through `datafusion-postgres` (which brings the
//! `pg_catalog` tables clients query on connect, and the simple and extended query
//! protocols over DataFusion).
//!
//! - **Who.** The user is a principal's name and the password its secret (cleartext
//!   password authentication: use it over loopback or TLS). The answer to a wrong secret
//!   and to an unknown name is the same.
//! - **What it sees.** Each principal queries through a session of its own whose catalog
//!   holds only what its grants let it read ([`floe_query::Scope`]): namespaces without a
//!   readable table are absent, listings, `information_schema`, `pg_catalog` and
//!   `all_devices` hold only readable tables, and naming any other table in a visible
//!   namespace is "permission denied", whether it exists or not. A revoked principal's
//!   next query is refused.
//! - **Fresh.** Tables are resolved when a query is planned, so each query reads the
//!   heads as they are then: a commit is visible to the very next query.
//! - **Stopping.** A query ends early on a cancel request (psql's Ctrl-C, a driver's
//!   cancel) and after the statement timeout (`--pg-statement-timeout`, or `SET
//!   statement_timeout`): its stream is dropped, which stops DataFusion's work.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::prelude::SessionContext;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_postgres::pgwire;
use datafusion_postgres::{DfSessionService, Parser};
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
    DefaultServerParameterProvider, StartupHandler,
};
use pgwire::api::cancel::CancelHandler;
use pgwire::api::portal::Portal;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionHandle, ConnectionManager, PgWireConnectionState,
    PgWireServerHandlers, PidSecretKeyGenerator, RandomPidSecretKeyGenerator, Type, METADATA_USER,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use floe_query::{EngineOptions, QueryEngine, Scope};
use floe_table_format::{Namespace, TableIdent};

use crate::grants::{Grants, Level};
use crate::App;

/// How the SQL endpoint runs.
#[derive(Debug, Clone, Default)]
pub struct PgConfig {
    /// Cap on the memory of one principal's queries (sorts, joins and aggregations spill
    /// beyond it).
    pub memory_limit: Option<usize>,
    /// Longest a statement may run (a client's `SET statement_timeout` overrides it).
    pub statement_timeout: Option<Duration>,
    /// How long a principal's session (its namespaces and table listings) is reused.
    pub session_ttl: Duration,
    /// The warm cache's byte bound (see [`crate::cache`]); 0 turns it off.
    pub cache_bytes: u64,
    /// TLS: the certificate chain and private key (PEM files). Clients that ask for TLS
    /// (`sslmode=require`) get it; without this, they are told the server has none.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Read Parquet with DataFusion's own scan (false: iceberg's reader, for comparisons).
    pub native_scan: bool,
}

/// A TLS acceptor from PEM files: the certificate chain and a PKCS#8, PKCS#1 or SEC1 key.
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> std::io::Result<pgwire::tokio::TlsAcceptor> {
    use std::io::{BufReader, Error, ErrorKind};
    use tokio_rustls::rustls;
    let open = |p: &std::path::Path| {
        std::fs::File::open(p)
            .map(BufReader::new)
            .map_err(|e| Error::new(e.kind(), format!("{}: {e}", p.display())))
    };
    let certs = rustls_pemfile::certs(&mut open(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::new(ErrorKind::InvalidData, format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("{}: no PEM certificate in it", cert.display()),
        ));
    }
    let private = rustls_pemfile::private_key(&mut open(key)?)
        .map_err(|e| Error::new(ErrorKind::InvalidData, format!("{}: {e}", key.display())))?
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidData,
                format!("{}: no PEM private key in it", key.display()),
            )
        })?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .and_then(|b| b.with_no_client_auth().with_single_cert(certs, private))
    .map_err(|e| Error::new(ErrorKind::InvalidData, format!("TLS setup: {e}")))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Where a principal's session records who it is (set at login).
const INCARNATION_KEY: &str = "floe.incarnation";

/// A principal's grants as a query scope.
#[derive(Debug)]
struct GrantScope(Grants);

impl Scope for GrantScope {
    fn sees(&self, namespace: &Namespace) -> bool {
        self.0.sees(namespace)
    }

    fn reads(&self, table: &TableIdent) -> bool {
        self.0.allows(Level::Read, table)
    }
}

/// What the connections share.
/// iceberg tables the endpoint keeps by metadata location (each with its parsed manifests).
const SHARED_TABLES: usize = 4096;

struct Shared {
    app: Arc<App>,
    /// The catalog queries read, through the warm cache.
    catalog: floe_catalog::Catalog,
    cache: Option<Arc<crate::cache::CachingStore>>,
    /// iceberg tables by metadata location, shared by every session: a warm query
    /// parses no manifest list or manifest again.
    tables: Arc<floe_query::tables::TableCache>,
    config: PgConfig,
    /// Sessions by principal, incarnation and grants, with when they were built.
    sessions: Mutex<HashMap<String, (Instant, Arc<DfSessionService>)>>,
    /// Parses statements without a session (parameter and result types of a plan).
    plain: Arc<Parser>,
    connections: Arc<ConnectionManager>,
    keys: RandomPidSecretKeyGenerator,
    /// Each connection's cancel switch, by backend pid (the connection holds it).
    cancels: Mutex<HashMap<i32, (pgwire::messages::startup::SecretKey, Weak<CancelSwitch>)>>,
}

impl Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("pg::Shared").finish()
    }
}

/// One connection's cancel switch: each cancel request moves the generation on and wakes
/// the statement streaming.
#[derive(Default)]
struct CancelSwitch {
    generation: AtomicU64,
    notify: tokio::sync::Notify,
}

fn user_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        code.to_string(),
        message.into(),
    )))
}

impl Shared {
    /// The session of the principal `client` logged in as (built, or reused while young),
    /// after checking the principal still exists as it was at login.
    async fn session<C: ClientInfo + ?Sized>(
        &self,
        client: &C,
    ) -> PgWireResult<Arc<DfSessionService>> {
        let name = client
            .metadata()
            .get(METADATA_USER)
            .cloned()
            .unwrap_or_default();
        let caller = self
            .app
            .auth
            .current(&name)
            .await
            .map_err(|e| user_error("XX000", e.to_string()))?;
        let caller = match caller {
            Some(c) if Some(&c.incarnation) == client.metadata().get(INCARNATION_KEY) => c,
            _ => {
                return Err(user_error(
                    "28000",
                    format!("principal {name} was revoked; connect again"),
                ))
            }
        };
        let key = format!(
            "{}\n{}\n{:?}",
            caller.name, caller.incarnation, caller.grants
        );
        {
            let sessions = self.sessions.lock().expect("never poisoned");
            if let Some((at, s)) = sessions.get(&key) {
                if at.elapsed() < self.config.session_ttl {
                    return Ok(s.clone());
                }
            }
        }
        let options = EngineOptions {
            memory_limit: self.config.memory_limit,
            scope: Some(Arc::new(GrantScope(caller.grants.clone()))),
            tables: Some(self.tables.clone()),
            scan: floe_query::ScanOptions {
                native: self.config.native_scan,
                ..Default::default()
            },
            ..EngineOptions::default()
        };
        let engine = QueryEngine::open_listed(&self.catalog, options)
            .await
            .map_err(|e| user_error("XX000", e.to_string()))?;
        let ctx: SessionContext = engine.context().clone();
        if let Some(cache) = &self.cache {
            ctx.register_udtf(
                "floe_cache",
                Arc::new(crate::cache::CacheTable(cache.clone())),
            );
        }
        setup_pg_catalog(&ctx, "datafusion", EmptyContextProvider)
            .map_err(|e| user_error("XX000", e.to_string()))?;
        let service = Arc::new(DfSessionService::new(Arc::new(ctx)));
        let mut sessions = self.sessions.lock().expect("never poisoned");
        if sessions.len() > 1000 {
            sessions.clear();
        }
        sessions.insert(key, (Instant::now(), service.clone()));
        Ok(service)
    }

    /// Let a query's rows stream until the client cancels it or its statement timeout
    /// passes; then end the stream with the error Postgres gives (57014), which drops
    /// (and so stops) the rest of the query.
    fn guard<C: ClientInfo + ?Sized>(&self, client: &C, response: Response) -> Response {
        let Response::Query(q) = response else {
            return response;
        };
        let switch = client.session_extensions().get::<Arc<CancelSwitch>>();
        let timeout = statement_timeout(client).or(self.config.statement_timeout);
        if switch.is_none() && timeout.is_none() {
            return Response::Query(q);
        }
        let QueryResponse {
            command_tag,
            row_schema,
            data_rows,
            ..
        } = q;
        let start = switch
            .as_ref()
            .map_or(0, |s| s.generation.load(Ordering::SeqCst));
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let state = (data_rows, switch, false);
        let rows = futures::stream::unfold(state, move |(mut rows, switch, done)| async move {
            if done {
                return None;
            }
            let cancelled = async {
                match &switch {
                    Some(s) => loop {
                        let notified = s.notify.notified();
                        if s.generation.load(Ordering::SeqCst) != start {
                            return;
                        }
                        notified.await;
                    },
                    None => std::future::pending().await,
                }
            };
            let expired = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                next = rows.next() => next.map(|r| (r, (rows, switch, false))),
                () = cancelled => Some((
                    Err(user_error("57014", "canceling statement due to user request")),
                    (rows, switch, true),
                )),
                () = expired => Some((
                    Err(user_error("57014", "canceling statement due to statement timeout")),
                    (rows, switch, true),
                )),
            }
        });
        let mut q = QueryResponse::new(row_schema, rows);
        q.command_tag = command_tag;
        Response::Query(q)
    }
}

/// The client's `SET statement_timeout` (milliseconds, as datafusion-postgres stores it).
fn statement_timeout<C: ClientInfo + ?Sized>(client: &C) -> Option<Duration> {
    client
        .metadata()
        .get("statement_timeout_ms")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
}

/// A scope's refusal as Postgres reports one (SQLSTATE 42501), not as an internal error.
fn refusal(e: PgWireError) -> PgWireError {
    let text = e.to_string();
    match text.find("permission denied for table ") {
        Some(at) => user_error("42501", text[at..].to_string()),
        None => e,
    }
}

/// Login: a cleartext password checked against the principal's salted hash.
struct Startup(Arc<Shared>);

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::CleartextPassword,
                    ))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(pwd) => {
                let pwd = pwd.into_password()?;
                let name = client
                    .metadata()
                    .get(METADATA_USER)
                    .cloned()
                    .unwrap_or_default();
                let caller = match self
                    .0
                    .app
                    .auth
                    .check_credentials(&name, &pwd.password)
                    .await
                {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::info!(principal = %name, peer = %client.socket_addr(), error = %e, "pg login refused");
                        return Err(PgWireError::InvalidPassword(name));
                    }
                };
                client
                    .metadata_mut()
                    .insert(INCARNATION_KEY.to_string(), caller.incarnation.clone());
                let (pid, secret) = self.0.keys.generate(client);
                client.set_pid_and_secret_key(pid, secret.clone());
                let (handle, guard) = self.0.connections.register(pid, secret.clone());
                client
                    .session_extensions()
                    .insert::<Arc<ConnectionHandle>>(handle);
                client.session_extensions().insert(guard);
                let switch = Arc::new(CancelSwitch::default());
                {
                    let mut cancels = self.0.cancels.lock().expect("never poisoned");
                    cancels.retain(|_, (_, w)| w.strong_count() > 0);
                    cancels.insert(pid, (secret, Arc::downgrade(&switch)));
                }
                client.session_extensions().insert(switch);
                tracing::info!(principal = %name, peer = %client.socket_addr(), "pg login");
                finish_authentication(client, &DefaultServerParameterProvider::default()).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// A cancel request: the running statement (planning or streaming) stops.
struct Cancel(Arc<Shared>);

#[async_trait]
impl CancelHandler for Cancel {
    async fn on_cancel_request(&self, request: CancelRequest) {
        tracing::info!(pid = request.pid, "pg cancel request");
        self.0
            .connections
            .cancel(request.pid, &request.secret_key)
            .await;
        let switch = {
            let cancels = self.0.cancels.lock().expect("never poisoned");
            cancels
                .get(&request.pid)
                // A cancel request does not say which protocol version its key has: compare
                // the bytes.
                .filter(|(secret, _)| secret.to_bytes() == request.secret_key.to_bytes())
                .and_then(|(_, w)| w.upgrade())
        };
        if let Some(s) = switch {
            s.generation.fetch_add(1, Ordering::SeqCst);
            s.notify.notify_waiters();
        }
    }
}

/// Queries, simple and extended, each run in the session of the client's principal.
struct Queries(Arc<Shared>);

#[async_trait]
impl SimpleQueryHandler for Queries {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self.0.session(client).await?;
        let responses = SimpleQueryHandler::do_query(session.as_ref(), client, query)
            .await
            .map_err(refusal)?;
        Ok(responses
            .into_iter()
            .map(|r| self.0.guard(client, r))
            .collect())
    }
}

/// Parses a statement in the session of the client's principal.
struct SessionParser(Arc<Shared>);

#[async_trait]
impl QueryParser for SessionParser {
    type Statement = <Parser as QueryParser>::Statement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Self::Statement>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let session = self.0.session(client).await?;
        ExtendedQueryHandler::query_parser(session.as_ref())
            .parse_sql(client, sql, types)
            .await
            .map_err(refusal)
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        self.0.plain.get_parameter_types(stmt)
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        column_format: Option<&pgwire::api::portal::Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        self.0.plain.get_result_schema(stmt, column_format)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Queries {
    type Statement = <Parser as QueryParser>::Statement;
    type QueryParser = SessionParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        Arc::new(SessionParser(self.0.clone()))
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self.0.session(client).await?;
        let response = ExtendedQueryHandler::do_query(session.as_ref(), client, portal, max_rows)
            .await
            .map_err(refusal)?;
        Ok(self.0.guard(client, response))
    }
}

/// The handlers pgwire asks for.
struct Handlers {
    startup: Arc<Startup>,
    queries: Arc<Queries>,
    cancel: Arc<Cancel>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.queries.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.queries.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }
}

/// Serve the SQL endpoint on `listener` until `shutdown` resolves.
pub async fn serve_pg(
    app: Arc<App>,
    config: PgConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = match &config.tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key)?),
        None => None,
    };
    let cache = (config.cache_bytes > 0).then(|| {
        Arc::new(crate::cache::CachingStore::new(
            app.catalog.warehouse().store().clone(),
            config.cache_bytes,
        ))
    });
    let catalog = match &cache {
        Some(c) => app
            .catalog
            .with_store(c.clone())
            .map_err(std::io::Error::other)?,
        None => app.catalog.clone(),
    };
    let shared = Arc::new(Shared {
        tables: Arc::new(floe_query::tables::TableCache::new(SHARED_TABLES)),
        catalog,
        cache,
        app,
        config,
        sessions: Mutex::new(HashMap::new()),
        plain: ExtendedQueryHandler::query_parser(&DfSessionService::new(Arc::new(
            SessionContext::new(),
        ))),
        connections: Arc::new(ConnectionManager::new()),
        keys: RandomPidSecretKeyGenerator::default(),
        cancels: Mutex::new(HashMap::new()),
    });
    let handlers = Arc::new(Handlers {
        startup: Arc::new(Startup(shared.clone())),
        queries: Arc::new(Queries(shared.clone())),
        cancel: Arc::new(Cancel(shared)),
    });
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "pg accept failed");
                        continue;
                    }
                };
                let handlers = handlers.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                        tracing::info!(%peer, error = %e, "pg connection ended with an error");
                    }
                });
            }
        }
    }
}
