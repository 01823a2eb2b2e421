//! Writer processes killed with SIGKILL at random points, many times: the table always
//! loads, checks clean, and holds exactly the acknowledged commits (plus, at most once,
//! commits whose acknowledgement the kill swallowed).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use floe_table_format::check::check_table;
use floe_table_format::{Table, TableIdent, Warehouse};

use crate::support::*;

/// A small deterministic generator (the seed is printed on failure).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

fn crash_loop(wh: &Warehouse, rounds: usize, seed: u64) {
    let (_, dir) = local_warehouse();
    let rows_each = 40;
    let mut paths = Vec::new();
    for k in 0..3 {
        let p = dir.join(format!("in{k}.csv"));
        let mut f = std::fs::File::create(&p).unwrap();
        writeln!(f, "device_id,ts,metric,value").unwrap();
        for i in 0..rows_each {
            writeln!(f, "dev,2026-01-0{}T00:{:02}:00Z,power_kw,{i}", 1 + k, i).unwrap();
        }
        paths.push(p);
    }
    let url = wh.url().to_string();
    let bin = floe_bin();
    floe_ok(&url, &["create", "fleet.crash"]);
    // How long an uninterrupted append takes, to spread the kills over it.
    let t0 = Instant::now();
    let path_args: Vec<&str> = paths.iter().map(|p| p.to_str().unwrap()).collect();
    let warmup = [
        &["append", "fleet.crash"][..],
        &path_args,
        &["--commit-id", "warmup"],
    ]
    .concat();
    floe_ok(&url, &warmup);
    let span = t0.elapsed().as_micros() as u64;
    let mut rng = Lcg(seed);
    let (mut acked, mut killed) = (vec!["warmup".to_string()], Vec::new());
    for round in 0..rounds {
        let id = format!("crash-{round}");
        let mut child = Command::new(&bin)
            .args(["--warehouse", &url, "append", "fleet.crash"])
            .args(&paths)
            .args(["--commit-id", &id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng.next(span * 12 / 10 + 1)));
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        if status.success() {
            acked.push(id);
        } else {
            killed.push(id);
        }
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ident = TableIdent::parse("fleet.crash").unwrap();
        let t = Table::load(wh, &ident)
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: table unreadable: {e} ({e:?})"));
        let report = check_table(wh, &ident).await.unwrap();
        assert!(
            report.problems.is_empty(),
            "seed {seed}: {:?}",
            report.problems
        );
        let ids = commit_ids(&t);
        for id in &acked {
            assert_eq!(
                ids.iter().filter(|c| *c == id).count(),
                1,
                "seed {seed}: acknowledged {id}"
            );
        }
        for id in &killed {
            assert!(
                ids.iter().filter(|c| *c == id).count() <= 1,
                "seed {seed}: {id} doubled"
            );
        }
        assert_eq!(ids.len(), t.metadata().snapshots().len());
        assert_eq!(
            scan(&t).await.0,
            ids.len() * rows_each * 3,
            "seed {seed}: rows"
        );
        eprintln!(
            "crash loop on {}: {} acknowledged, {} killed ({} of those landed)",
            wh.url(),
            acked.len(),
            killed.len(),
            killed.iter().filter(|k| ids.contains(k)).count()
        );
    });
}

fn seed() -> u64 {
    std::env::var("FLOE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed)
}

#[test]
fn sigkilled_writers_leave_exact_tables_on_local_files() {
    crash_loop(&local_warehouse().0, 25, seed());
}

#[test]
fn sigkilled_writers_leave_exact_tables_on_s3() {
    if let Some(wh) = s3_warehouse() {
        crash_loop(&wh, 25, seed());
    }
}

/// Issue 15, class 9: a power cut can leave the newest version object empty (the name
/// was linked, its bytes never reached the disk). Such a claim was never acknowledged
/// (a local commit is acknowledged only after its version object is synced), so the table
/// loads at the last intact version, the empty name stays burned (never reused), the next
/// commit lands above it, and `floe check` names it without failing on it.
#[tokio::test]
async fn a_torn_empty_newest_version_is_skipped_never_fatal() {
    let (wh, _dir) = local_warehouse();
    let ident = TableIdent::parse("fleet.torn").unwrap();
    let mut t = Table::create(&wh, &ident, iot_definition()).await.unwrap();
    append_rows(&mut t, 5).await; // v2
    let v3 =
        floe_table_format::version::metadata_location(t.location(), floe_table_format::Version(3));
    std::fs::write(wh.object_path(&v3).map(|p| format!("/{p}")).unwrap(), b"").unwrap();

    // Readers and writers load at v2's metadata; the next claim is v4.
    let mut loaded = Table::load(&wh, &ident).await.unwrap();
    assert_eq!(scan(&loaded).await.0, 5);
    append_rows(&mut loaded, 2).await;
    assert_eq!(loaded.version().0, 4, "the torn name v3 is never reused");
    let fresh = Table::load(&wh, &ident).await.unwrap();
    assert_eq!(fresh.version().0, 4);
    assert_eq!(scan(&fresh).await.0, 7);
    // The stale handle that knew v2 refreshes past the torn version too.
    append_rows(&mut t, 1).await;
    assert_eq!(t.version().0, 5);
    assert_eq!(scan(&Table::load(&wh, &ident).await.unwrap()).await.0, 8);
    // `floe check` names the torn version as a note, not a failure of the table.
    let out = floe_ok(wh.url(), &["check", "fleet.torn"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("v3") && text.contains("torn"), "{text}");
}

/// Issue 15, class 9: a local commit is durable when acknowledged. Every object it wrote
/// (data file, manifest, manifest list, version) was synced, with its folder entry, before
/// the append returned.
#[tokio::test]
async fn an_acknowledged_local_commit_has_synced_every_object_it_wrote() {
    use floe_table_format::durable::recently_synced;
    let (wh, _dir) = local_warehouse();
    let ident = TableIdent::parse("fleet.durable").unwrap();
    let mut t = Table::create(&wh, &ident, iot_definition()).await.unwrap();
    append_rows(&mut t, 5).await;
    let file = |location: &str| {
        std::path::PathBuf::from(format!("/{}", wh.object_path(location).unwrap()))
    };
    assert!(
        recently_synced(&file(t.metadata_location())),
        "the version object"
    );
    let snapshot = t.metadata().current_snapshot().unwrap().clone();
    assert!(
        recently_synced(&file(snapshot.manifest_list())),
        "the manifest list"
    );
    let iceberg = t.iceberg().unwrap();
    let list = iceberg
        .manifest_list_reader(&snapshot)
        .load()
        .await
        .unwrap();
    for m in list.entries() {
        assert!(
            recently_synced(&file(&m.manifest_path)),
            "manifest {}",
            m.manifest_path
        );
        let manifest = m.load_manifest(t.file_io()).await.unwrap();
        for e in manifest.entries() {
            assert!(
                recently_synced(&file(e.file_path())),
                "data file {}",
                e.file_path()
            );
        }
    }
}
