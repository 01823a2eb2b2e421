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
            .unwrap_or_else(|e| panic!("seed {seed}: table unreadable: {e}"));
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
