//! One function per verb; each calls into the libraries.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use floe_catalog::Catalog;
use floe_table_format::iceberg::spec::{TableMetadata, Transform};
use floe_table_format::ingest::{self, AppendReport};
use floe_table_format::schema::{self, DEFAULT_PARTITION};
use floe_table_format::{
    CommitOptions, Namespace, RetryPolicy, Table, TableDefinition, TableIdent, Warehouse,
    COMMIT_ID_KEY,
};
use serde_json::json;

use crate::output;
use crate::{Cli, Command, DefinitionArgs};

pub async fn run(cli: Cli) -> Result<()> {
    let catalog = match cli.catalog.as_deref() {
        None | Some("") | Some("warehouse") => Catalog::new(Warehouse::open(&cli.warehouse)?),
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
            let Some(credential) = cli.credential.as_deref() else {
                bail!("--catalog {url} is a REST catalog: give --credential NAME:SECRET (or FLOE_CREDENTIAL)");
            };
            let backend = floe_catalog::rest::RestBackend::connect(url, credential)
                .await
                .with_context(|| format!("cannot connect to the REST catalog {url}"))?;
            Catalog::with_rest(backend)
        }
        Some(url) => {
            let warehouse = Warehouse::open(&cli.warehouse)?;
            let Some(path) = url.strip_prefix("sqlite://") else {
                bail!("invalid --catalog '{url}': expected sqlite:///path/to/catalog.db or http://host:port");
            };
            let backend = floe_catalog::sql_backend::SqlBackend::open(
                std::path::Path::new(path),
                &cli.catalog_name,
            )?;
            Catalog::with_sql(warehouse, backend)
        }
    };
    let credential = cli.credential.clone();
    match cli.command {
        Command::Create {
            table,
            definition,
            json,
        } => create(&catalog, &table, &definition, json).await,
        Command::Append {
            table,
            files,
            create,
            evolve,
            definition,
            commit_id,
            max_attempts,
            commit_timeout,
            json,
        } => {
            let policy = RetryPolicy {
                max_attempts,
                max_elapsed: Duration::from_secs(commit_timeout),
                ..RetryPolicy::default()
            };
            let mut options = CommitOptions {
                policy,
                ..CommitOptions::default()
            };
            if let Some(id) = commit_id {
                options.commit_id = id;
            }
            let evolve = evolve.then_some(floe_table_format::evolve::Evolution::AddColumns);
            let input = (files.as_slice(), evolve);
            append(&catalog, &table, input, create, &definition, options, json).await
        }
        Command::Alter { table, partition } => {
            let ident = TableIdent::parse(&table)?;
            let mut t = catalog.load_table(&ident).await?;
            let done = t
                .alter_partition(&partition, &RetryPolicy::default())
                .await?;
            let spec = t.metadata().default_partition_spec();
            match done.already_committed {
                true => println!("{ident} is already partitioned by {partition}"),
                false => println!(
                    "{ident}: partition spec {} ({partition}) for new data, version {}",
                    spec.spec_id(),
                    done.version
                ),
            }
            Ok(())
        }
        Command::Tables {
            namespace,
            limit,
            after,
            json,
        } => match (
            namespace.as_deref(),
            limit.or(after.as_ref().map(|_| usize::MAX)),
        ) {
            (Some(ns), Some(limit)) => {
                let ns = Namespace::parse(ns)?;
                let (page, next) = catalog
                    .list_tables_page(&ns, after.as_deref(), limit)
                    .await?;
                let names: Vec<String> = page.iter().map(|t| t.to_string()).collect();
                if json {
                    println!("{}", json!({"tables": names, "next": next}));
                } else {
                    for n in names {
                        println!("{n}");
                    }
                    if let Some(next) = next {
                        eprintln!("more: --after {next}");
                    }
                }
                Ok(())
            }
            _ => tables(&catalog, namespace.as_deref(), json).await,
        },
        Command::Describe { table, json } => describe(&catalog, &table, json).await,
        Command::Snapshots { table, json } => snapshots(&catalog, &table, json).await,
        Command::Check { table, json } => check(&catalog, &table, json).await,
        Command::Namespace(cmd) => crate::namespaces::run(&catalog, cmd).await,
        Command::Drop { table, purge } => {
            let ident = TableIdent::parse(&table)?;
            let n = catalog.drop_table(&ident, purge).await?;
            println!(
                "dropped {ident} ({n} objects deleted{})",
                if purge {
                    ", data purged"
                } else {
                    "; data files kept"
                }
            );
            Ok(())
        }
        Command::Compact { table, target_mib } => {
            let ident = TableIdent::parse(&table)?;
            let mut t = catalog.load_table(&ident).await?;
            let report = floe_table_format::rewrite::compact(&mut t, target_mib << 20).await?;
            match &report.rewrite {
                None => println!("{ident}: nothing to compact"),
                Some(r) => println!(
                    "{ident}: replaced {} small files with {} (version {}, snapshot {})",
                    r.removed, r.added, r.version, r.snapshot_id
                ),
            }
            if let Some(note) = skipped_note(&report) {
                println!("{ident}: {note}");
            }
            Ok(())
        }
        Command::Retain {
            table,
            drop_older_than,
            column,
        } => {
            let ident = TableIdent::parse(&table)?;
            let mut t = catalog.load_table(&ident).await?;
            match floe_table_format::rewrite::retain(&mut t, drop_older_than.value, &column).await? {
                None => println!("{ident}: nothing older than {drop_older_than}"),
                Some(r) => println!(
                    "{ident}: dropped {} data files older than {drop_older_than} (version {}, snapshot {})",
                    r.removed, r.version, r.snapshot_id
                ),
            }
            Ok(())
        }
        Command::Maintain {
            namespace,
            vacuum_older_than,
            target_mib,
        } => {
            maintain(
                &catalog,
                &Namespace::parse(&namespace)?,
                vacuum_older_than.value,
                target_mib,
            )
            .await
        }
        Command::Expire {
            table,
            older_than,
            retain_last,
        } => {
            let ident = TableIdent::parse(&table)?;
            let mut t = catalog.load_table(&ident).await?;
            let r =
                floe_table_format::vacuum::expire(&mut t, older_than.value, retain_last).await?;
            println!(
                "{ident}: expired {} snapshot(s), {} remain",
                r.expired.len(),
                r.remaining
            );
            Ok(())
        }
        Command::Vacuum {
            table,
            older_than,
            dry_run,
        } => {
            let ident = TableIdent::parse(&table)?;
            let r = catalog
                .vacuum_table(&ident, older_than.value, dry_run)
                .await?;
            for o in &r.orphans {
                println!("{o}");
            }
            eprintln!(
                "{ident}: {} unreferenced object(s) {}; {} younger than {older_than} kept; {} referenced",
                r.orphans.len(),
                if dry_run { "would be deleted (dry run)" } else { "deleted" },
                r.young,
                r.referenced
            );
            Ok(())
        }
        Command::Rename { from, to } => {
            let (from, to) = (TableIdent::parse(&from)?, TableIdent::parse(&to)?);
            catalog.rename_table(&from, &to).await?;
            println!("renamed {from} to {to}");
            Ok(())
        }
        Command::Register {
            table,
            metadata_location,
        } => {
            let ident = TableIdent::parse(&table)?;
            let t = catalog.register_table(&ident, &metadata_location).await?;
            println!(
                "registered {ident} from {metadata_location}: {} snapshots, metadata at {}",
                t.metadata().snapshots().len(),
                t.metadata_location()
            );
            Ok(())
        }
        Command::Catalog(crate::CatalogCommand::Publish { sql, name }) => {
            let r = floe_catalog::sql::publish(&catalog, &sql, &name).await?;
            println!(
                "published {} namespaces and {} tables to {} as catalog '{name}' ({} stale rows removed)",
                r.namespaces,
                r.tables,
                sql.display(),
                r.removed
            );
            Ok(())
        }
        #[cfg(feature = "query")]
        Command::Sql(args) => crate::sql::run(&catalog, args).await,
        Command::Sync(args) => crate::sync::run(&catalog, args, credential.as_deref()).await,
        #[cfg(feature = "server")]
        Command::Serve(args) => crate::serve::serve(catalog, args).await,
        #[cfg(feature = "server")]
        Command::Principal(cmd) => crate::serve::principal(&catalog, cmd).await,
        Command::Demo {
            devices,
            commits,
            namespace,
        } => crate::demo::run(&catalog, &Namespace::parse(&namespace)?, devices, commits).await,
    }
}

/// Build a table definition from the CLI flags.
pub fn definition(args: &DefinitionArgs) -> Result<TableDefinition> {
    let (schema, default_partition) = if let Some(path) = &args.like {
        let arrow = ingest::parquet_schema(path)?;
        (
            schema::schema_from_arrow(&arrow, &path.display().to_string())?,
            "",
        )
    } else if let Some(path) = &args.schema {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read schema file {}", path.display()))?;
        (
            schema::schema_from_json(&text, &path.display().to_string())?,
            "",
        )
    } else {
        (schema::default_iot_schema(), DEFAULT_PARTITION)
    };
    let partition_expr = args.partition.as_deref().unwrap_or(default_partition);
    let partition = schema::parse_partition_spec(partition_expr, &schema)?;
    let mut properties = HashMap::new();
    for kv in &args.properties {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("invalid --property '{kv}': expected KEY=VALUE");
        };
        properties.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(TableDefinition {
        schema,
        partition,
        properties,
    })
}

async fn create(catalog: &Catalog, name: &str, args: &DefinitionArgs, json: bool) -> Result<()> {
    let ident = TableIdent::parse(name)?;
    let table = catalog.create_table(&ident, definition(args)?).await?;
    if json {
        println!(
            "{}",
            json!({"table": ident.to_string(), "metadata_location": table.metadata_location()})
        );
    } else {
        println!("created {ident} at {}", table.location());
    }
    Ok(())
}

async fn append(
    catalog: &Catalog,
    name: &str,
    (files, evolve): (
        &[std::path::PathBuf],
        Option<floe_table_format::evolve::Evolution>,
    ),
    create: bool,
    args: &DefinitionArgs,
    options: CommitOptions,
    json: bool,
) -> Result<()> {
    let ident = TableIdent::parse(name)?;
    for f in files {
        if !f.is_file() {
            bail!("input file {} does not exist or is not a file", f.display());
        }
    }
    let mut table = if create {
        catalog
            .create_or_load_table(&ident, definition(args)?)
            .await?
    } else {
        // A device's first append creates its table from the namespace's template.
        match catalog.load_or_create_from_template(&ident).await {
            Err(floe_catalog::Error::Table(e @ floe_table_format::Error::TableNotFound { .. })) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "{ident} does not exist and namespace {ns} has no table template; use --create, or set one with `floe namespace set {ns} --template-default`",
                    ns = ident.namespace()
                )));
            }
            other => other?,
        }
    };
    let commit_id = options.commit_id.clone();
    let report: AppendReport = ingest::append_files_evolving(&mut table, files, options, evolve)
        .await
        .map_err(|e| append_failure(&ident, &commit_id, e))?;
    if json {
        println!(
            "{}",
            json!({
                "table": ident.to_string(),
                "rows": report.rows,
                "data_files": report.data_files,
                "bytes": report.bytes,
                "version": report.commit.version.0,
                "snapshot_id": report.commit.snapshot_id,
                "commit_id": commit_id,
                "attempts": report.commit.attempts,
                "already_committed": report.commit.already_committed,
                "metadata_location": table.metadata_location(),
            })
        );
    } else if report.commit.already_committed {
        println!(
            "{ident}: commit {commit_id} was already in snapshot {}; nothing new committed",
            report.commit.snapshot_id
        );
    } else {
        println!(
            "appended {} rows in {} file(s) ({}) to {ident}: version {}, snapshot {}",
            report.rows,
            report.data_files,
            output::bytes(report.bytes),
            report.commit.version,
            report.commit.snapshot_id
        );
    }
    Ok(())
}

async fn tables(catalog: &Catalog, namespace: Option<&str>, json: bool) -> Result<()> {
    let namespaces = match namespace {
        Some(ns) => vec![Namespace::parse(ns)?],
        None => catalog.list_all_namespaces().await?,
    };
    let mut names = Vec::new();
    for ns in &namespaces {
        names.extend(catalog.list_tables(ns).await?.iter().map(|t| t.to_string()));
    }
    if json {
        println!("{}", serde_json::to_string(&names)?);
    } else {
        for n in names {
            println!("{n}");
        }
    }
    Ok(())
}

fn summary_u64(metadata: &TableMetadata, key: &str) -> u64 {
    metadata
        .current_snapshot()
        .and_then(|s| s.summary().additional_properties.get(key))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn describe_json(table: &Table) -> serde_json::Value {
    let m = table.metadata();
    let schema: Vec<_> = m
        .current_schema()
        .as_struct()
        .fields()
        .iter()
        .map(|f| json!({"id": f.id, "name": f.name, "type": f.field_type.to_string(), "required": f.required}))
        .collect();
    let partition: Vec<_> = m
        .default_partition_spec()
        .fields()
        .iter()
        .map(|f| {
            let source = m
                .current_schema()
                .field_by_id(f.source_id)
                .map(|s| s.name.clone())
                .unwrap_or_default();
            json!({"name": f.name, "transform": transform_text(&f.transform, &source)})
        })
        .collect();
    let current = m.current_snapshot().map(|s| {
        json!({
            "snapshot_id": s.snapshot_id(),
            "sequence_number": s.sequence_number(),
            "timestamp_ms": s.timestamp_ms(),
            "operation": s.summary().operation.as_str(),
        })
    });
    json!({
        "table": table.name(),
        "location": table.location(),
        "format_version": m.format_version() as u8,
        "table_uuid": m.uuid().to_string(),
        "version": table.version().0,
        "metadata_location": table.metadata_location(),
        "schema": schema,
        "partition_spec": partition,
        "current_snapshot": current,
        "snapshots": m.snapshots().len(),
        "data_files": summary_u64(m, "total-data-files"),
        "rows": summary_u64(m, "total-records"),
        "bytes": summary_u64(m, "total-files-size"),
        "properties": m.properties(),
    })
}

fn transform_text(t: &Transform, source: &str) -> String {
    match t {
        Transform::Identity => source.to_string(),
        Transform::Bucket(n) => format!("bucket({n}, {source})"),
        Transform::Truncate(w) => format!("truncate({w}, {source})"),
        other => format!("{}({source})", other.to_string().to_lowercase()),
    }
}

async fn describe(catalog: &Catalog, name: &str, json: bool) -> Result<()> {
    let table = catalog.load_table(&TableIdent::parse(name)?).await?;
    let d = describe_json(&table);
    if json {
        println!("{}", serde_json::to_string_pretty(&d)?);
        return Ok(());
    }
    println!(
        "table              {}",
        d["table"].as_str().unwrap_or_default()
    );
    println!("location           {}", table.location());
    println!("metadata location  {}", table.metadata_location());
    println!("version            {}", table.version().0);
    println!("format version     {}", d["format_version"]);
    println!(
        "uuid               {}",
        d["table_uuid"].as_str().unwrap_or_default()
    );
    let parts: Vec<String> = d["partition_spec"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| p["transform"].as_str().unwrap_or_default().to_string())
        .collect();
    println!(
        "partitioned by     {}",
        if parts.is_empty() {
            "(unpartitioned)".into()
        } else {
            parts.join(", ")
        }
    );
    match table.metadata().current_snapshot() {
        Some(s) => println!(
            "current snapshot   {} ({}, sequence {})",
            s.snapshot_id(),
            s.summary().operation.as_str(),
            s.sequence_number()
        ),
        None => println!("current snapshot   (none: empty table)"),
    }
    println!("snapshots          {}", d["snapshots"]);
    println!("data files         {}", d["data_files"]);
    println!("rows               {}", d["rows"]);
    println!(
        "size               {}",
        output::bytes(d["bytes"].as_u64().unwrap_or(0))
    );
    println!("schema:");
    let rows: Vec<Vec<String>> = d["schema"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            vec![
                f["id"].to_string(),
                f["name"].as_str().unwrap_or_default().to_string(),
                f["type"].as_str().unwrap_or_default().to_string(),
                if f["required"].as_bool().unwrap_or(false) {
                    "required"
                } else {
                    "optional"
                }
                .to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(&["id", "name", "type", "nullability"], &rows)
    );
    Ok(())
}

async fn snapshots(catalog: &Catalog, name: &str, json: bool) -> Result<()> {
    let table = catalog.load_table(&TableIdent::parse(name)?).await?;
    let m = table.metadata();
    let mut snaps: Vec<_> = m.snapshots().collect();
    snaps.sort_by_key(|s| s.sequence_number());
    let get = |s: &floe_table_format::iceberg::spec::Snapshot, k: &str| {
        s.summary()
            .additional_properties
            .get(k)
            .cloned()
            .unwrap_or_default()
    };
    if json {
        let v: Vec<_> = snaps
            .iter()
            .map(|s| {
                json!({
                    "snapshot_id": s.snapshot_id(),
                    "parent_snapshot_id": s.parent_snapshot_id(),
                    "sequence_number": s.sequence_number(),
                    "timestamp_ms": s.timestamp_ms(),
                    "operation": s.summary().operation.as_str(),
                    "added_records": get(s, "added-records").parse::<u64>().ok(),
                    "total_records": get(s, "total-records").parse::<u64>().ok(),
                    "commit_id": s.summary().additional_properties.get(COMMIT_ID_KEY),
                    "manifest_list": s.manifest_list(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = snaps
        .iter()
        .map(|s| {
            vec![
                s.sequence_number().to_string(),
                s.snapshot_id().to_string(),
                s.timestamp()
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_default(),
                s.summary().operation.as_str().to_string(),
                get(s, "added-records"),
                get(s, "total-records"),
                get(s, COMMIT_ID_KEY),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &[
                "seq",
                "snapshot_id",
                "committed (UTC)",
                "operation",
                "added rows",
                "total rows",
                "commit id"
            ],
            &rows
        )
    );
    Ok(())
}

async fn check(catalog: &Catalog, name: &str, json: bool) -> Result<()> {
    if let Some(ns) = crate::namespaces::namespace_to_check(catalog, name).await? {
        return crate::namespaces::check_index(catalog, &ns, json).await;
    }
    let ident = TableIdent::parse(name)?;
    if catalog.sql_backend().is_some() {
        bail!("floe check verifies warehouse-catalog tables (vN.metadata.json history); {ident} is recorded in an SQL catalog");
    }
    let report = floe_table_format::check::check_table(catalog.warehouse(), &ident).await?;
    if json {
        let problems: Vec<_> = report
            .problems
            .iter()
            .map(|p| json!({"object": p.object, "problem": p.message}))
            .collect();
        let notes: Vec<_> = report
            .notes
            .iter()
            .map(|p| json!({"object": p.object, "note": p.message}))
            .collect();
        println!(
            "{}",
            json!({
                "table": ident.to_string(),
                "versions": report.versions,
                "snapshots": report.snapshots,
                "data_files": report.data_files,
                "rows": report.rows,
                "problems": problems,
                "notes": notes,
            })
        );
    } else {
        for p in &report.problems {
            println!("{p}");
        }
        for n in &report.notes {
            println!("note: {n}");
        }
    }
    if report.problems.is_empty() {
        eprintln!(
            "{ident}: ok ({} versions, {} snapshots, {} data files, {} rows checked)",
            report.versions, report.snapshots, report.data_files, report.rows
        );
        Ok(())
    } else {
        bail!("{} problem(s) found in {ident}", report.problems.len())
    }
}

async fn maintain(
    catalog: &Catalog,
    ns: &Namespace,
    grace: Duration,
    target_mib: u64,
) -> Result<()> {
    use floe_table_format::maintain;
    let options = maintain::MaintainOptions {
        target_file_bytes: target_mib << 20,
        grace,
    };
    let tables = catalog.list_tables(ns).await?;
    let bar = indicatif::ProgressBar::new(tables.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} tables  {msg}")
            .expect("static template is valid"),
    );
    let mut rows = Vec::new();
    let mut failures = 0;
    for ident in &tables {
        bar.set_message(ident.to_string());
        let result: Result<Vec<String>> = async {
            let mut t = catalog.load_table(ident).await?;
            catalog.check_sole_owner(&t, "vacuum")?;
            let r = maintain::maintain(&mut t, &options).await?;
            if let Some(note) = skipped_note(&r.compacted) {
                bar.suspend(|| eprintln!("note: {ident}: {note}"));
            }
            Ok(vec![
                ident.to_string(),
                r.compacted
                    .rewrite
                    .map(|c| format!("{} -> {}", c.removed, c.added))
                    .unwrap_or_else(|| "-".into()),
                r.expired.expired.len().to_string(),
                r.vacuumed.orphans.len().to_string(),
            ])
        }
        .await;
        match result {
            Ok(row) => rows.push(row),
            Err(e) => {
                failures += 1;
                bar.suspend(|| eprintln!("error: {ident}: {e:#}"));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    print!(
        "{}",
        output::table(
            &[
                "table",
                "files compacted",
                "snapshots expired",
                "orphans deleted"
            ],
            &rows
        )
    );
    if failures > 0 {
        bail!(
            "{failures} of {} tables could not be maintained",
            tables.len()
        );
    }
    Ok(())
}

/// The note for partitions compaction left alone because of other engines' delete files.
fn skipped_note(report: &floe_table_format::rewrite::CompactReport) -> Option<String> {
    let n = report.skipped_partitions_with_deletes;
    (n > 0).then(|| {
        format!(
            "skipped {n} partition(s) with delete files (written by another engine); \
             rewrite them with that engine"
        )
    })
}

/// The error of a failed append, told truthfully: "nothing was committed" only when that
/// is known; an unknown outcome names the commit id and the rerun that settles it.
fn append_failure(
    ident: &TableIdent,
    commit_id: &str,
    e: floe_table_format::Error,
) -> anyhow::Error {
    let context = if matches!(e, floe_table_format::Error::CommitUnknown { .. }) {
        format!(
            "append to {ident} may or may not have committed; rerun the same command with --commit-id {commit_id} to settle it (it is applied at most once)"
        )
    } else {
        format!("append to {ident} failed; nothing was committed")
    };
    anyhow::Error::new(e).context(context)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_append_is_never_reported_as_not_committed() {
        let ident = TableIdent::parse("fleet.d1").unwrap();
        let unknown = floe_table_format::Error::CommitUnknown {
            table: ident.to_string(),
            commit_id: "c-42".into(),
            version: 7,
        };
        let text = format!("{:#}", append_failure(&ident, "c-42", unknown));
        assert!(!text.contains("nothing was committed"), "{text}");
        assert!(text.contains("--commit-id c-42"), "{text}");
        let conflict = floe_table_format::Error::CommitConflict {
            table: ident.to_string(),
            attempts: 3,
            elapsed: std::time::Duration::from_secs(1),
        };
        let text = format!("{:#}", append_failure(&ident, "c-42", conflict));
        assert!(text.contains("nothing was committed"), "{text}");
    }
}
