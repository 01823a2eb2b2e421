//! Bad input through the CLI: one clear error naming the object, non-zero exit, nothing
//! committed.

use std::process::Output;

use crate::support::*;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn version_of(wh: &str, table: &str) -> u64 {
    let o = floe(wh, &["describe", table, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["version"].as_u64().unwrap()
}

#[test]
fn bad_input_is_refused_with_one_clear_error() {
    let (wh, dir) = local_warehouse();
    let url = wh.url();
    let good = dir.join("good.csv");
    std::fs::write(
        &good,
        "device_id,ts,metric,value\nd1,2026-01-01T00:00:00Z,p,1.5\n",
    )
    .unwrap();
    let o = floe(
        url,
        &["append", "fleet.t", good.to_str().unwrap(), "--create"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(version_of(url, "fleet.t"), 2);

    // A value that does not fit its column, in the second of two files.
    let bad = dir.join("bad.csv");
    std::fs::write(
        &bad,
        "device_id,ts,metric,value\nd1,2026-01-01T00:00:00Z,p,lots\n",
    )
    .unwrap();
    let o = floe(
        url,
        &[
            "append",
            "fleet.t",
            good.to_str().unwrap(),
            bad.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.starts_with("error: "), "{e}");
    assert!(
        e.contains("bad.csv") && e.contains("'value'") && e.contains("nothing was committed"),
        "{e}"
    );
    assert_eq!(version_of(url, "fleet.t"), 2, "nothing committed");

    // A column the table does not have.
    let extra = dir.join("extra.json");
    std::fs::write(&extra, "{\"device_id\":\"d\",\"colour\":\"red\"}\n").unwrap();
    let o = floe(url, &["append", "fleet.t", extra.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("extra.json"), "{}", stderr(&o));
    assert_eq!(version_of(url, "fleet.t"), 2, "nothing committed");

    // Unknown table, missing file, hostile names.
    let o = floe(url, &["describe", "fleet.nope"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("fleet.nope") && stderr(&o).contains("does not exist"),
        "{}",
        stderr(&o)
    );
    let o = floe(url, &["append", "fleet.t", "/no/such/file.csv"]);
    assert!(!o.status.success() && stderr(&o).contains("/no/such/file.csv"));
    for hostile in ["fleet/../../etc.t", "fleet..t", "../x.t", "fleet.T"] {
        let o = floe(url, &["create", hostile]);
        assert!(!o.status.success(), "{hostile} accepted");
        assert!(
            stderr(&o).contains("invalid name"),
            "{hostile}: {}",
            stderr(&o)
        );
    }
    assert!(!dir.join("etc").exists() && !dir.parent().unwrap().join("etc").join("t").exists());

    // A corrupt head version: a clear error naming the object, never a panic.
    let v3 = dir.join("fleet/t/metadata/v3.metadata.json");
    std::fs::write(&v3, "{\"format-version\": 2, \"truncated").unwrap();
    let o = floe(url, &["describe", "fleet.t"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("v3.metadata.json") && e.contains("not valid Iceberg table metadata"),
        "{e}"
    );
    assert!(!e.contains("panicked"), "{e}");
    // Appending on top of it is refused too, and does not overwrite it.
    let o = floe(url, &["append", "fleet.t", good.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(!dir.join("fleet/t/metadata/v4.metadata.json").exists());
}

#[test]
fn a_compaction_target_that_would_wrap_is_refused() {
    let (wh, dir) = local_warehouse();
    let url = wh.url();
    let good = dir.join("good.csv");
    std::fs::write(
        &good,
        "device_id,ts,metric,value\nd1,2026-01-01T00:00:00Z,p,1.5\n",
    )
    .unwrap();
    for _ in 0..2 {
        let o = floe(
            url,
            &["append", "fleet.t", good.to_str().unwrap(), "--create"],
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let before = version_of(url, "fleet.t");
    // 2^44 MiB is 2^64 bytes: shifted by 20 bits it wraps to 0.
    for args in [
        ["compact", "fleet.t", "--target-mib", "17592186044416"],
        ["compact", "fleet.t", "--target-mib", "0"],
        ["maintain", "fleet", "--target-mib", "17592186044416"],
    ] {
        let o = floe(url, &args);
        assert!(!o.status.success(), "{args:?} was accepted");
        assert!(
            stderr(&o).contains("--target-mib"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    assert_eq!(version_of(url, "fleet.t"), before, "nothing committed");
}

/// Absurd numbers on the command line (huge, zero where zero means nothing, negative,
/// past what the arithmetic behind them holds): each is one clear error naming its
/// argument and a non-zero exit, before anything is written; never a panic, never a value
/// silently wrapped or clamped.
#[test]
fn absurd_numeric_arguments_are_refused_naming_the_argument() {
    let (wh, dir) = local_warehouse();
    let url = wh.url();
    let good = dir.join("good.csv");
    std::fs::write(
        &good,
        "device_id,ts,metric,value\nd1,2026-01-01T00:00:00Z,p,1.5\n",
    )
    .unwrap();
    let g = good.to_str().unwrap();
    let o = floe(url, &["append", "fleet.t", g, "--create"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let before = version_of(url, "fleet.t");
    let cloud = dir.join("cloud");
    let c = cloud.to_str().unwrap();
    let huge_days = "999999999999999d"; // fits u64; in seconds it does not
    let max_secs = "18446744073709551615s";
    let max_ms = "18446744073709551615ms";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["expire", "fleet.t", "--older-than", huge_days],
            "--older-than",
        ),
        (
            vec!["expire", "fleet.t", "--older-than", max_secs],
            "--older-than",
        ),
        (
            vec!["expire", "fleet.t", "--older-than", "-1d"],
            "--older-than",
        ),
        (
            vec!["expire", "fleet.t", "--older-than", "5000000000s"],
            "--older-than",
        ),
        (
            vec![
                "expire",
                "fleet.t",
                "--older-than",
                "1d",
                "--retain-last",
                "0",
            ],
            "--retain-last",
        ),
        (
            vec!["vacuum", "fleet.t", "--older-than", huge_days],
            "--older-than",
        ),
        (
            vec!["vacuum", "fleet.t", "--older-than", max_secs],
            "--older-than",
        ),
        (
            vec!["retain", "fleet.t", "--drop-older-than", max_ms],
            "--drop-older-than",
        ),
        (
            vec!["retain", "fleet.t", "--drop-older-than", huge_days],
            "--drop-older-than",
        ),
        (
            vec!["maintain", "fleet", "--vacuum-older-than", huge_days],
            "--vacuum-older-than",
        ),
        (
            vec!["append", "fleet.t", g, "--max-attempts", "0"],
            "--max-attempts",
        ),
        (
            vec!["append", "fleet.t", g, "--max-attempts", "4294967296"],
            "--max-attempts",
        ),
        (
            vec!["append", "fleet.t", g, "--commit-timeout", "0"],
            "--commit-timeout",
        ),
        (
            vec![
                "append",
                "fleet.t",
                g,
                "--commit-timeout",
                "18446744073709551615",
            ],
            "--commit-timeout",
        ),
        (
            vec!["append", "fleet.t", g, "--commit-timeout", "-5"],
            "--commit-timeout",
        ),
        (vec!["tables", "fleet", "--limit", "0"], "--limit"),
        (
            vec!["sync", "--to", c, "--prune-local-older-than", huge_days],
            "--prune-local-older-than",
        ),
        (
            vec![
                "sync",
                "--to",
                c,
                "--prune-local-older-than",
                "1d",
                "--prune-grace",
                max_secs,
            ],
            "--prune-grace",
        ),
        (
            vec!["sync", "--to", c, "--max-bytes-per-sec", "0"],
            "--max-bytes-per-sec",
        ),
        (
            vec![
                "sync",
                "--to",
                c,
                "--max-bytes-per-sec",
                "99999999999999999999999999",
            ],
            "--max-bytes-per-sec",
        ),
        (vec!["sql", "SELECT 1", "--partitions", "0"], "--partitions"),
        (
            vec!["sql", "SELECT 1", "--partitions", "18446744073709551615"],
            "--partitions",
        ),
        (
            vec![
                "sql",
                "SELECT 1",
                "--memory-limit",
                "99999999999999999999999999",
            ],
            "--memory-limit",
        ),
        (
            vec![
                "demo",
                "--devices",
                "1",
                "--commits",
                "18446744073709551615",
            ],
            "--commits",
        ),
        (
            vec!["demo", "--devices", "9223372036854775808", "--commits", "2"],
            "--devices",
        ),
    ];
    let mut wrong = Vec::new();
    for (args, flag) in &cases {
        let o = floe(url, args);
        let e = stderr(&o);
        let first = e.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
        if o.status.success() {
            wrong.push(format!("{args:?} was accepted"));
        } else if e.contains("panicked") {
            wrong.push(format!("{args:?} panicked: {first}"));
        } else if !first.contains(flag) {
            wrong.push(format!("{args:?}: the error does not name {flag}: {first}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(version_of(url, "fleet.t"), before, "nothing committed");
    assert!(!cloud.exists(), "nothing synced");
}
