//! Writer *processes* racing on one table through the real `floe` binary.

use std::io::Write;
use std::process::{Command, Stdio};

use floe_table_format::{Table, TableIdent, Version};
use object_store::ObjectStoreExt;

use crate::support::*;

fn csv(dir: &std::path::Path, name: &str, device: &str, n: usize) -> std::path::PathBuf {
    let p = dir.join(name);
    let mut f = std::fs::File::create(&p).unwrap();
    writeln!(f, "device_id,ts,metric,value").unwrap();
    for i in 0..n {
        writeln!(
            f,
            "{device},2026-01-0{}T00:{:02}:00Z,power_kw,{i}.5",
            1 + i % 3,
            i % 60
        )
        .unwrap();
    }
    p
}

#[test]
fn racing_processes_lose_and_double_nothing_on_local_files() {
    let (wh, dir) = local_warehouse();
    race(&wh, &dir);
}

#[test]
fn racing_processes_lose_and_double_nothing_on_s3() {
    if let Some(wh) = s3_warehouse() {
        let (_, dir) = local_warehouse();
        race(&wh, &dir);
    }
}

/// Rounds of `writers` concurrent `floe append` processes on one table of `wh`; `dir` holds
/// the input file.
fn race(wh: &floe_table_format::Warehouse, dir: &std::path::Path) {
    let url = wh.url().to_string();
    let (writers, rounds, rows_each) = (4usize, 6usize, 9usize);
    let input = csv(dir, "in.csv", "racer", rows_each);
    let bin = floe_bin();
    floe_ok(&url, &["create", "fleet.race"]);
    let mut acked = Vec::new();
    for round in 0..rounds {
        let children: Vec<_> = (0..writers)
            .map(|w| {
                let id = format!("r{round}-w{w}-{}", uuid::Uuid::new_v4());
                let child = Command::new(&bin)
                    .args(["--warehouse", &url, "append", "fleet.race"])
                    .arg(&input)
                    .args(["--commit-id", &id, "--json"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                (id, child)
            })
            .collect();
        for (id, child) in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "writer {id} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v["commit_id"], id.as_str());
            acked.push(id);
        }
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let t = Table::load(wh, &TableIdent::parse("fleet.race").unwrap())
            .await
            .unwrap();
        let mut got = commit_ids(&t);
        assert_eq!(
            got.len(),
            writers * rounds,
            "one snapshot per acknowledged append"
        );
        got.sort();
        acked.sort();
        assert_eq!(got, acked, "every acknowledged commit exactly once");
        assert_eq!(t.version(), Version(1 + (writers * rounds) as u64));
        for v in 1..=(1 + writers * rounds) as u64 {
            let loc = floe_table_format::version::metadata_location(t.location(), Version(v));
            wh.store()
                .head(&wh.object_path(&loc).unwrap())
                .await
                .unwrap_or_else(|e| panic!("version {v} missing, history has a gap: {e}"));
        }
        assert_eq!(scan(&t).await.0, rows_each * writers * rounds);
    });
}
