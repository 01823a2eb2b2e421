//! `floe serve` and `floe principal …`: Floe as an Iceberg REST catalog.

use std::time::Duration;

use anyhow::{Context, Result};
use floe_catalog::Catalog;
use floe_server::principals::PrincipalStore;

use crate::output;

/// `floe serve` flags.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address of the Iceberg REST catalog.
    #[arg(long, default_value = "127.0.0.1:8181")]
    rest: String,
    /// The URL clients reach the server at (handed to them for S3 signing), when it is
    /// not http://ADDRESS (behind a proxy, on another interface).
    #[arg(long)]
    public_url: Option<String>,
    /// Bearer-token lifetime in seconds.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=86400))]
    token_ttl: u64,
    /// Seconds a principal's record is reused before it is read again (a revocation takes
    /// effect within this, at most 86400); 0 reads it on every request.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=86400))]
    principal_cache: u64,
    /// Largest request body in MiB.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    max_body_mib: u64,
    /// Longest a request may take, in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    request_timeout: u64,
    /// Also serve SQL over the Postgres wire protocol at this address (psql, Grafana,
    /// drivers): user = principal name, password = its secret.
    #[arg(long, value_name = "ADDR")]
    pg: Option<String>,
    /// Longest an SQL statement may run, in seconds (a client's `SET statement_timeout`
    /// overrides it); 0: no limit.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(0..=86400))]
    statement_timeout: u64,
    /// Read Parquet with iceberg's reader instead of DataFusion's scan (for comparisons).
    #[arg(long, hide = true)]
    iceberg_reader: bool,
    /// Cap on the memory of one principal's SQL (e.g. 512MB, 2GiB): sorts, joins and
    /// aggregations spill to disk beyond it.
    #[arg(long, value_name = "SIZE", value_parser = crate::values::size)]
    memory_limit: Option<usize>,
    /// Bound of the SQL endpoint's cache of objects that never change (metadata versions,
    /// manifests, Parquet footers and pages), e.g. 256MiB; 0 turns it off.
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = crate::values::size_or_zero)]
    cache_size: usize,
    /// TLS certificate chain (PEM) for --pg; clients connect with sslmode=require.
    #[arg(long, value_name = "FILE", requires = "pg_tls_key")]
    pg_tls_cert: Option<std::path::PathBuf>,
    /// TLS private key (PEM) for --pg.
    #[arg(long, value_name = "FILE", requires = "pg_tls_cert")]
    pg_tls_key: Option<std::path::PathBuf>,
}

/// `floe principal …`
#[derive(clap::Subcommand, Debug)]
pub enum PrincipalCommand {
    /// Create a principal; prints its secret once (only a salted hash is stored).
    Add {
        /// Its name (the OAuth client id), e.g. dev_042 or installer_acme.
        name: String,
        /// read:PATTERN, write:PATTERN or admin (repeatable). PATTERN: ns, ns.table,
        /// ns.* or ns.prefix*.
        #[arg(long = "grant", value_name = "GRANT", required = true)]
        grants: Vec<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List principals and their grants.
    List {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a principal; its tokens stop working.
    Revoke {
        /// Its name.
        name: String,
    },
}

/// Run the server until Ctrl-C or SIGTERM.
pub async fn serve(catalog: Catalog, args: ServeArgs) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(&args.rest)
        .await
        .with_context(|| format!("cannot listen on --rest {}", args.rest))?;
    let addr = listener.local_addr()?;
    let principals = PrincipalStore::new(catalog.warehouse().clone())
        .list()
        .await
        .context("cannot read the principals")?;
    let config = floe_server::ServerConfig {
        public_url: args.public_url.clone(),
        token_ttl: Duration::from_secs(args.token_ttl),
        principal_cache_ttl: Duration::from_secs(args.principal_cache),
        max_body_bytes: (args.max_body_mib as usize) << 20,
        request_timeout: Duration::from_secs(args.request_timeout),
        ..floe_server::ServerConfig::default()
    };
    println!(
        "floe serve: Iceberg REST catalog on http://{addr}/ (warehouse {}, {} principal(s))",
        catalog.warehouse().url(),
        principals.len()
    );
    if principals.is_empty() {
        println!("  no principals yet: add one with `floe principal add NAME --grant admin`");
    }
    let pg = match &args.pg {
        Some(a) => {
            let l = tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on --pg {a}"))?;
            println!(
                "floe serve: Postgres wire protocol on {} (psql \"host={} port={} user=PRINCIPAL\")",
                l.local_addr()?,
                l.local_addr()?.ip(),
                l.local_addr()?.port()
            );
            Some(l)
        }
        None => None,
    };
    let pg_config = floe_server::pg::PgConfig {
        memory_limit: args.memory_limit,
        statement_timeout: (args.statement_timeout > 0)
            .then(|| Duration::from_secs(args.statement_timeout)),
        session_ttl: Duration::from_secs(args.principal_cache.max(1)),
        tls: args.pg_tls_cert.clone().zip(args.pg_tls_key.clone()),
        cache_bytes: args.cache_size as u64,
        native_scan: !args.iceberg_reader,
    };
    if let Some((cert, key)) = &pg_config.tls {
        floe_server::pg::tls_acceptor(cert, key).context("invalid --pg-tls-cert/--pg-tls-key")?;
    }
    floe_server::serve_all(
        catalog,
        config,
        listener,
        pg.map(|l| (l, pg_config)),
        shutdown_signal(),
    )
    .await
    .context("the server failed")?;
    eprintln!("floe serve: stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// `floe principal …`
pub async fn principal(catalog: &Catalog, cmd: PrincipalCommand) -> Result<()> {
    let store = PrincipalStore::new(catalog.warehouse().clone());
    match cmd {
        PrincipalCommand::Add { name, grants, json } => {
            let (p, secret) = store.add(&name, &grants).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "name": p.name, "secret": secret, "grants": p.grants,
                        "credential": format!("{}:{secret}", p.name) })
                );
            } else {
                println!("principal {} created with {}", p.name, p.grants.join(", "));
                println!("credential (shown once): {}:{secret}", p.name);
            }
        }
        PrincipalCommand::List { json } => {
            let list = store.list().await?;
            if json {
                let v: Vec<_> = list
                    .iter()
                    .map(|p| serde_json::json!({ "name": p.name, "grants": p.grants, "created-ms": p.created_ms }))
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|p| vec![p.name.clone(), p.grants.join(" ")])
                    .collect();
                print!("{}", output::table(&["principal", "grants"], &rows));
            }
        }
        PrincipalCommand::Revoke { name } => {
            store.revoke(&name).await?;
            println!("principal {name} revoked");
        }
    }
    Ok(())
}
