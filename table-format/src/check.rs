//! `floe check`: verify a table end to end and report every problem found, one per line.
//!
//! Checked: the version history (gap-free, every version parses, belongs to this table and
//! keeps one table uuid), the hint (not ahead of the head, a bare number), every
//! snapshot's manifest list exists, and for the current snapshot every manifest reads and
//! every live data file exists with exactly the recorded size, with file and row counts
//! equal to the snapshot summary's totals.

use std::fmt;

use futures::stream::{self, StreamExt};
use iceberg::spec::TableMetadata;
use object_store::ObjectStoreExt;

use crate::error::{Error, Result};
use crate::ident::TableIdent;
use crate::version::{self, Version};
use crate::warehouse::Warehouse;

/// Data files examined at once.
const HEAD_CONCURRENCY: usize = 16;

/// One problem: the object at fault and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The object (a location).
    pub object: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.object, self.message)
    }
}

/// What a check looked at and found.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Metadata versions found.
    pub versions: usize,
    /// Snapshots in the head.
    pub snapshots: usize,
    /// Live data files of the current snapshot that were checked.
    pub data_files: usize,
    /// Rows recorded for those files.
    pub rows: u64,
    /// Problems, in the order found.
    pub problems: Vec<Problem>,
    /// Findings that are not problems of the table (torn versions that a crash left, which
    /// readers and writers skip), in the order found.
    pub notes: Vec<Problem>,
}

impl CheckReport {
    fn problem(&mut self, object: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            object: object.into(),
            message: message.into(),
        });
    }
}

async fn read_object(warehouse: &Warehouse, location: &str) -> Result<Option<bytes::Bytes>> {
    let path = warehouse.object_path(location)?;
    match warehouse.store().get(&path).await {
        Ok(r) if r.meta.size > crate::metadata::MAX_METADATA_BYTES => Err(Error::TooLarge {
            location: location.to_string(),
            what: "table metadata object".into(),
            size: r.meta.size,
            limit: crate::metadata::MAX_METADATA_BYTES,
        }),
        Ok(r) => r.bytes().await.map(Some).map_err(|source| Error::Read {
            location: location.to_string(),
            source,
        }),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(source) => Err(Error::Read {
            location: location.to_string(),
            source,
        }),
    }
}

/// Check the table `ident` of `warehouse`. Store failures (unreachable, denied) are
/// errors; everything wrong with the table itself is a [`Problem`] in the report.
pub async fn check_table(warehouse: &Warehouse, ident: &TableIdent) -> Result<CheckReport> {
    let location = warehouse.location(&ident.path());
    let mut report = CheckReport::default();
    let versions = version::list_versions(warehouse, &location).await?;
    let (Some(&first), Some(&last)) = (versions.first(), versions.last()) else {
        return Err(Error::TableNotFound {
            table: ident.to_string(),
            location: format!("{location}/metadata"),
        });
    };
    report.versions = versions.len();
    // One problem per gap, naming its first missing version: a hostile name such as
    // v18446744073709551615.metadata.json makes a gap of nearly 2^64 versions.
    let mut expected = first.0;
    for v in &versions {
        if expected < v.0 {
            let last_missing = v.0 - 1;
            report.problem(
                version::metadata_location(&location, Version(expected)),
                if last_missing == expected {
                    "missing: the version history has a gap (readers stop at the gap)".into()
                } else {
                    format!("missing, and every version up to v{last_missing}: the version history has a gap (readers stop at the gap)")
                },
            );
        }
        expected = v.0.saturating_add(1);
    }
    let hint_location = version::hint_location(&location);
    if let Some(bytes) = read_object(warehouse, &hint_location).await? {
        match version::parse_hint(&bytes) {
            None => report.problem(&hint_location, "not a version number"),
            Some(h) if h > last => report.problem(
                &hint_location,
                format!("points at v{} but the newest version is v{}", h.0, last.0),
            ),
            Some(_) if bytes.last().is_some_and(|b| b.is_ascii_whitespace()) => report.problem(
                &hint_location,
                "has trailing whitespace (strict readers refuse it)",
            ),
            Some(_) => {}
        }
    }

    let mut head: Option<TableMetadata> = None;
    let mut uuid = None;
    for v in &versions {
        let loc = version::metadata_location(&location, *v);
        let bytes = match read_object(warehouse, &loc).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                report.problem(&loc, "listed but unreadable (deleted while checking?)");
                continue;
            }
            Err(e @ Error::TooLarge { .. }) => {
                report.problem(&loc, e.to_string());
                continue;
            }
            Err(e) => return Err(e),
        };
        if version::is_tombstone(&bytes) {
            if *v == last {
                report.problem(&loc, "the head version is a tombstone (expired metadata)");
            }
            continue;
        }
        if bytes.is_empty() && v.0 > 1 {
            report.notes.push(Problem {
                object: loc,
                message: "torn: an empty version a crash left before its claim was acknowledged; readers and writers skip it and its name stays taken".into(),
            });
            continue;
        }
        match serde_json::from_slice::<TableMetadata>(&bytes) {
            Err(e) => report.problem(&loc, format!("not valid Iceberg table metadata: {e}")),
            Ok(m) => {
                let same_place = warehouse
                    .object_path(m.location().trim_end_matches('/'))
                    .ok()
                    == warehouse.object_path(&location).ok();
                if !same_place {
                    report.problem(
                        &loc,
                        format!("describes a table located at '{}'", m.location()),
                    );
                }
                match uuid {
                    None => uuid = Some(m.uuid()),
                    Some(u) if u != m.uuid() => report.problem(
                        &loc,
                        format!(
                            "table uuid {} differs from {u} in earlier versions",
                            m.uuid()
                        ),
                    ),
                    Some(_) => {}
                }
                // The newest intact version is the head's metadata (a torn version
                // above it is skipped, as readers do).
                head = Some(m);
            }
        }
    }
    let Some(head) = head else {
        return Ok(report);
    };
    report.snapshots = head.snapshots().len();
    for s in head.snapshots() {
        let path = warehouse.object_path(s.manifest_list())?;
        if let Err(e) = warehouse.store().head(&path).await {
            report.problem(
                s.manifest_list(),
                format!("manifest list of snapshot {}: {e}", s.snapshot_id()),
            );
        }
    }
    let Some(current) = head.current_snapshot() else {
        return Ok(report);
    };
    let file_io = crate::storage::file_io(warehouse);
    let table = iceberg::table::Table::builder()
        .metadata(head.clone())
        .metadata_location(version::metadata_location(&location, last))
        .identifier(ident.to_iceberg())
        .file_io(file_io.clone())
        .runtime(
            iceberg::Runtime::try_current()
                .map_err(|e| Error::iceberg("find the tokio runtime", e))?,
        )
        .build()
        .map_err(|e| Error::iceberg(format!("open {ident}"), e))?;
    let list = match table.manifest_list_reader(current).load().await {
        Ok(l) => l,
        Err(e) => {
            report.problem(
                current.manifest_list(),
                format!("unreadable manifest list: {e}"),
            );
            return Ok(report);
        }
    };
    let mut files: Vec<(String, u64)> = Vec::new();
    for m in list.entries() {
        match m.load_manifest(&file_io).await {
            Err(e) => report.problem(&m.manifest_path, format!("unreadable manifest: {e}")),
            Ok(manifest) => {
                if manifest.entries().is_empty() && m.added_files_count.unwrap_or(0) > 0 {
                    report.problem(
                        &m.manifest_path,
                        "holds no entries but the manifest list says it adds files",
                    );
                }
                for e in manifest.entries().iter().filter(|e| e.is_alive()) {
                    let df = e.data_file();
                    report.rows += df.record_count();
                    files.push((df.file_path().to_string(), df.file_size_in_bytes()));
                }
            }
        }
    }
    report.data_files = files.len();
    let found: Vec<Option<Problem>> = stream::iter(files)
        .map(|(path, size)| async move {
            let key = match warehouse.object_path(&path) {
                Ok(k) => k,
                Err(e) => {
                    return Some(Problem {
                        object: path,
                        message: e.to_string(),
                    })
                }
            };
            match warehouse.store().head(&key).await {
                Ok(meta) if meta.size == size => None,
                Ok(meta) => Some(Problem {
                    object: path,
                    message: format!("is {} bytes but the manifest records {size}", meta.size),
                }),
                Err(object_store::Error::NotFound { .. }) => Some(Problem {
                    object: path,
                    message: "data file missing".into(),
                }),
                Err(e) => Some(Problem {
                    object: path,
                    message: e.to_string(),
                }),
            }
        })
        .buffer_unordered(HEAD_CONCURRENCY)
        .collect()
        .await;
    report.problems.extend(found.into_iter().flatten());
    let summary = &current.summary().additional_properties;
    let metadata_location = version::metadata_location(&location, last);
    for (key, actual) in [
        ("total-data-files", report.data_files as u64),
        ("total-records", report.rows),
    ] {
        if let Some(recorded) = summary.get(key).and_then(|v| v.parse::<u64>().ok()) {
            if recorded != actual {
                report.problem(
                    &metadata_location,
                    format!(
                        "snapshot {} records {key}={recorded} but its manifests hold {actual}",
                        current.snapshot_id()
                    ),
                );
            }
        }
    }
    Ok(report)
}
