//! `floe sql`: queries over the catalog, from the command line, a file, or a shell.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use arrow::record_batch::RecordBatch;
use datafusion::physical_plan::displayable;
use datafusion::sql::parser::DFParser;

use floe_catalog::Catalog;
use floe_query::{EngineOptions, QueryEngine, ScanSummary};
use floe_table_format::Namespace;

use crate::output;

/// How results are printed.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// An aligned text table.
    Table,
    /// CSV with a header line.
    Csv,
    /// A JSON array of objects.
    Json,
    /// A Parquet file (needs --output, or stdout redirected to a file).
    Parquet,
}

/// `floe sql` arguments.
#[derive(clap::Args, Debug)]
pub struct SqlArgs {
    /// The query (one or more statements separated by `;`). Without it and without
    /// --file, an interactive shell starts.
    pub query: Option<String>,
    /// Read statements from this file.
    #[arg(short = 'f', long = "file", conflicts_with = "query")]
    pub file: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Write results to this file instead of stdout.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Print the plan and, per table, the files and bytes planned versus the total,
    /// instead of running the query.
    #[arg(long)]
    pub explain: bool,
    /// Cap the memory of sorts, joins and aggregations (e.g. 64MB, 1GiB); they spill to
    /// disk beyond it.
    #[arg(long, value_name = "SIZE", value_parser = crate::values::size)]
    pub memory_limit: Option<usize>,
    /// Namespace that unqualified table names resolve in (e.g. `SELECT … FROM dev_0042`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Threads per scan and operator (1 to 1024; default: every core).
    #[arg(long, allow_negative_numbers = true,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub partitions: Option<usize>,
    /// Read every file and filter afterwards (to compare against pruning).
    #[arg(long)]
    pub no_pruning: bool,
    /// Read every file with iceberg's reader instead of DataFusion's Parquet scan (to
    /// compare the two).
    #[arg(long, hide = true)]
    pub iceberg_reader: bool,
}

/// Run `floe sql`.
pub async fn run(catalog: &Catalog, args: SqlArgs) -> Result<()> {
    let options = EngineOptions {
        scan: floe_query::ScanOptions {
            pruning: !args.no_pruning,
            native: !args.iceberg_reader,
            ..Default::default()
        },
        memory_limit: args.memory_limit,
        target_partitions: args.partitions,
        default_namespace: args
            .namespace
            .as_deref()
            .map(Namespace::parse)
            .transpose()
            .context("invalid --namespace")?,
        ..Default::default()
    };
    if args.format == Format::Parquet && args.output.is_none() && std::io::stdout().is_terminal() {
        bail!("--format parquet writes binary: give --output FILE or redirect stdout");
    }
    let engine = QueryEngine::open(catalog, options).await?;
    let text = match (&args.query, &args.file) {
        (Some(q), _) => q.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("read SQL file {}", path.display()))?,
        (None, None) => return shell(&engine, &args).await,
    };
    run_text(&engine, &text, &args).await
}

/// Run every statement of `text`, printing each result.
async fn run_text(engine: &QueryEngine, text: &str, args: &SqlArgs) -> Result<()> {
    let statements = DFParser::parse_sql(text).context("parse the SQL")?;
    if statements.is_empty() {
        bail!("no SQL statement given");
    }
    let mut out = Output::open(args.output.as_deref())?;
    for statement in statements {
        let sql = statement.to_string();
        if args.explain {
            let (plan, scans) = engine.explain(&sql).await?;
            out.write_text(&explain_text(&plan, &scans, args.format))?;
            continue;
        }
        let batches = engine.sql(&sql).await?;
        out.write_batches(&batches, args.format)?;
    }
    out.finish()
}

/// Text for `--explain`: per scan, files and bytes planned versus total, then the plan.
pub fn explain_text(
    plan: &Arc<dyn datafusion::physical_plan::ExecutionPlan>,
    scans: &[ScanSummary],
    format: Format,
) -> String {
    if format == Format::Json {
        let value = serde_json::json!({
            "scans": scans.iter().map(summary_json).collect::<Vec<_>>(),
            "plan": displayable(plan.as_ref()).indent(true).to_string(),
        });
        return format!("{value:#}\n");
    }
    let mut text = String::new();
    for s in scans {
        text.push_str(&format!(
            "scan {}: tables {}/{}, files {}/{}, bytes {}/{}, {} partition(s)\n",
            s.label,
            s.tables_scanned,
            s.tables_total,
            s.files_planned(),
            s.files_total.map_or("?".into(), |v| v.to_string()),
            output::bytes(s.bytes_planned()),
            s.bytes_total.map_or("?".into(), output::bytes),
            s.partitions,
        ));
        if let Some(p) = &s.predicate {
            text.push_str(&format!("  pushed down: {p}\n"));
        }
        let rows: Vec<Vec<String>> = s
            .tables
            .iter()
            .filter(|t| t.files_planned > 0)
            .map(|t| {
                vec![
                    t.label.clone(),
                    format!(
                        "{}/{}",
                        t.files_planned,
                        t.files_total.map_or("?".into(), |v| v.to_string())
                    ),
                    format!(
                        "{}/{}",
                        output::bytes(t.bytes_planned),
                        t.bytes_total.map_or("?".into(), output::bytes)
                    ),
                    t.delete_files.to_string(),
                ]
            })
            .collect();
        if !rows.is_empty() {
            for line in output::table(&["table", "files", "bytes", "delete files"], &rows).lines() {
                text.push_str("  ");
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    text.push_str("\nphysical plan:\n");
    text.push_str(&displayable(plan.as_ref()).indent(true).to_string());
    text
}

fn summary_json(s: &ScanSummary) -> serde_json::Value {
    serde_json::json!({
        "scan": s.label,
        "tables_total": s.tables_total,
        "tables_scanned": s.tables_scanned,
        "files_total": s.files_total,
        "files_planned": s.files_planned(),
        "bytes_total": s.bytes_total,
        "bytes_planned": s.bytes_planned(),
        "partitions": s.partitions,
        "predicate": s.predicate,
        "tables": s.tables.iter().map(|t| serde_json::json!({
            "table": t.label,
            "files_total": t.files_total,
            "files_planned": t.files_planned,
            "bytes_total": t.bytes_total,
            "bytes_planned": t.bytes_planned,
            "delete_files": t.delete_files,
        })).collect::<Vec<_>>(),
    })
}

/// Where results go.
struct Output {
    sink: Box<dyn Write + Send>,
}

impl Output {
    fn open(path: Option<&Path>) -> Result<Self> {
        Ok(match path {
            Some(p) => Self {
                sink: Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("create output file {}", p.display()))?,
                )),
            },
            None => Self {
                sink: Box::new(std::io::BufWriter::new(std::io::stdout())),
            },
        })
    }

    fn write_text(&mut self, text: &str) -> Result<()> {
        self.sink.write_all(text.as_bytes())?;
        Ok(())
    }

    fn write_batches(&mut self, batches: &[RecordBatch], format: Format) -> Result<()> {
        match format {
            Format::Table => {
                let text = arrow::util::pretty::pretty_format_batches(batches)?;
                writeln!(self.sink, "{text}")?;
            }
            Format::Csv => {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut self.sink);
                for b in batches {
                    w.write(b)?;
                }
            }
            Format::Json => {
                let mut w = arrow::json::ArrayWriter::new(&mut self.sink);
                w.write_batches(&batches.iter().collect::<Vec<_>>())?;
                w.finish()?;
                writeln!(self.sink)?;
            }
            Format::Parquet => {
                let Some(first) = batches.first() else {
                    bail!("the query returned no batches to write as Parquet");
                };
                let mut w =
                    parquet::arrow::ArrowWriter::try_new(&mut self.sink, first.schema(), None)?;
                for b in batches {
                    w.write(b)?;
                }
                w.close()?;
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        self.sink.flush()?;
        Ok(())
    }
}

/// The interactive shell: statements end with `;` and may span lines; `\q` quits.
async fn shell(engine: &QueryEngine, args: &SqlArgs) -> Result<()> {
    use rustyline::error::ReadlineError;
    let mut editor = rustyline::DefaultEditor::new().context("start the line editor")?;
    let history = std::env::var_os("FLOE_HISTORY")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".floe_history")));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    eprintln!("floe sql: end statements with ';', \\q to quit");
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() {
            "floe> "
        } else {
            "  ... "
        };
        match editor.readline(prompt) {
            Ok(line) => {
                let trimmed = line.trim();
                if buffer.is_empty() && matches!(trimmed, "\\q" | "quit" | "exit") {
                    break;
                }
                buffer.push_str(&line);
                buffer.push('\n');
                if !trimmed.ends_with(';') {
                    continue;
                }
                let text = std::mem::take(&mut buffer);
                let _ = editor.add_history_entry(text.trim());
                let started = Instant::now();
                match run_text(engine, &text, args).await {
                    Ok(()) => eprintln!("({:.3}s)", started.elapsed().as_secs_f64()),
                    Err(e) => output::print_error(&e),
                }
            }
            Err(ReadlineError::Interrupted) => buffer.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e).context("read a line"),
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    Ok(())
}
