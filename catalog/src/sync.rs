//! `floe sync` over a local warehouse: which tables to project, a few at a time, into the
//! cloud warehouse (the projection of one table is [`floe_table_format::sync`]).
//!
//! A cloud that cannot be reached stops the whole run at once (every table would fail the
//! same way, each after its own retries); any other failure of one table is reported and
//! the other tables still sync.

use std::time::Duration;

use futures::stream::{self, StreamExt};

use floe_table_format::sync::{self, PruneReport, SyncOptions, TableSyncReport};
use floe_table_format::{Namespace, TableIdent, Warehouse};

use crate::{Catalog, Error, Result};

/// Tables synced at once.
const TABLE_CONCURRENCY: usize = 4;

/// `--prune-local-older-than`: what to drop locally after a table synced.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Drop projected data whose rows are all older than this.
    pub older_than: Duration,
    /// The timestamp column rows are judged by.
    pub column: String,
    /// Vacuum grace period.
    pub grace: Duration,
}

/// What a sync run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SyncReport {
    /// One entry per table that synced.
    pub tables: Vec<TableSyncReport>,
    /// Tables that failed, with the error.
    pub failed: Vec<(String, String)>,
    /// Local pruning per table (with `--prune-local-older-than`).
    pub pruned: Vec<(String, PruneReport)>,
}

impl SyncReport {
    /// Whether every table was already up to date.
    pub fn already_in_sync(&self) -> bool {
        self.failed.is_empty() && self.tables.iter().all(|t| t.already_in_sync)
    }
}

/// The tables a selection names: none = every table of the warehouse; `NS.TABLE` = that
/// table; `NS` = every table in it and in the namespaces below it.
pub async fn select_tables(local: &Catalog, selection: &[String]) -> Result<Vec<TableIdent>> {
    let all_namespaces = local.list_all_namespaces().await?;
    let mut out = Vec::new();
    if selection.is_empty() {
        for ns in &all_namespaces {
            out.extend(local.list_tables(ns).await?);
        }
        return Ok(out);
    }
    for s in selection {
        if let Ok(ident) = TableIdent::parse(s) {
            if local.load_table(&ident).await.is_ok() {
                out.push(ident);
                continue;
            }
        }
        let ns = Namespace::parse(s)?;
        let under: Vec<&Namespace> = all_namespaces
            .iter()
            .filter(|n| n.parts().starts_with(ns.parts()))
            .collect();
        if under.is_empty() {
            return Err(Error::NamespaceNotFound {
                namespace: format!("{s} (neither a table nor a namespace of the local warehouse)"),
            });
        }
        for n in under {
            out.extend(local.list_tables(n).await?);
        }
    }
    out.sort_by_key(|t| t.to_string());
    out.dedup();
    Ok(out)
}

/// Project the selected local tables into `cloud`, then prune them locally if asked.
pub async fn sync(
    local: &Catalog,
    cloud: &Warehouse,
    selection: &[String],
    options: &SyncOptions,
    prune: Option<&PruneOptions>,
) -> Result<SyncReport> {
    let tables = select_tables(local, selection).await?;
    let mut runs = stream::iter(tables)
        .map(|ident| async move {
            let result: Result<(TableSyncReport, Option<PruneReport>)> = async {
                let mut table = local.load_table(&ident).await?;
                let report = sync::sync_table(&mut table, cloud, options).await?;
                let pruned = match prune {
                    Some(p) if !options.dry_run => {
                        Some(sync::prune_local(&mut table, p.older_than, &p.column, p.grace).await?)
                    }
                    _ => None,
                };
                Ok((report, pruned))
            }
            .await;
            (ident, result)
        })
        .buffer_unordered(TABLE_CONCURRENCY);
    let mut report = SyncReport::default();
    while let Some((ident, result)) = runs.next().await {
        match result {
            Ok((r, pruned)) => {
                report.tables.push(r);
                if let Some(p) = pruned {
                    report.pruned.push((ident.to_string(), p));
                }
            }
            Err(Error::Table(e @ floe_table_format::Error::Unreachable { .. })) => {
                return Err(Error::Table(e))
            }
            // The link dropped in the middle of a table: every other table would fail the
            // same way after its own retries, so stop here (what was copied is reused by
            // the next run; nothing half-committed exists).
            Err(Error::Table(e)) if link_lost(&e, cloud.url()) => {
                return Err(Error::Table(floe_table_format::Error::Unreachable {
                    url: cloud.url().to_string(),
                    attempts: 1,
                    source: Box::new(e),
                }))
            }
            Err(e) => {
                tracing::warn!(table = %ident, error = %e, "sync failed");
                report.failed.push((ident.to_string(), error_chain(&e)));
            }
        }
    }
    report.tables.sort_by(|a, b| a.table.cmp(&b.table));
    report.failed.sort();
    report.pruned.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(report)
}

/// A transient store failure on an object of the cloud warehouse.
fn link_lost(e: &floe_table_format::Error, cloud_url: &str) -> bool {
    use floe_table_format::Error as E;
    match e {
        E::Read { location, source }
        | E::Write { location, source }
        | E::List { location, source } => {
            location.starts_with(cloud_url) && floe_table_format::error::is_transient(source)
        }
        _ => false,
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
