//! The catalog on object storage: namespaces with properties and templates, device tables
//! created on first append, drops, and the published SQL catalog read by pyiceberg.

use std::collections::BTreeMap;

use futures::future::join_all;

use floe_catalog::{Catalog, Error, NamespaceDoc, NamespaceUpdate, TableTemplate};
use floe_table_format::schema::default_iot_schema;
use floe_table_format::{CommitOptions, Namespace, TableIdent};

use crate::support::*;

fn template() -> TableTemplate {
    TableTemplate {
        schema: default_iot_schema(),
        partition: "day(ts)".into(),
        properties: BTreeMap::from([("write.parquet.compression-codec".into(), "snappy".into())]),
    }
}

#[tokio::test]
async fn devices_create_their_tables_from_the_template_once() {
    for (backend, wh) in all_warehouses() {
        let cat = Catalog::new(wh.clone());
        let ns = Namespace::parse("fleet").unwrap();
        let doc = NamespaceDoc {
            template: Some(template()),
            ..NamespaceDoc::default()
        };
        cat.create_namespace(&ns, doc.clone()).await.unwrap();
        assert!(matches!(
            cat.create_namespace(&ns, doc).await,
            Err(Error::NamespaceExists { .. })
        ));
        // Eight "devices" make first contact with the same table at the same moment.
        let ident = TableIdent::parse("fleet.dev_0042").unwrap();
        let tables = join_all((0..8).map(|_| cat.load_or_create_from_template(&ident))).await;
        let uuids: std::collections::HashSet<_> = tables
            .iter()
            .map(|t| t.as_ref().unwrap().metadata().uuid())
            .collect();
        assert_eq!(uuids.len(), 1, "{backend}");
        let mut t = cat.load_table(&ident).await.unwrap();
        assert_eq!(
            t.metadata().properties()["write.parquet.compression-codec"],
            "snappy",
            "{backend}"
        );
        append_rows(&mut t, 5).await;
        // No template: a missing table stays missing.
        let other = TableIdent::parse("plain.dev_1").unwrap();
        assert!(
            cat.load_or_create_from_template(&other).await.is_err(),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn concurrent_namespace_updates_are_never_lost() {
    for (backend, wh) in all_warehouses() {
        let cat = Catalog::new(wh.clone());
        let ns = Namespace::parse("site_17.chargers").unwrap();
        let updates = (0..8).map(|i| {
            let cat = cat.clone();
            let ns = ns.clone();
            async move {
                let change = NamespaceUpdate {
                    set: BTreeMap::from([(format!("key{i}"), format!("v{i}"))]),
                    ..NamespaceUpdate::default()
                };
                cat.update_namespace(&ns, &change).await.unwrap();
            }
        });
        join_all(updates).await;
        let doc = cat.describe_namespace(&ns).await.unwrap();
        assert_eq!(doc.properties.len(), 8, "{backend}: {:?}", doc.properties);
        let change = NamespaceUpdate {
            unset: vec!["key0".into()],
            template: Some(Some(template())),
            ..NamespaceUpdate::default()
        };
        cat.update_namespace(&ns, &change).await.unwrap();
        let doc = cat.describe_namespace(&ns).await.unwrap();
        assert_eq!(doc.properties.len(), 7, "{backend}");
        assert_eq!(doc.template, Some(template()), "{backend}");
        assert_eq!(
            cat.list_all_namespaces()
                .await
                .unwrap()
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>(),
            ["site_17", "site_17.chargers"],
            "{backend}"
        );
        // A bad template is refused before anything is written.
        let bad = NamespaceUpdate {
            template: Some(Some(TableTemplate {
                partition: "day(nope)".into(),
                ..template()
            })),
            ..NamespaceUpdate::default()
        };
        assert!(cat.update_namespace(&ns, &bad).await.is_err());
        assert_eq!(
            cat.describe_namespace(&ns).await.unwrap().template,
            Some(template())
        );
    }
}

#[tokio::test]
async fn drop_removes_a_table_and_purge_its_files() {
    for (backend, wh) in all_warehouses() {
        let cat = Catalog::new(wh.clone());
        let ns = Namespace::parse("fleet").unwrap();
        for name in ["fleet.a", "fleet.b"] {
            let mut t = cat
                .create_table(&TableIdent::parse(name).unwrap(), iot_definition())
                .await
                .unwrap();
            append_rows(&mut t, 5).await;
        }
        let b = TableIdent::parse("fleet.b").unwrap();
        cat.drop_table(&b, false).await.unwrap();
        let names: Vec<String> = cat
            .list_tables(&ns)
            .await
            .unwrap()
            .iter()
            .map(|t| t.to_string())
            .collect();
        assert_eq!(names, ["fleet.a"], "{backend}");
        assert_eq!(
            cat.list_all_namespaces().await.unwrap().len(),
            1,
            "{backend}: remains are not a namespace"
        );
        assert!(cat.load_table(&b).await.is_err(), "{backend}");
        let e = cat
            .create_table(&b, iot_definition())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("--purge"), "{backend}: {e}");
        cat.drop_table(&b, true).await.unwrap();
        assert!(
            !floe_table_format::version::any_object_under(&wh, &wh.location("fleet/b"))
                .await
                .unwrap()
        );
        cat.create_table(&b, iot_definition()).await.unwrap();
        assert!(cat
            .drop_table(&TableIdent::parse("fleet.nope").unwrap(), false)
            .await
            .is_err());
        // No namespace inside a table.
        let e = cat
            .create_namespace(
                &Namespace::parse("fleet.a.x").unwrap(),
                NamespaceDoc::default(),
            )
            .await;
        assert!(
            e.unwrap_err().to_string().contains("fleet.a is a table"),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn pyiceberg_reads_the_published_sql_catalog() {
    let (wh, dir) = local_warehouse();
    let cat = Catalog::new(wh.clone());
    let ns = Namespace::parse("fleet").unwrap();
    let doc = NamespaceDoc {
        properties: BTreeMap::from([("owner".into(), "ops".into())]),
        template: Some(template()),
        ..NamespaceDoc::default()
    };
    cat.create_namespace(&ns, doc).await.unwrap();
    for (i, name) in ["fleet.dev_1", "fleet.dev_2", "fleet.dev_3"]
        .iter()
        .enumerate()
    {
        let mut t = cat
            .load_or_create_from_template(&TableIdent::parse(name).unwrap())
            .await
            .unwrap();
        append_batch(
            &mut t,
            |s| rows(s, name, DAY0_US, 10 * (i + 1), 0.5),
            CommitOptions::default(),
        )
        .await
        .unwrap();
    }
    let db = dir.join("catalog.db");
    let r = floe_catalog::sql::publish(&cat, &db, "floe").await.unwrap();
    assert_eq!((r.namespaces, r.tables, r.removed), (1, 3, 0));
    // A new commit and a drop, then publish again: pointers move, the dropped row goes.
    let mut t1 = cat
        .load_table(&TableIdent::parse("fleet.dev_1").unwrap())
        .await
        .unwrap();
    append_batch(
        &mut t1,
        |s| rows(s, "dev_1", DAY0_US + DAY_US, 5, 0.0),
        CommitOptions::default(),
    )
    .await
    .unwrap();
    cat.drop_table(&TableIdent::parse("fleet.dev_3").unwrap(), true)
        .await
        .unwrap();
    let r = floe_catalog::sql::publish(&cat, &db, "floe").await.unwrap();
    assert_eq!((r.tables, r.removed), (2, 1));

    let got = run_python(&[
        "tests/interop/read_sql_catalog.py",
        db.to_str().unwrap(),
        "floe",
        "fleet",
    ]);
    assert_eq!(got["namespaces"], serde_json::json!(["fleet"]));
    assert_eq!(got["properties"]["owner"], "ops");
    let tables = got["tables"].as_object().unwrap();
    assert_eq!(
        tables.keys().collect::<Vec<_>>(),
        ["fleet.dev_1", "fleet.dev_2"]
    );
    assert_eq!(tables["fleet.dev_1"]["rows"], 15);
    assert_eq!(tables["fleet.dev_2"]["rows"], 20);
    assert_eq!(
        tables["fleet.dev_1"]["metadata_location"],
        t1.metadata_location()
    );
}

#[tokio::test]
async fn iceberg_transactions_and_datafusion_work_through_the_catalog_trait() {
    use std::sync::Arc;

    use datafusion::prelude::SessionContext;
    use floe_table_format::iceberg::transaction::{ApplyTransactionAction, Transaction};
    use floe_table_format::iceberg::Catalog as _;
    use floe_table_format::DataWriter;

    for (backend, wh) in all_warehouses() {
        let cat = Catalog::new(wh.clone());
        let ice = Arc::new(floe_catalog::IcebergCatalog::new(cat.clone()));
        let ident = TableIdent::parse("fleet.tx").unwrap();
        let t = cat.create_table(&ident, iot_definition()).await.unwrap();
        // Two transactions from the same base: the second loses the race, and iceberg's
        // Transaction reloads and re-applies it through update_table.
        let mut files = Vec::new();
        for k in 0..2 {
            let mut w = DataWriter::new(&t).unwrap();
            w.write(rows(w.arrow_schema(), &format!("tx{k}"), DAY0_US, 4, 0.0))
                .await
                .unwrap();
            files.push(w.close().await.unwrap());
        }
        let base = ice.load_table(&ident.to_iceberg()).await.unwrap();
        for f in files {
            let tx = Transaction::new(&base);
            let tx = tx.fast_append().add_data_files(f).apply(tx).unwrap();
            tx.commit(ice.as_ref()).await.unwrap();
        }
        let loaded = cat.load_table(&ident).await.unwrap();
        assert_eq!(loaded.version().0, 3, "{backend}: two claims, gap-free");
        assert_eq!(loaded.metadata().snapshots().len(), 2, "{backend}");
        assert_eq!(scan(&loaded).await.0, 8, "{backend}");

        // DataFusion through iceberg-datafusion's catalog provider, reads and INSERT INTO.
        let ctx = SessionContext::new();
        let provider = iceberg_datafusion::IcebergCatalogProvider::try_new(ice.clone())
            .await
            .unwrap();
        ctx.register_catalog("floe", Arc::new(provider));
        let n = ctx
            .sql("SELECT count(*) FROM floe.fleet.tx")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let count = n[0]
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap()
            .value(0);
        assert_eq!(count, 8, "{backend}");
        ctx.sql("INSERT INTO floe.fleet.tx VALUES ('sql', TIMESTAMP '2026-01-05T00:00:00Z', 'power_kw', 1.5)")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let loaded = cat.load_table(&ident).await.unwrap();
        assert_eq!(loaded.version().0, 4, "{backend}");
        assert_eq!(scan(&loaded).await.0, 9, "{backend}");
        let r = floe_table_format::check::check_table(&wh, &ident)
            .await
            .unwrap();
        assert!(r.problems.is_empty(), "{backend}: {:?}", r.problems);
    }
}

#[tokio::test]
async fn floe_and_pyiceberg_commit_concurrently_through_one_sql_catalog() {
    use floe_catalog::sql_backend::SqlBackend;

    let (wh, dir) = local_warehouse();
    let db = dir.join("catalog.db");
    let cat = Catalog::with_sql(wh.clone(), SqlBackend::open(&db, "shared").unwrap());
    let ns = Namespace::parse("fleet").unwrap();
    cat.create_namespace(
        &ns,
        NamespaceDoc {
            template: Some(template()),
            ..NamespaceDoc::default()
        },
    )
    .await
    .unwrap();
    let ident = TableIdent::parse("fleet.shared").unwrap();
    cat.load_or_create_from_template(&ident).await.unwrap();
    assert!(
        cat.create_table(&ident, iot_definition()).await.is_err(),
        "created twice"
    );

    let (py_commits, py_rows, floe_commits, floe_rows) = (8usize, 6usize, 4usize, 5usize);
    let mut writer = std::process::Command::new(python())
        .args([
            "tests/interop/sql_writer.py",
            db.to_str().unwrap(),
            "shared",
            "fleet.shared",
            &py_commits.to_string(),
            &py_rows.to_string(),
        ])
        .current_dir(repo_root())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Floe keeps committing for as long as the pyiceberg writer runs (at least
    // `floe_commits` times), so the two really race on the same row.
    let mut acked = Vec::new();
    let mut i = 0i64;
    while acked.len() < floe_commits || writer.try_wait().unwrap().is_none() {
        // Paced like a gateway: a faster loop would livelock pyiceberg (its append takes
        // longer than the gap between Floe's commits, and it never retries faster).
        assert!(acked.len() < 200, "the pyiceberg writer did not finish");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        i += 1;
        let mut t = cat.load_table(&ident).await.unwrap();
        let opts = CommitOptions::default();
        acked.push(opts.commit_id.clone());
        append_batch(
            &mut t,
            |s| rows(s, "floe", DAY0_US + (i % 30) * DAY_US, floe_rows, 1.0),
            opts,
        )
        .await
        .unwrap();
    }
    let out = writer.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "pyiceberg writer: {}",
        String::from_utf8_lossy(&out.stdout).trim()
    );

    let t = cat.load_table(&ident).await.unwrap();
    let mut snaps: Vec<_> = t.metadata().snapshots().collect();
    snaps.sort_by_key(|s| s.sequence_number());
    let order: String = snaps
        .iter()
        .map(|s| {
            if s.summary()
                .additional_properties
                .contains_key(floe_table_format::COMMIT_ID_KEY)
            {
                'F'
            } else {
                'p'
            }
        })
        .collect();
    eprintln!("commit order (F = Floe, p = pyiceberg): {order}");
    assert!(
        order.find('p') < order.rfind('F') && order.find('F') < order.rfind('p'),
        "the writers did not interleave: {order}"
    );
    assert_eq!(t.metadata().snapshots().len(), py_commits + acked.len());
    let ids = commit_ids(&t);
    for id in &acked {
        assert_eq!(
            ids.iter().filter(|c| *c == id).count(),
            1,
            "Floe commit {id}"
        );
    }
    let total = py_commits * py_rows + acked.len() * floe_rows;
    assert_eq!(scan(&t).await.0, total);
    let v = run_python(&[
        "tests/interop/read_sql_catalog.py",
        db.to_str().unwrap(),
        "shared",
        "fleet",
    ]);
    assert_eq!(v["tables"]["fleet.shared"]["rows"], total as u64);
    assert_eq!(
        v["tables"]["fleet.shared"]["metadata_location"],
        t.metadata_location()
    );

    // Rename is one row update in an SQL catalog.
    let renamed = TableIdent::parse("fleet.renamed").unwrap();
    cat.rename_table(&ident, &renamed).await.unwrap();
    assert_eq!(
        scan(&cat.load_table(&renamed).await.unwrap()).await.0,
        total
    );
    assert!(cat.load_table(&ident).await.is_err());
}

#[tokio::test]
async fn a_drop_touches_only_the_table_it_names() {
    for (backend, wh) in all_warehouses() {
        let cat = Catalog::new(wh.clone());
        // fleet.a is a namespace holding the table fleet.a.b.
        let inner = TableIdent::parse("fleet.a.b").unwrap();
        let mut t = cat.create_table(&inner, iot_definition()).await.unwrap();
        append_rows(&mut t, 5).await;
        let count = || async { wh.list_all(&wh.location("fleet")).await.unwrap().len() };
        let before = count().await;
        for purge in [false, true] {
            let e = cat
                .drop_table(&TableIdent::parse("fleet.a").unwrap(), purge)
                .await
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("namespace") && e.contains("fleet.a.b"),
                "{backend} purge={purge}: {e}"
            );
        }
        assert_eq!(count().await, before, "{backend}: nothing deleted");
        let loaded = cat.load_table(&inner).await.unwrap();
        assert_eq!(scan(&loaded).await.0, 5, "{backend}");
        // A namespace with only its properties is not a table either.
        cat.create_namespace(
            &Namespace::parse("fleet.c").unwrap(),
            NamespaceDoc::default(),
        )
        .await
        .unwrap();
        let e = cat
            .drop_table(&TableIdent::parse("fleet.c").unwrap(), true)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("namespace"), "{backend}: {e}");
        assert!(cat
            .list_all_namespaces()
            .await
            .unwrap()
            .iter()
            .any(|n| n.to_string() == "fleet.c"));
        // Nothing at all: said so.
        let e = cat
            .drop_table(&TableIdent::parse("fleet.nothing").unwrap(), true)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("nothing at all"), "{backend}: {e}");
        if backend == "memory" {
            continue;
        }
        // Another table rooted inside a table's folder (another tool's warehouse there):
        // purging the outer table leaves it whole.
        let outer = TableIdent::parse("fleet.t").unwrap();
        let mut t = cat.create_table(&outer, iot_definition()).await.unwrap();
        append_rows(&mut t, 5).await;
        let nested_wh = floe_table_format::Warehouse::open(&wh.location("fleet/t")).unwrap();
        let nested = TableIdent::parse("x.inner").unwrap();
        let mut n = floe_table_format::Table::create(&nested_wh, &nested, iot_definition())
            .await
            .unwrap();
        append_rows(&mut n, 3).await;
        cat.drop_table(&outer, true).await.unwrap();
        let n = floe_table_format::Table::load(&nested_wh, &nested)
            .await
            .unwrap();
        assert_eq!(scan(&n).await.0, 3, "{backend}: the nested table is whole");
    }
}

/// An SQL catalog on `wh` whose tables `fleet.y` (5 rows) and `fleet.x` (2 rows) share
/// one folder: a rename keeps the files where they are, and a create with the old name
/// then uses the same folder. Returns the catalog, `fleet.x` and `fleet.y`.
async fn sql_catalog_with_a_shared_folder(
    wh: &floe_table_format::Warehouse,
) -> (Catalog, TableIdent, TableIdent) {
    use floe_catalog::sql_backend::SqlBackend;
    let db = std::env::temp_dir().join(format!("floe-shared-{}.db", uuid::Uuid::new_v4()));
    let cat = Catalog::with_sql(wh.clone(), SqlBackend::open(&db, "c").unwrap());
    let x = TableIdent::parse("fleet.x").unwrap();
    let y = TableIdent::parse("fleet.y").unwrap();
    let mut t = cat.create_table(&x, iot_definition()).await.unwrap();
    append_rows(&mut t, 5).await;
    cat.rename_table(&x, &y).await.unwrap();
    let mut t = cat.create_table(&x, iot_definition()).await.unwrap();
    append_rows(&mut t, 2).await;
    (cat, x, y)
}

#[tokio::test]
async fn an_sql_catalog_purge_never_takes_another_live_tables_files() {
    for (backend, wh) in all_warehouses() {
        let (cat, x, y) = sql_catalog_with_a_shared_folder(&wh).await;
        let e = cat.drop_table(&x, true).await.unwrap_err().to_string();
        assert!(e.contains("fleet.y"), "{backend}: {e}");
        assert_eq!(
            scan(&cat.load_table(&y).await.unwrap()).await.0,
            5,
            "{backend}: the renamed table keeps its rows"
        );
        assert_eq!(
            scan(&cat.load_table(&x).await.unwrap()).await.0,
            2,
            "{backend}: a refused purge changes nothing"
        );
        // Alone in its folder, a purge removes the table's own files.
        cat.drop_table(&x, false).await.unwrap();
        let loc = cat.load_table(&y).await.unwrap().location().to_string();
        cat.drop_table(&y, true).await.unwrap();
        assert!(
            wh.list_all(&format!("{loc}/data"))
                .await
                .unwrap()
                .is_empty(),
            "{backend}: purged"
        );
    }
}

/// Issue 15, class 8: a writer that still holds a head of a table that was dropped and
/// recreated must not win a version of the new table and be acknowledged. The new table's
/// head may be below the stale base (the stale claim would be invisible behind a gap, and
/// every later writer of the new table would fail on it) or at it (the stale claim would
/// extend the new history with the old table's uuid and deleted files).
#[tokio::test]
async fn a_stale_writer_cannot_fork_a_recreated_table() {
    for (backend, wh) in all_warehouses() {
        let catalog = Catalog::new(wh.clone());
        let ident = TableIdent::parse("fleet.dev_1").unwrap();
        for new_appends in [0usize, 2] {
            let mut stale = catalog
                .create_table(&ident, iot_definition())
                .await
                .unwrap();
            append_rows(&mut stale, 5).await;
            append_rows(&mut stale, 5).await;
            // The idle writer's base ages past any freshness window before the drop.
            tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
            catalog.drop_table(&ident, true).await.unwrap();
            let mut new = catalog
                .create_table(&ident, iot_definition())
                .await
                .unwrap();
            for _ in 0..new_appends {
                append_rows(&mut new, 1).await;
            }
            let outcome = append_batch(
                &mut stale,
                |s| rows(s, "stale", DAY0_US, 3, 0.0),
                CommitOptions::default(),
            )
            .await;
            let e = outcome.expect_err(&format!(
                "{backend}, new table at v{}: a stale writer's append was acknowledged on the recreated table",
                1 + new_appends
            ));
            assert!(
                e.to_string().contains("dropped"),
                "{backend}: the error should say the table was dropped: {e}"
            );
            let fresh = catalog.load_table(&ident).await.unwrap();
            assert_eq!(fresh.metadata().uuid(), new.metadata().uuid(), "{backend}");
            assert_eq!(fresh.version().0, 1 + new_appends as u64, "{backend}");
            assert_eq!(scan(&fresh).await.0, new_appends, "{backend}");
            // The new table's own writers are not disturbed.
            append_rows(&mut new, 1).await;
            assert_eq!(scan(&new).await.0, new_appends + 1, "{backend}");
            catalog.drop_table(&ident, true).await.unwrap();
        }
    }
}

/// Issue 15, class 1: a vacuum deletes only the table's own unreferenced objects: never a
/// table of another tool rooted inside its folder (beside or under `data/`), never what a
/// link on a local disk points at, and (like a purge) nothing of a table registered from
/// outside the warehouse or sharing its folder with another live table.
#[tokio::test]
async fn a_vacuum_touches_only_the_table_it_names() {
    use floe_table_format::{Table, Warehouse};
    use std::time::Duration;
    for (backend, wh) in all_warehouses() {
        let cat = Catalog::new(wh.clone());
        let outer = TableIdent::parse("fleet.t").unwrap();
        let mut t = cat.create_table(&outer, iot_definition()).await.unwrap();
        append_rows(&mut t, 5).await;
        let mut nested = Vec::new();
        for root in ["fleet/t", "fleet/t/data"] {
            let nwh = Warehouse::open(&wh.location(root)).unwrap();
            let id = TableIdent::parse("x.inner").unwrap();
            let mut n = Table::create(&nwh, &id, iot_definition()).await.unwrap();
            append_rows(&mut n, 3).await;
            nested.push((root, nwh, id));
        }
        let r = cat
            .vacuum_table(&outer, Duration::ZERO, false)
            .await
            .unwrap();
        assert!(
            r.orphans.iter().all(|o| !o.contains("/x/inner/")),
            "{backend}: {:?}",
            r.orphans
        );
        for (root, nwh, id) in &nested {
            let n = Table::load(nwh, id).await.unwrap();
            assert_eq!(
                scan(&n).await.0,
                3,
                "{backend}: the table under {root} is whole"
            );
        }
        assert_eq!(scan(&cat.load_table(&outer).await.unwrap()).await.0, 5);
        // A table registered from another's metadata names the other's files and manifest
        // lists: its expiry, vacuum and purge delete none of them.
        let src = TableIdent::parse("fleet.src").unwrap();
        let mut s = cat.create_table(&src, iot_definition()).await.unwrap();
        append_rows(&mut s, 2).await;
        append_rows(&mut s, 3).await;
        let adopted = TableIdent::parse("fleet.adopted").unwrap();
        let mut a = cat
            .register_table(&adopted, s.metadata_location())
            .await
            .unwrap();
        append_rows(&mut a, 1).await;
        floe_table_format::vacuum::expire(&mut a, Duration::ZERO, 1)
            .await
            .unwrap();
        cat.vacuum_table(&adopted, Duration::ZERO, false)
            .await
            .unwrap();
        assert_eq!(scan(&cat.load_table(&adopted).await.unwrap()).await.0, 6);
        cat.drop_table(&adopted, true).await.unwrap();
        let s = cat.load_table(&src).await.unwrap();
        assert_eq!(scan(&s).await.0, 5, "{backend}: the source table is whole");
        let check = floe_table_format::check::check_table(&wh, &src)
            .await
            .unwrap();
        assert!(check.problems.is_empty(), "{backend}: {:?}", check.problems);
    }
    // Links on a local disk are never followed out of the table's folder.
    let (wh, dir) = local_warehouse();
    let cat = Catalog::new(wh.clone());
    let ident = TableIdent::parse("fleet.linked").unwrap();
    let mut t = cat.create_table(&ident, iot_definition()).await.unwrap();
    append_rows(&mut t, 5).await;
    let outside = std::env::temp_dir().join(format!("floe-outside-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("keep.parquet"), b"not the table's").unwrap();
    let data = dir.join("fleet/linked/data");
    std::os::unix::fs::symlink(&outside, data.join("folder-link")).unwrap();
    std::os::unix::fs::symlink(outside.join("keep.parquet"), data.join("file-link.parquet"))
        .unwrap();
    cat.vacuum_table(&ident, Duration::ZERO, false)
        .await
        .unwrap();
    assert!(
        outside.join("keep.parquet").exists(),
        "vacuum followed a link"
    );
    cat.drop_table(&ident, true).await.unwrap();
    assert!(
        outside.join("keep.parquet").exists(),
        "purge followed a link"
    );
}

/// Issue 15, class 1: in an SQL catalog, where a table's metadata (not its name) decides
/// its folder, a vacuum never deletes another live table's files, and neither a vacuum
/// nor a purge deletes anything of a table registered from outside the warehouse.
#[tokio::test]
async fn an_sql_catalog_vacuum_never_takes_another_tables_files() {
    use floe_table_format::Table;
    use std::time::Duration;
    for (backend, wh) in all_warehouses() {
        let (cat, x, y) = sql_catalog_with_a_shared_folder(&wh).await;
        for ident in [&x, &y] {
            let e = cat
                .vacuum_table(ident, Duration::ZERO, false)
                .await
                .unwrap_err()
                .to_string();
            assert!(e.contains("also holds the live table"), "{backend}: {e}");
        }
        assert_eq!(scan(&cat.load_table(&y).await.unwrap()).await.0, 5);
        assert_eq!(scan(&cat.load_table(&x).await.unwrap()).await.0, 2);
        // A table registered from outside the warehouse.
        let elsewhere = match backend {
            "memory" => memory_warehouse(),
            "file" => local_warehouse().0,
            _ => s3_warehouse().unwrap(),
        };
        let src = TableIdent::parse("other.src").unwrap();
        let mut o = Table::create(&elsewhere, &src, iot_definition())
            .await
            .unwrap();
        append_rows(&mut o, 4).await;
        let z = TableIdent::parse("fleet.z").unwrap();
        cat.register_table(&z, o.metadata_location()).await.unwrap();
        let before = elsewhere.list_all(o.location()).await.unwrap().len();
        let e = cat
            .vacuum_table(&z, Duration::ZERO, false)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("outside the warehouse"), "{backend}: {e}");
        let e = cat.drop_table(&z, true).await.unwrap_err().to_string();
        assert!(e.contains("outside the warehouse"), "{backend}: {e}");
        assert_eq!(
            elsewhere.list_all(o.location()).await.unwrap().len(),
            before,
            "{backend}: nothing outside the warehouse deleted"
        );
        assert_eq!(
            scan(&Table::load(&elsewhere, &src).await.unwrap()).await.0,
            4
        );
    }
}
