//! `floe sync`: project a gateway's local tables into the cloud warehouse.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use floe_catalog::Catalog;
use floe_sync::{
    PruneOptions, RateLimiter, SyncOptions, SyncProgress, SyncReport, TableSyncReport,
};
use floe_table_format::Warehouse;

use crate::output;
use crate::values::DurationArg;

/// Arguments of `floe sync`.
#[derive(clap::Args, Debug)]
pub struct SyncArgs {
    /// The local warehouse (default: --warehouse), e.g. file:///var/lib/floe.
    #[arg(long, value_name = "URL")]
    from: Option<String>,
    /// The cloud: a warehouse (s3://bucket/fleet) or a Floe REST catalog (http://host:8181,
    /// with --credential; the gateway then holds no S3 keys).
    #[arg(long, value_name = "URL")]
    to: String,
    /// NAMESPACE or NAMESPACE.TABLE (repeatable; default: every local table).
    tables: Vec<String>,
    /// Print what would be projected (tables, snapshots, files, bytes); write nothing.
    #[arg(long)]
    dry_run: bool,
    /// One cloud commit per local append, files copied as they are (the projection before
    /// squashing: more cloud requests, and small files the cloud must compact later).
    #[arg(long)]
    per_commit: bool,
    /// Start another cloud commit when one would carry more local bytes than this (the
    /// small files of each partition are combined into one file per commit).
    #[arg(long, value_name = "SIZE", value_parser = crate::values::size, default_value = "1GB")]
    max_commit_bytes: usize,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Cap the copy bandwidth (bytes per second; 512k, 1MB, …) for metered links.
    #[arg(long, value_name = "SIZE", value_parser = crate::values::size)]
    max_bytes_per_sec: Option<usize>,
    /// After a successful sync, drop local data older than this (30d, 12h) that the cloud
    /// already holds; never anything not yet projected.
    #[arg(long, value_name = "DURATION", value_parser = crate::values::duration,
          allow_hyphen_values = true)]
    prune_local_older_than: Option<DurationArg>,
    /// The timestamp column pruning judges age by.
    #[arg(long, default_value = "ts")]
    prune_column: String,
    /// Grace period of the vacuum after pruning (30s, 15m, 1h).
    #[arg(long, value_name = "DURATION", default_value = "1h",
          value_parser = crate::values::duration, allow_hyphen_values = true)]
    prune_grace: DurationArg,
}

/// A progress bar on stderr (bytes; files in the message).
struct Bar {
    bar: ProgressBar,
    files_total: AtomicU64,
    files_done: AtomicU64,
}

impl Bar {
    fn message(&self) {
        self.bar.set_message(format!(
            "{}/{} files",
            self.files_done.load(Ordering::Relaxed),
            self.files_total.load(Ordering::Relaxed)
        ));
    }
}

impl SyncProgress for Bar {
    fn planned(&self, files: u64, bytes: u64) {
        self.files_total.fetch_add(files, Ordering::Relaxed);
        self.bar.inc_length(bytes);
        self.message();
    }
    fn copied(&self, bytes: u64) {
        self.bar.inc(bytes);
    }
    fn file_done(&self, skipped: bool, bytes: u64) {
        if skipped {
            self.bar.inc(bytes);
        }
        self.files_done.fetch_add(1, Ordering::Relaxed);
        self.message();
    }
}

pub async fn run(catalog: &Catalog, args: SyncArgs, credential: Option<&str>) -> Result<()> {
    let local = match &args.from {
        Some(url) => Catalog::new(Warehouse::open(url)?),
        None => catalog.clone(),
    };
    let cloud = if args.to.starts_with("http://") || args.to.starts_with("https://") {
        // A Floe REST catalog: the gateway needs no S3 keys, only its credential.
        let Some(credential) = credential else {
            bail!(
                "--to {} is a REST catalog: give --credential NAME:SECRET (or FLOE_CREDENTIAL)",
                args.to
            );
        };
        let backend = floe_catalog::rest::RestBackend::connect(&args.to, credential)
            .await
            .with_context(|| format!("cannot connect to the REST catalog {}", args.to))?;
        Catalog::with_rest(backend)
    } else {
        Catalog::new(Warehouse::open(&args.to)?)
    };
    if cloud.warehouse().url() == local.warehouse().url() {
        bail!(
            "--from and --to are the same warehouse ({})",
            cloud.warehouse().url()
        );
    }
    let prune = match &args.prune_local_older_than {
        Some(d) => Some(PruneOptions {
            older_than: d.value,
            column: args.prune_column.clone(),
            grace: args.prune_grace.value,
        }),
        None => None,
    };
    let bar = (std::io::stderr().is_terminal() && !args.dry_run).then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {msg}")
                .expect("static template is valid"),
        );
        Arc::new(Bar {
            bar,
            files_total: AtomicU64::new(0),
            files_done: AtomicU64::new(0),
        })
    });
    let mut options = SyncOptions {
        dry_run: args.dry_run,
        per_commit: args.per_commit,
        max_commit_bytes: args.max_commit_bytes as u64,
        limiter: args
            .max_bytes_per_sec
            .map(|n| Arc::new(RateLimiter::new(n as u64))),
        ..SyncOptions::default()
    };
    if let Some(b) = &bar {
        options.progress = b.clone();
    }
    let result = floe_sync::sync(&local, &cloud, &args.tables, &options, prune.as_ref()).await;
    if let Some(b) = &bar {
        b.bar.finish_and_clear();
    }
    let report = result?;
    print_report(&report, &args, cloud.warehouse());
    if !report.failed.is_empty() {
        let (first, why) = &report.failed[0];
        bail!(
            "{} of {} tables failed to sync (first: {first}: {why})",
            report.failed.len(),
            report.failed.len() + report.tables.len()
        );
    }
    Ok(())
}

fn print_report(report: &SyncReport, args: &SyncArgs, cloud: &Warehouse) {
    let sum = |f: fn(&TableSyncReport) -> u64| -> u64 { report.tables.iter().map(f).sum() };
    let snapshots = sum(|t| t.snapshots_projected as u64);
    let copied = sum(|t| t.files_copied);
    let skipped = sum(|t| t.files_skipped);
    let bytes = sum(|t| t.bytes_copied);
    let commits = sum(|t| t.cloud_commits as u64);
    let combined = sum(|t| t.files_combined);
    let requests = sum(|t| t.requests_planned);
    if args.json {
        println!(
            "{}",
            json!({
                "to": cloud.url(),
                "dry_run": args.dry_run,
                "tables": report.tables.len(),
                "snapshots_projected": snapshots,
                "cloud_commits": commits,
                "files_combined": combined,
                "requests_planned": requests,
                "files_copied": copied,
                "files_skipped": skipped,
                "bytes_copied": bytes,
                "already_in_sync": report.already_in_sync(),
                "failed": report.failed.iter().map(|(t, e)| json!({"table": t, "error": e})).collect::<Vec<_>>(),
                "per_table": report.tables,
                "pruned": report.pruned.iter().map(|(t, p)| json!({"table": t, "report": p})).collect::<Vec<_>>(),
            })
        );
        return;
    }
    let verb = if args.dry_run {
        "would project"
    } else {
        "projected"
    };
    for t in &report.tables {
        if t.already_in_sync {
            continue;
        }
        println!(
            "{}: {verb} {} snapshot(s) in {} cloud commit(s), {} file(s) {} ({}){}, {} already there{}{}",
            t.table,
            t.snapshots_projected,
            t.cloud_commits,
            t.files_copied,
            if args.dry_run { "to send" } else { "copied" },
            output::bytes(t.bytes_copied),
            match t.files_combined {
                0 => String::new(),
                n => format!(", combined from {n} small file(s)"),
            },
            t.files_skipped,
            match args.dry_run {
                true => format!(", about {} cloud request(s)", t.requests_planned),
                false => String::new(),
            },
            if t.catch_up {
                " (catch-up of expired local history)"
            } else {
                ""
            }
        );
    }
    for (t, p) in &report.pruned {
        println!(
            "{t}: pruned locally: {} file(s) dropped, {} snapshot(s) expired, {} object(s) deleted",
            p.files_dropped, p.snapshots_expired, p.objects_deleted
        );
    }
    let in_sync = report.tables.iter().filter(|t| t.already_in_sync).count();
    println!(
        "{} table(s) → {}: {snapshots} snapshot(s) {verb}, {copied} file(s) ({}) copied, {skipped} skipped, {in_sync} already in sync{}",
        report.tables.len(),
        cloud.url(),
        output::bytes(bytes),
        if args.dry_run { " (dry run: nothing written)" } else { "" }
    );
}
