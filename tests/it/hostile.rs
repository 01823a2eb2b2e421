//! Damaged and hostile tables: each gives a clear error naming the object, or is tolerated
//! where the spec allows; never a panic, never a silent wrong answer.

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use floe_table_format::check::check_table;
use floe_table_format::version::{self, metadata_location, Version};
use floe_table_format::{CommitOptions, Error, Table, TableIdent, Warehouse};

use crate::support::*;

async fn table_with_3_commits(wh: &Warehouse, name: &str) -> Table {
    let ident = TableIdent::parse(name).unwrap();
    let mut t = Table::create(wh, &ident, iot_definition()).await.unwrap();
    for d in 0..3 {
        append_batch(
            &mut t,
            |s| rows(s, "d", DAY0_US + d * DAY_US, 20, 1.0),
            CommitOptions::default(),
        )
        .await
        .unwrap();
    }
    t
}

async fn put(wh: &Warehouse, location: &str, body: impl Into<PutPayload>) {
    wh.store()
        .put(&wh.object_path(location).unwrap(), body.into())
        .await
        .unwrap();
}

fn key(wh: &Warehouse, location: &str) -> Path {
    wh.object_path(location).unwrap()
}

async fn scan_result(t: &floe_table_format::TableView) -> Result<usize, String> {
    let it = t.iceberg().map_err(|e| e.to_string())?;
    let stream = it
        .scan()
        .build()
        .map_err(|e| e.to_string())?
        .to_arrow()
        .await
        .map_err(|e| e.to_string())?;
    let batches: Vec<_> = stream.try_collect().await.map_err(|e| e.to_string())?;
    Ok(batches.iter().map(|b| b.num_rows()).sum())
}

#[tokio::test]
async fn healthy_table_checks_clean() {
    for (backend, wh) in all_warehouses() {
        let t = table_with_3_commits(&wh, "fleet.ok").await;
        let r = check_table(&wh, t.ident().unwrap()).await.unwrap();
        assert!(r.problems.is_empty(), "{backend}: {:?}", r.problems);
        assert_eq!(
            (r.versions, r.snapshots, r.data_files, r.rows),
            (4, 3, 3, 60),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn corrupt_truncated_and_foreign_heads_are_named() {
    let wh = memory_warehouse();
    let t = table_with_3_commits(&wh, "fleet.c").await;
    let other = table_with_3_commits(&wh, "fleet.other").await;
    let head = metadata_location(t.location(), Version(4));
    let good = wh
        .store()
        .get(&key(&wh, &head))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let foreign = wh
        .store()
        .get(&key(&wh, other.metadata_location()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    for (what, body, expect) in [
        (
            "garbage",
            bytes::Bytes::from_static(b"\x00\x01garbage"),
            "not valid Iceberg table metadata",
        ),
        (
            "truncated",
            good.slice(..good.len() / 2),
            "not valid Iceberg table metadata",
        ),
        ("foreign", foreign, "describes a table located at"),
    ] {
        put(&wh, &head, body).await;
        let e = Table::load(&wh, t.ident().unwrap()).await.unwrap_err();
        assert!(matches!(e, Error::CorruptMetadata { .. }), "{what}: {e}");
        assert!(
            e.to_string().contains("v4.metadata.json") && e.to_string().contains(expect),
            "{what}: {e}"
        );
        let r = check_table(&wh, t.ident().unwrap()).await.unwrap();
        assert!(
            r.problems
                .iter()
                .any(|p| p.object.ends_with("v4.metadata.json")),
            "{what}: {:?}",
            r.problems
        );
    }
}

#[tokio::test]
async fn missing_or_truncated_files_fail_loudly() {
    let wh = memory_warehouse();
    let t = table_with_3_commits(&wh, "fleet.m").await;
    assert_eq!(scan_result(&t).await.unwrap(), 60);
    let it = t.iceberg().unwrap();
    let current = t.metadata().current_snapshot().unwrap();
    let list = it.manifest_list_reader(current).load().await.unwrap();
    let manifest_path = list.entries()[0].manifest_path.clone();
    let manifest = list.entries()[1].load_manifest(it.file_io()).await.unwrap();
    let data_path = manifest.entries()[0].data_file().file_path().to_string();

    // A truncated data file: the size no longer matches.
    let data = wh
        .store()
        .get(&key(&wh, &data_path))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    put(&wh, &data_path, data.slice(..data.len() - 10)).await;
    let r = check_table(&wh, t.ident().unwrap()).await.unwrap();
    assert!(
        r.problems
            .iter()
            .any(|p| p.object == data_path && p.message.contains("bytes")),
        "{:?}",
        r.problems
    );
    assert!(
        scan_result(&t).await.is_err(),
        "a truncated file must not read as fewer rows"
    );

    // A missing data file and a missing manifest.
    wh.store().delete(&key(&wh, &data_path)).await.unwrap();
    wh.store().delete(&key(&wh, &manifest_path)).await.unwrap();
    let r = check_table(&wh, t.ident().unwrap()).await.unwrap();
    assert!(
        r.problems
            .iter()
            .any(|p| p.object == data_path && p.message.contains("missing")),
        "{:?}",
        r.problems
    );
    assert!(
        r.problems.iter().any(|p| p.object == manifest_path),
        "{:?}",
        r.problems
    );
    let e = scan_result(&t).await.unwrap_err();
    assert!(!e.is_empty());
}

#[tokio::test]
async fn gaps_wrong_hints_and_junk_are_tolerated_and_reported() {
    let wh = memory_warehouse();
    let t = table_with_3_commits(&wh, "fleet.g").await;
    let loc = t.location().to_string();
    // Junk under metadata/ is ignored by readers and by check.
    put(&wh, &format!("{loc}/metadata/v9.metadata.json.tmp"), "junk").await;
    put(
        &wh,
        &format!("{loc}/metadata/.v2.metadata.json.crc"),
        "junk",
    )
    .await;
    put(
        &wh,
        &format!("{loc}/metadata/00001-abc.metadata.json"),
        "junk",
    )
    .await;
    let r = check_table(&wh, t.ident().unwrap()).await.unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    // A hint past the head: the head is still found; check reports the hint.
    version::write_hint(&wh, &loc, Version(42)).await.unwrap();
    assert_eq!(
        Table::load(&wh, t.ident().unwrap())
            .await
            .unwrap()
            .version(),
        Version(4)
    );
    let r = check_table(&wh, t.ident().unwrap()).await.unwrap();
    assert!(
        r.problems
            .iter()
            .any(|p| p.object.ends_with("version-hint.text") && p.message.contains("v42")),
        "{:?}",
        r.problems
    );
    // A gap below the head: readers start from the hint; check reports the gap.
    version::write_hint(&wh, &loc, Version(4)).await.unwrap();
    wh.store()
        .delete(&key(&wh, &metadata_location(&loc, Version(2))))
        .await
        .unwrap();
    let loaded = Table::load(&wh, t.ident().unwrap()).await.unwrap();
    assert_eq!(scan_result(&loaded).await.unwrap(), 60);
    let r = check_table(&wh, t.ident().unwrap()).await.unwrap();
    assert!(
        r.problems
            .iter()
            .any(|p| p.object.ends_with("v2.metadata.json") && p.message.contains("gap")),
        "{:?}",
        r.problems
    );
}

/// Issue 15, class 6: reads of metadata, hints and manifests are bounded. An object over
/// its limit is refused before its body is read (a gateway's memory is never exhausted by
/// one), with an error naming it; a junk hint of any size is ignored.
#[tokio::test]
async fn huge_objects_are_refused_unread() {
    use floe_table_format::metadata::MAX_METADATA_BYTES;
    use floe_table_format::storage::MAX_WHOLE_READ_BYTES;
    for (backend, wh) in [
        ("memory", memory_warehouse()),
        ("file", local_warehouse().0),
    ] {
        let ident = TableIdent::parse("fleet.huge").unwrap();
        let t = table_with_3_commits(&wh, "fleet.huge").await;
        // A 1 MiB junk hint: ignored, the table loads at its head.
        put(
            &wh,
            &version::hint_location(t.location()),
            vec![b'9'; 1 << 20],
        )
        .await;
        let loaded = Table::load(&wh, &ident).await.unwrap();
        assert_eq!(loaded.version(), t.version(), "{backend}");
        // A manifest list over the whole-read limit: the scan fails naming it.
        let list = t
            .metadata()
            .current_snapshot()
            .unwrap()
            .manifest_list()
            .to_string();
        put(&wh, &list, vec![0u8; (MAX_WHOLE_READ_BYTES + 1) as usize]).await;
        let e = scan_result(&loaded).await.unwrap_err();
        assert!(
            e.contains(&list) && e.contains("over the"),
            "{backend}: {e}"
        );
        // A head version over the metadata limit: loading is refused naming it.
        let next = metadata_location(t.location(), Version(t.version().0 + 1));
        put(&wh, &next, vec![b' '; (MAX_METADATA_BYTES + 1) as usize]).await;
        let e = Table::load(&wh, &ident).await.unwrap_err().to_string();
        assert!(
            e.contains(&next) && e.contains("over the"),
            "{backend}: {e}"
        );
        // `floe check` reports it as a problem of that object, without failing itself.
        let r = check_table(&wh, &ident).await.unwrap();
        assert!(
            r.problems
                .iter()
                .any(|p| p.object == next && p.message.contains("over the")),
            "{backend}: {:?}",
            r.problems
        );
    }
}

async fn get(wh: &Warehouse, location: &str) -> bytes::Bytes {
    wh.store()
        .get(&key(wh, location))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
}

/// Issue 15, class 6: version numbers come from object names and sequence numbers from
/// metadata, so either may sit at the end of its integer type. A version named
/// `v18446744073709551615.metadata.json` is read like any head, but a writer gets one clear
/// error naming it (there is no version after it) and `floe check` reports the gap below it
/// once; a head whose `last-sequence-number` is i64::MAX refuses appends naming it.
#[tokio::test]
async fn versions_and_sequence_numbers_at_their_limits_are_errors_not_panics() {
    let wh = memory_warehouse();
    let ident = TableIdent::parse("fleet.max").unwrap();
    let t = table_with_3_commits(&wh, "fleet.max").await;
    let loc = t.location().to_string();
    let head = get(&wh, t.metadata_location()).await;
    let last = format!("{loc}/metadata/v18446744073709551615.metadata.json");
    put(&wh, &last, head.clone()).await;
    let hint = version::hint_location(&loc);
    for hinted in [false, true] {
        if hinted {
            version::write_hint(&wh, &loc, Version(u64::MAX))
                .await
                .unwrap();
        } else {
            wh.store().delete(&key(&wh, &hint)).await.unwrap();
        }
        let mut loaded = Table::load(&wh, &ident).await.unwrap();
        assert_eq!(loaded.version(), Version(u64::MAX), "hint: {hinted}");
        assert_eq!(scan_result(&loaded).await.unwrap(), 60);
        let e = append_batch(
            &mut loaded,
            |s| rows(s, "d", DAY0_US, 1, 1.0),
            CommitOptions::default(),
        )
        .await
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("v18446744073709551615.metadata.json"),
            "hint: {hinted}: {e}"
        );
    }
    let r = check_table(&wh, &ident).await.unwrap();
    let gaps: Vec<_> = r
        .problems
        .iter()
        .filter(|p| p.message.contains("gap"))
        .collect();
    assert_eq!(gaps.len(), 1, "{:?}", r.problems);
    assert!(gaps[0].object.ends_with("v5.metadata.json"), "{gaps:?}");
    assert!(gaps[0].message.contains("18446744073709551614"), "{gaps:?}");

    // A head whose last sequence number (and last update time) is the largest i64.
    wh.store().delete(&key(&wh, &last)).await.unwrap();
    let mut json: serde_json::Value = serde_json::from_slice(&head).unwrap();
    json["last-sequence-number"] = i64::MAX.into();
    json["last-updated-ms"] = i64::MAX.into();
    let v5 = metadata_location(&loc, Version(5));
    put(&wh, &v5, serde_json::to_vec(&json).unwrap()).await;
    version::write_hint(&wh, &loc, Version(5)).await.unwrap();
    let mut loaded = Table::load(&wh, &ident).await.unwrap();
    assert_eq!(loaded.version(), Version(5));
    let e = append_batch(
        &mut loaded,
        |s| rows(s, "d", DAY0_US, 1, 1.0),
        CommitOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string().contains("v5.metadata.json") && e.to_string().contains("sequence"),
        "{e}"
    );
    assert!(
        !version::version_exists(&wh, &loc, Version(6))
            .await
            .unwrap(),
        "nothing committed"
    );
}

/// Issue 15, class 6: table properties come from storage (another engine may write
/// anything). Each hostile value of a property Floe reads leaves the table usable: it
/// loads, appends commit and read back, `check`, `expire`, `compact`, `vacuum` and `sync`
/// run without a panic. A value Floe cannot use falls back to the default with a warning
/// naming the property, except a writer setting (codec, page rows, file size), which fails
/// the writes that need it with one error naming the property.
#[tokio::test]
async fn hostile_property_values_never_brick_a_table() {
    let huge = "x".repeat(1 << 20);
    let huge_json = format!("[{}", "[\"c\",1],".repeat(1 << 17));
    // (property, value, whether writes need it, whether Floe warns about it)
    let cases: Vec<(&str, &str, bool, bool)> = vec![
        ("floe.history.max-snapshots", "-1", false, true),
        ("floe.history.max-snapshots", "0", false, true),
        (
            "floe.history.max-snapshots",
            "18446744073709551615",
            false,
            false,
        ),
        (
            "floe.history.max-snapshots",
            "18446744073709551616",
            false,
            true,
        ),
        ("floe.history.max-snapshots", "many", false, true),
        ("floe.history.max-snapshots", &huge, false, true),
        ("history.expire.max-snapshot-age-ms", "-1", false, true),
        (
            "history.expire.max-snapshot-age-ms",
            "9223372036854775807",
            false,
            false,
        ),
        ("history.expire.max-snapshot-age-ms", "soon", false, true),
        ("history.expire.min-snapshots-to-keep", "0", false, true),
        ("history.expire.min-snapshots-to-keep", "-1", false, true),
        (
            "history.expire.min-snapshots-to-keep",
            "18446744073709551615",
            false,
            false,
        ),
        ("commit.manifest.min-count-to-merge", "-5", false, true),
        ("commit.manifest.target-size-bytes", "0", false, true),
        (
            "commit.manifest.target-size-bytes",
            "9223372036854775807",
            false,
            false,
        ),
        ("commit.manifest-merge.enabled", "maybe", false, true),
        (
            "write.metadata.delete-after-commit.enabled",
            "yes",
            false,
            true,
        ),
        ("write.metadata.previous-versions-max", "0", false, false),
        ("write.metadata.previous-versions-max", "-1", false, false),
        (
            "write.metadata.previous-versions-max",
            "18446744073709551616",
            false,
            false,
        ),
        ("floe.expired-commits", "garbage", false, true),
        ("floe.expired-commits", "[[1,2]]", false, true),
        ("floe.expired-commits", &huge_json, false, true),
        ("floe.sync.projected-sequence-number", "-1", false, false),
        (
            "floe.sync.projected-sequence-number",
            "9223372036854775807",
            false,
            false,
        ),
        ("floe.sync.projected-sequence-number", "none", false, false),
        ("commit.retry.num-retries", "lots", false, false),
        ("commit.retry.total-timeout-ms", "-1", false, false),
        ("write.metadata.compression-codec", "zip", false, false),
        ("write.target-file-size-bytes", "0", true, false),
        ("write.target-file-size-bytes", "big", true, false),
        ("write.parquet.page-row-limit", "-3", true, false),
        ("write.parquet.compression-codec", "zip", true, false),
    ];
    let (wh, dir) = local_warehouse();
    let url = wh.url().to_string();
    let csv = dir.join("one.csv");
    std::fs::write(
        &csv,
        "device_id,ts,metric,value\nd1,2026-01-01T00:00:00Z,p,1.5\n",
    )
    .unwrap();
    let csv = csv.to_str().unwrap();
    let cloud = dir.join("cloud");
    let cloud = cloud.to_str().unwrap();
    let mut wrong = Vec::new();
    for (i, (key, value, needed, warns)) in cases.iter().enumerate() {
        let shown = format!("{key}={}", &value[..value.len().min(24)]);
        let name = format!("fleet.p{i}");
        let ident = TableIdent::parse(&name).unwrap();
        let mut t = table_with_3_commits(&wh, &name).await;
        let set = CommitOptions {
            table_properties: [(key.to_string(), value.to_string())].into(),
            ..CommitOptions::default()
        };
        append_batch(&mut t, |s| rows(s, "d", DAY0_US, 20, 1.0), set)
            .await
            .unwrap_or_else(|e| panic!("{shown}: setting it failed: {e}"));
        let t = Table::load(&wh, &ident)
            .await
            .unwrap_or_else(|e| panic!("{shown}: the table no longer loads: {e}"));
        assert_eq!(t.metadata().properties()[*key], *value);
        let mut want_rows = 80;
        // Floe warns where it reads the setting: on the commit path of an append.
        let mut run = |args: &[&str], must_succeed: bool| {
            let warns = *warns && args[0] == "append";
            let o = floe(&url, args);
            let e = String::from_utf8_lossy(&o.stderr).to_string();
            let first = e.lines().next().unwrap_or_default().to_string();
            if e.contains("panicked") {
                wrong.push(format!("{shown}: {args:?} panicked: {e}"));
            } else if must_succeed && !o.status.success() {
                wrong.push(format!("{shown}: {args:?} failed: {first}"));
            } else if !must_succeed && (o.status.success() || !e.contains(*key)) {
                wrong.push(format!("{shown}: {args:?} should fail naming it: {first}"));
            } else if must_succeed && warns && !e.contains(*key) {
                wrong.push(format!("{shown}: {args:?} gave no warning naming it"));
            }
            o.status.success()
        };
        if run(&["append", &name, csv], !needed) {
            want_rows += 1;
        }
        run(&["check", &name], true);
        run(&["compact", &name], !needed);
        run(&["expire", &name, "--older-than", "0s"], true);
        run(&["vacuum", &name, "--older-than", "0s"], true);
        run(&["sync", &name, "--to", cloud], true);
        let t = Table::load(&wh, &ident).await.unwrap();
        match scan_result(&t).await {
            Ok(n) if n == want_rows => {}
            other => wrong.push(format!(
                "{shown}: read back {other:?}, want {want_rows} rows"
            )),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Issue 15, class 6: the local sync watermark is a property too. One no sequence number of
/// the table can have (above its last sequence number) must not count as "projected":
/// expiry would then drop snapshots the cloud never got, and every later sync would stop
/// at the gap. It counts as nothing projected, and the next sync corrects it.
#[tokio::test]
async fn an_impossible_sync_watermark_protects_everything() {
    let (local, dir) = local_warehouse();
    let cloud = dir.join("cloud");
    let cloud = cloud.to_str().unwrap();
    let ident = TableIdent::parse("fleet.w").unwrap();
    let mut t = table_with_3_commits(&local, "fleet.w").await;
    let sync = |t: &str| floe(local.url(), &["sync", t, "--to", cloud]);
    let o = sync("fleet.w");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    t.refresh().await.unwrap();
    for day in 0..2 {
        append_batch(
            &mut t,
            |s| rows(s, "later", DAY0_US + day * DAY_US, 5, 1.0),
            CommitOptions::default(),
        )
        .await
        .unwrap();
    }
    let hostile = CommitOptions {
        table_properties: [(floe_sync::LOCAL_WATERMARK.to_string(), i64::MAX.to_string())].into(),
        ..CommitOptions::default()
    };
    append_batch(&mut t, |s| rows(s, "later", DAY0_US, 5, 1.0), hostile)
        .await
        .unwrap();
    let o = floe(local.url(), &["expire", "fleet.w", "--older-than", "0s"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = sync("fleet.w");
    assert!(
        o.status.success(),
        "sync after expiry: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let t = Table::load(&local, &ident).await.unwrap();
    let c = Table::load(&Warehouse::open(cloud).unwrap(), &ident)
        .await
        .unwrap();
    assert_eq!(scan_result(&c).await, scan_result(&t).await);
    let ids = commit_ids(&c);
    assert_eq!(
        ids.iter().collect::<std::collections::HashSet<_>>().len(),
        ids.len(),
        "no local range twice"
    );
    let w: i64 = t.metadata().properties()[floe_sync::LOCAL_WATERMARK]
        .parse()
        .unwrap();
    assert_eq!(w, t.metadata().last_sequence_number(), "corrected");
}
