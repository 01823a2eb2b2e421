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
