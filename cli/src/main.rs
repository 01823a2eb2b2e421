//! `floe`: per-device Iceberg tables on object storage, from the command line.
//!
//! Results go to stdout (`--json` for machines); logs and progress go to stderr. Errors
//! print one line saying what failed, then the chain of causes, and exit non-zero.
#![warn(missing_docs)]

mod commands;
mod demo;
#[cfg(not(feature = "query"))]
mod gateway;
mod namespaces;
mod output;
#[cfg(feature = "server")]
mod serve;
#[cfg(feature = "query")]
mod sql;
mod sync;
mod values;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::RangedU64ValueParser;
use clap::{Parser, Subcommand};

use values::DurationArg;

/// The largest compaction target accepted (1 TiB): `--target-mib` is multiplied by 2^20,
/// and a larger value would wrap around.
const MAX_TARGET_MIB: u64 = 1 << 20;

/// The longest `--commit-timeout` accepted, in seconds (a day).
const MAX_COMMIT_TIMEOUT_S: u64 = 86_400;

/// Floe: per-device Apache Iceberg tables on object storage, committed with conditional
/// writes — no catalog server, no lock service.
#[derive(Parser, Debug)]
#[command(name = "floe", version, about, long_about = None)]
struct Cli {
    /// Warehouse: a path, file:///path, memory://name or s3://bucket/prefix.
    #[arg(
        long,
        global = true,
        env = "FLOE_WAREHOUSE",
        default_value = "./warehouse"
    )]
    warehouse: String,

    /// Where tables are recorded: the warehouse's folders (default), an Iceberg SQL
    /// catalog shared with pyiceberg / JDBC readers and writers (sqlite:///path/catalog.db),
    /// or a Floe REST catalog (http://host:8181, with --credential; no S3 keys needed).
    #[arg(long, global = true, env = "FLOE_CATALOG")]
    catalog: Option<String>,

    /// NAME:SECRET of a principal, for a REST --catalog (as `floe principal add` printed it).
    #[arg(long, global = true, env = "FLOE_CREDENTIAL", hide_env_values = true)]
    credential: Option<String>,

    /// The catalog name inside an SQL catalog.
    #[arg(long, global = true, env = "FLOE_CATALOG_NAME", default_value = "floe")]
    catalog_name: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a table (default schema: device_id string, ts timestamptz, metric string,
    /// value double, partitioned by day(ts)).
    Create {
        /// NAMESPACE.TABLE, e.g. fleet.dev_0042
        table: String,
        #[command(flatten)]
        definition: DefinitionArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Append Parquet, CSV or newline-delimited JSON files as one commit.
    Append {
        /// NAMESPACE.TABLE
        table: String,
        /// Input files (.parquet, .csv, .json/.ndjson/.jsonl).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Create the table first if it does not exist.
        #[arg(long)]
        create: bool,
        /// Evolve the schema in the same commit: add input columns the table lacks (as
        /// optional columns) and widen int to long, float to double, decimal precision up.
        /// Tables opt in for good with the property floe.schema.evolution=add-columns.
        #[arg(long)]
        evolve: bool,
        #[command(flatten)]
        definition: DefinitionArgs,
        /// Commit id to stamp (reusing one makes a retried append idempotent).
        #[arg(long)]
        commit_id: Option<String>,
        /// Most attempts at claiming a version before giving up (at least 1).
        #[arg(long, default_value_t = floe_table_format::RetryPolicy::default().max_attempts,
              value_parser = clap::value_parser!(u32).range(1..), allow_negative_numbers = true)]
        max_attempts: u32,
        /// Give up retrying after this many seconds (1 to 86400).
        #[arg(long, default_value_t = floe_table_format::RetryPolicy::default().max_elapsed.as_secs(),
              value_parser = clap::value_parser!(u64).range(1..=MAX_COMMIT_TIMEOUT_S),
              allow_negative_numbers = true)]
        commit_timeout: u64,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change how new data is partitioned (a metadata-only commit adding a partition
    /// spec); files already written keep theirs, and queries prune both.
    Alter {
        /// NAMESPACE.TABLE
        table: String,
        /// The new partitioning, e.g. 'hour(ts)' or 'day(ts), bucket(8, metric)'.
        #[arg(long)]
        partition: String,
    },
    /// List tables, in one namespace or in all of them.
    Tables {
        /// Namespace, e.g. fleet or site_17.chargers
        namespace: Option<String>,
        /// At most this many tables (one page, at least 1; needs a namespace).
        #[arg(long, requires = "namespace", allow_negative_numbers = true,
              value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
        limit: Option<usize>,
        /// Start after this table name (the `next` of the previous page).
        #[arg(long, requires = "namespace")]
        after: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a table: schema, partition spec, current snapshot, files, rows, and the
    /// metadata location a third party would open.
    Describe {
        /// NAMESPACE.TABLE
        table: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List a table's snapshots, oldest first.
    Snapshots {
        /// NAMESPACE.TABLE
        table: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Verify a table end to end: version history, hint, manifests, every data file and
    /// its recorded size, and the snapshot's counts. Prints one problem per line; exits
    /// non-zero if there is any. Given a namespace, checks its table index and repairs it
    /// (tables a crashed create left out, markers of tables that are gone).
    Check {
        /// NAMESPACE.TABLE, or NAMESPACE
        table: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Expire old snapshots (a metadata-only commit) and delete their manifest lists.
    Expire {
        /// NAMESPACE.TABLE
        table: String,
        /// Expire snapshots older than this (30s, 15m, 1h, 7d).
        #[arg(long, value_name = "DURATION", value_parser = values::duration, allow_hyphen_values = true)]
        older_than: DurationArg,
        /// Always keep this many newest snapshots (at least 1: the current one stays).
        #[arg(long, default_value_t = 1, allow_negative_numbers = true,
              value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
        retain_last: usize,
    },
    /// Delete objects under a table that no live snapshot references and that are older
    /// than the grace period (crash leftovers, replaced manifests).
    Vacuum {
        /// NAMESPACE.TABLE
        table: String,
        /// Grace period protecting commits in flight (30s, 15m, 1h, 7d).
        #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = values::duration,
              allow_hyphen_values = true)]
        older_than: DurationArg,
        /// List what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Rewrite each partition's small data files into files of about the target size
    /// (rows sorted by ts), as one replace snapshot. Partitions with delete files (another
    /// engine's merge-on-read deletes) are skipped and reported.
    Compact {
        /// NAMESPACE.TABLE
        table: String,
        /// Target file size in MiB (1 to 1048576).
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=MAX_TARGET_MIB))]
        target_mib: u64,
    },
    /// Drop whole data files whose rows are all older than a cutoff, as a metadata-only
    /// delete (old partitions of a time-partitioned table go entirely).
    Retain {
        /// NAMESPACE.TABLE
        table: String,
        /// Drop data older than this (30s, 15m, 1h, 7d).
        #[arg(long, value_name = "DURATION", value_parser = values::duration, allow_hyphen_values = true)]
        drop_older_than: DurationArg,
        /// The timestamp column to judge age by.
        #[arg(long, default_value = "ts")]
        column: String,
    },
    /// Maintain every table of a namespace: compact small files, expire snapshots by the
    /// table's history.expire.* properties, and vacuum unreferenced files.
    Maintain {
        /// Namespace.
        namespace: String,
        /// Vacuum grace period (30s, 15m, 1h, 7d).
        #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = values::duration,
              allow_hyphen_values = true)]
        vacuum_older_than: DurationArg,
        /// Compaction target file size in MiB (1 to 1048576).
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=MAX_TARGET_MIB))]
        target_mib: u64,
    },
    /// Namespaces: create, list, describe, set properties and the table template.
    #[command(subcommand)]
    Namespace(NamespaceCommand),
    /// Drop a table from the catalog; with --purge also delete its data files.
    Drop {
        /// NAMESPACE.TABLE
        table: String,
        /// Delete every object under the table's prefix, not only its metadata versions.
        #[arg(long)]
        purge: bool,
    },
    /// Adopt an existing Iceberg table (any engine's) as NAMESPACE.TABLE from its
    /// metadata file; new files go under the Floe table's folder.
    Register {
        /// NAMESPACE.TABLE
        table: String,
        /// The table's current metadata file, e.g. file:///…/metadata/00004-….metadata.json
        metadata_location: String,
    },
    /// Rename a table (SQL catalogs only: object stores have no atomic rename).
    Rename {
        /// NAMESPACE.TABLE
        from: String,
        /// NAMESPACE.TABLE
        to: String,
    },
    /// Catalogs other engines read.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Project local tables into a cloud warehouse (offline-first gateways): every local
    /// append the cloud has not seen becomes one cloud append, oldest first, after its data
    /// files are copied. Safe to kill and rerun; a second run changes nothing.
    Sync(sync::SyncArgs),
    /// Run SQL over the catalog: every namespace is a schema, every table a table, and
    /// NAMESPACE.all_devices is every table of a namespace with a `device` column. Time
    /// travel: "dev_0042@SNAPSHOT_ID" or "dev_0042@2026-11-20T10:00:00Z"; metadata tables:
    /// "dev_0042$snapshots", $history, $manifests, $files. Without a query, a shell starts.
    #[cfg(feature = "query")]
    Sql(sql::SqlArgs),
    /// Serve the warehouse as an Iceberg REST catalog (pyiceberg, Spark, Trino, DuckDB
    /// connect by URL), where each principal reaches only what its grants allow.
    #[cfg(feature = "server")]
    Serve(serve::ServeArgs),
    /// Principals of `floe serve`: add (prints the secret once), list, revoke.
    #[cfg(feature = "server")]
    #[command(subcommand)]
    Principal(serve::PrincipalCommand),
    /// Simulate a fleet of devices writing their own tables, then read them back.
    Demo {
        /// Number of devices (one table each; 1 to 100000).
        #[arg(long, default_value_t = 20, allow_negative_numbers = true,
              value_parser = RangedU64ValueParser::<usize>::new().range(1..=100_000))]
        devices: usize,
        /// Commits per device (1 to 100000).
        #[arg(long, default_value_t = 5, allow_negative_numbers = true,
              value_parser = RangedU64ValueParser::<usize>::new().range(1..=100_000))]
        commits: usize,
        /// Namespace of the device tables.
        #[arg(long, default_value = "fleet")]
        namespace: String,
    },
}

/// `floe namespace …`
#[derive(Subcommand, Debug)]
enum NamespaceCommand {
    /// Create a namespace, optionally with properties and a table template.
    Create {
        /// Namespace, e.g. fleet or site_17.chargers
        namespace: String,
        #[command(flatten)]
        set: NamespaceSetArgs,
    },
    /// List namespaces (all of them, or those under PARENT).
    List {
        /// Parent namespace.
        parent: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a namespace's properties and table template.
    Describe {
        /// Namespace.
        namespace: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set or remove properties, or set the table template for new device tables.
    Set {
        /// Namespace.
        namespace: String,
        #[command(flatten)]
        set: NamespaceSetArgs,
        /// Remove a property (repeatable).
        #[arg(long, value_name = "KEY")]
        unset: Vec<String>,
        /// Remove the table template.
        #[arg(long, conflicts_with_all = ["template_schema", "template_partition", "template_default"])]
        no_template: bool,
    },
}

/// Properties and template flags of `namespace create|set`.
#[derive(clap::Args, Debug, Clone, Default)]
struct NamespaceSetArgs {
    /// Property KEY=VALUE (repeatable), e.g. description=… owner=…
    #[arg(value_name = "KEY=VALUE")]
    properties: Vec<String>,
    /// Template schema for new device tables (Iceberg schema JSON file).
    #[arg(long, value_name = "FILE.json")]
    template_schema: Option<PathBuf>,
    /// Template partitioning, e.g. 'day(ts)'.
    #[arg(long, value_name = "EXPR")]
    template_partition: Option<String>,
    /// Use the default IoT schema partitioned by day(ts) as the template.
    #[arg(long, conflicts_with = "template_schema")]
    template_default: bool,
    /// Template table property KEY=VALUE (repeatable).
    #[arg(long = "template-property", value_name = "KEY=VALUE")]
    template_properties: Vec<String>,
}

/// `floe catalog …`
#[derive(Subcommand, Debug)]
enum CatalogCommand {
    /// Write an SQLite database in the Iceberg SQL-catalog schema (pyiceberg's SqlCatalog,
    /// the Java JDBC catalog) pointing at every table's current metadata.
    Publish {
        /// The SQLite file to write (created or updated).
        #[arg(long, value_name = "FILE.db")]
        sql: PathBuf,
        /// The catalog name readers open it with.
        #[arg(long, default_value = "floe")]
        name: String,
    },
}

/// How a new table is defined (`create`, `append --create`).
#[derive(clap::Args, Debug, Clone, Default)]
struct DefinitionArgs {
    /// Take the schema from a Parquet file.
    #[arg(long, value_name = "FILE.parquet", conflicts_with = "schema")]
    like: Option<PathBuf>,
    /// Take the schema from an Iceberg schema JSON file.
    #[arg(long, value_name = "FILE.json")]
    schema: Option<PathBuf>,
    /// Partitioning, e.g. 'day(ts)' or 'hour(ts), bucket(16, device_id)'; '' for none.
    /// Default: day(ts) for the default schema, none otherwise.
    #[arg(long)]
    partition: Option<String>,
    /// Table property KEY=VALUE (repeatable).
    #[arg(long = "property", value_name = "KEY=VALUE")]
    properties: Vec<String>,
}

fn main() -> ExitCode {
    #[cfg(not(feature = "query"))]
    gateway::tune();
    let cli = Cli::parse();
    // A verb whose stdout is closed early (`floe … | head`) ends as Unix tools do, by
    // SIGPIPE, instead of panicking in `println!`. Not the server: it must outlive a
    // reader of its start-up line, and its sockets never raise SIGPIPE anyway.
    #[cfg(feature = "server")]
    let serving = matches!(cli.command, Command::Serve(_));
    #[cfg(not(feature = "server"))]
    let serving = false;
    if !serving {
        sigpipe::reset();
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLOE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if serving {
        // Queries run their CPU-bound work on the same runtime: with spare workers, a
        // cancel request, a timer or a REST request always finds one free.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        builder.worker_threads((cores * 4).max(8));
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::print_error(&e);
            ExitCode::FAILURE
        }
    }
}
