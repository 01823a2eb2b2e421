//! `floe-bench`: Floe's benchmark harness. Every subcommand prints Floe beside a baseline,
//! medians over repeats: figures, not tests (BENCHMARKS.md records the runs).
//!
//! It is a binary of its own so that the product (`floe`, and its gateway build) carries no
//! benchmark code. It drives the libraries directly, and runs the `floe` binary where a case
//! measures a whole process (peak memory of `floe append`, `floe sync`, `floe sql`).
//!
//! ```sh
//! scripts/bench.sh --scale small                     # fleet, release builds, every peer
//! target/debug/floe-bench --warehouse /tmp/bench catalog --steps 1000,10000
//! target/debug/floe-bench --warehouse /tmp/bench commits --sizes 100,1000 --modes on
//! target/debug/floe-bench --warehouse s3://floe-test/bench rest --commits 100
//! ```
#![warn(missing_docs)]

mod catalog;
mod commits;
mod counting;
mod fleet;
mod report;
mod rest;
mod sync;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use floe_table_format::Warehouse;

/// Floe's benchmarks: figures side by side with a baseline, medians over repeats (not tests).
#[derive(Parser, Debug)]
#[command(name = "floe-bench", version, about, long_about = None)]
struct Cli {
    /// Warehouse of the catalog and commits benchmarks: a path, file:///path, memory://name
    /// or s3://bucket/prefix.
    #[arg(
        long,
        global = true,
        env = "FLOE_WAREHOUSE",
        default_value = "./warehouse"
    )]
    warehouse: String,

    #[command(subcommand)]
    command: Command,
}

/// The benchmarks.
#[derive(Subcommand, Debug)]
enum Command {
    /// Floe beside its peers on one generated IoT fleet: commit throughput (vs pyiceberg),
    /// a selective and a full-scan query (vs DataFusion over the same Parquet files, DuckDB,
    /// pyiceberg), ingest (vs arrow-rs's Parquet writer) and peak memory. Prints medians
    /// and ratios. The documented way to run it is scripts/bench.sh.
    Fleet {
        /// small (a few minutes on 2 cores; 96 readings per device-day file), small-days (5,760
        /// per device-day file), medium or large.
        #[arg(long, default_value = "small")]
        scale: String,
        /// Repeats per figure (the median is printed).
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Working folder; the generated fleet is kept there and reused.
        #[arg(long, default_value = "target/bench-fleet")]
        dir: PathBuf,
        /// Python of the peers' venv (scripts/setup-bench.sh prints it).
        #[arg(
            long,
            env = "FLOE_BENCH_PYTHON",
            default_value = ".venv/bench/bin/python"
        )]
        python: PathBuf,
        /// Also run the commit case on this S3 prefix, e.g. s3://floe-test/bench.
        #[arg(long)]
        s3: Option<String>,
        /// Only these cases: commits, query, scan, ingest, memory; and sweep, which runs
        /// only when named (it creates fleets of up to 10,000 tables).
        #[arg(long, value_delimiter = ',')]
        cases: Vec<String>,
        /// Fleet sizes of the sweep case.
        #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
        sweep_sizes: Vec<usize>,
        /// The `floe` binary whose append, sync and sql the memory case measures. Default:
        /// the `floe` beside this binary (target/release/floe for a release floe-bench).
        #[arg(long, value_name = "PATH")]
        floe_bin: Option<PathBuf>,
        /// The gateway build of floe (`--profile gateway --no-default-features`): the
        /// memory case measures its append and sync beside the full binary's.
        #[arg(long, value_name = "PATH")]
        gateway_bin: Option<PathBuf>,
    },
    /// Create up to N device tables in one namespace; time listing them (Floe vs a raw
    /// LIST) and loading one cold, at each step.
    Catalog {
        /// Cumulative table counts at which to measure.
        #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
        steps: Vec<usize>,
        /// Repeats per figure (the median is printed).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
    },
    /// Append to one table per mode (automatic maintenance on and off): commit latency
    /// percentiles and object-store requests per commit at each size.
    Commits {
        /// Cumulative commit counts at which to report.
        #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
        sizes: Vec<usize>,
        /// Rows per commit.
        #[arg(long, default_value_t = 1000)]
        rows: usize,
        /// Commits per reported window.
        #[arg(long, default_value_t = 100)]
        window: usize,
        /// Which modes to run: on (automatic maintenance), off (none), or both.
        #[arg(long, value_delimiter = ',', default_value = "on,off")]
        modes: Vec<String>,
    },
    /// One day of a gateway committing every minute, synced once: the squashed projection
    /// beside the per-commit one (cloud requests by kind, beyond the data files, bytes
    /// sent, data files per partition). The clouds are fresh prefixes of --warehouse.
    Sync {
        /// Local appends (one per minute: 1440 is a day).
        #[arg(long, default_value_t = 1440)]
        appends: usize,
        /// Readings per append.
        #[arg(long, default_value_t = 60)]
        rows: usize,
    },
    /// `floe serve` against direct commits, on --warehouse: commits/s of a property change
    /// through the REST server and through the commit driver, and load-table latency each
    /// way (medians and ratios).
    Rest {
        /// Commits per repeat, each way.
        #[arg(long, default_value_t = 100)]
        commits: usize,
        /// Loads per repeat, each way.
        #[arg(long, default_value_t = 50)]
        loads: usize,
        /// Repeats (the median is printed).
        #[arg(long, default_value_t = 3)]
        repeats: usize,
    },
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Fleet {
            scale,
            repeats,
            dir,
            python,
            s3,
            cases,
            floe_bin,
            gateway_bin,
            sweep_sizes,
        } => {
            let floe_bin = match floe_bin {
                Some(path) => path,
                None => std::env::current_exe()
                    .context("locate this binary (to find the floe beside it)")?
                    .with_file_name("floe"),
            };
            fleet::fleet(fleet::FleetBench {
                scale: fleet::scale(&scale)?,
                repeats,
                dir: std::path::absolute(&dir)?,
                python,
                s3,
                cases,
                floe_bin,
                gateway_bin,
                sweep_sizes,
            })
            .await
        }
        Command::Catalog { steps, repeats } => {
            catalog::catalog(&Warehouse::open(&cli.warehouse)?, &steps, repeats).await
        }
        Command::Commits {
            sizes,
            rows,
            window,
            modes,
        } => {
            commits::commits(
                &Warehouse::open(&cli.warehouse)?,
                &sizes,
                rows,
                window,
                &modes,
            )
            .await
        }
        Command::Sync { appends, rows } => sync::sync(&cli.warehouse, appends, rows).await,
        Command::Rest {
            commits,
            loads,
            repeats,
        } => rest::rest(&Warehouse::open(&cli.warehouse)?, commits, loads, repeats).await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLOE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, then the causes, as `floe` prints them.
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
