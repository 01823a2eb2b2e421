//! Planning in proportion to what is read (issue 17): the namespace's table index, fleet
//! queries that touch only the tables their filters keep, and one-table queries that list
//! nothing. Requests are observed through a recording store in front of each backend.

use std::sync::Arc;

use arrow::array::{Array, Float64Array};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use floe_catalog::Catalog;
use floe_query::{EngineOptions, QueryEngine};
use floe_table_format::{CommitOptions, Namespace, TableIdent, Warehouse};

use crate::faults::FaultyStore;
use crate::support::*;

/// The fleet: one table per name, `ROWS` rows each, values `1000*i + k`.
const TABLES: [&str; 5] = ["other_x", "site_1_a", "site_1_b", "site_2_a", "site_2_b"];
const ROWS: usize = 10;

/// A recording warehouse over `wh`, with the fleet written through it.
async fn recorded_fleet(wh: &Warehouse) -> (Catalog, Arc<FaultyStore>, String) {
    let recording = Arc::new(FaultyStore::recording(wh.store().clone()));
    let wh = Warehouse::with_store(wh.url(), recording.clone()).unwrap();
    let root = wh.object_path(wh.url()).unwrap().to_string();
    let cat = Catalog::new(wh);
    for (i, name) in TABLES.iter().enumerate() {
        let ident = TableIdent::parse(&format!("fleet.{name}")).unwrap();
        let mut t = cat.create_table(&ident, iot_definition()).await.unwrap();
        append_batch(
            &mut t,
            |s| rows(s, name, DAY0_US, ROWS, 1000.0 * i as f64),
            CommitOptions::default(),
        )
        .await
        .unwrap();
    }
    recording.take_log();
    (cat, recording, root)
}

fn sum_of(name: &str) -> f64 {
    let i = TABLES.iter().position(|t| *t == name).unwrap();
    (0..ROWS).map(|k| 1000.0 * i as f64 + k as f64).sum()
}

fn single_f64(batches: &[arrow::array::RecordBatch]) -> f64 {
    let col = batches[0].column(0);
    let col = col.as_any().downcast_ref::<Float64Array>().unwrap();
    assert!(col.is_valid(0));
    col.value(0)
}

fn under(root: &str, rel: &str) -> String {
    if root.is_empty() {
        rel.to_string()
    } else {
        format!("{root}/{rel}")
    }
}

/// Each metadata object (version, hint, manifest list, manifest, index schema) is
/// requested at most once by one query.
fn assert_metadata_read_once(backend: &str, log: &[(&'static str, String)]) {
    let mut seen = std::collections::HashSet::new();
    for (kind, key) in log {
        if (key.contains("/metadata/") || key.contains("/.floe/schemas/")) && !seen.insert(key) {
            panic!("{backend}: {kind} {key} requested again in one query: {log:#?}");
        }
    }
}

#[tokio::test]
async fn a_filtered_fleet_query_reads_nothing_of_the_other_tables() {
    for (backend, wh) in all_warehouses() {
        let (cat, recording, root) = recorded_fleet(&wh).await;
        let cases: [(&str, &[&str]); 3] = [
            ("device = 'site_2_a'", &["site_2_a"]),
            (
                "device IN ('site_1_a', 'site_2_b')",
                &["site_1_a", "site_2_b"],
            ),
            ("device LIKE 'site_1%'", &["site_1_a", "site_1_b"]),
        ];
        for (filter, kept) in cases {
            let engine = QueryEngine::open(&cat, EngineOptions::default())
                .await
                .unwrap();
            let sql = format!("SELECT sum(value) FROM fleet.all_devices WHERE {filter}");
            let got = single_f64(&engine.sql(&sql).await.unwrap());
            let want: f64 = kept.iter().map(|t| sum_of(t)).sum();
            assert_eq!(got, want, "{backend}: {filter}");
            let log = recording.take_log();
            assert_metadata_read_once(backend, &log);
            for other in TABLES.iter().filter(|t| !kept.contains(t)) {
                let prefix = under(&root, &format!("fleet/{other}/"));
                let touched: Vec<_> = log.iter().filter(|(_, k)| k.starts_with(&prefix)).collect();
                assert!(
                    touched.is_empty(),
                    "{backend}: `{filter}` read the table {other}: {touched:?}"
                );
            }
            for table in kept {
                let prefix = under(&root, &format!("fleet/{table}/"));
                assert!(
                    log.iter().any(|(_, k)| k.starts_with(&prefix)),
                    "{backend}: `{filter}` never read {table}: {log:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_one_table_query_lists_neither_the_warehouse_nor_the_namespace() {
    for (backend, wh) in all_warehouses() {
        let (cat, recording, root) = recorded_fleet(&wh).await;
        let engine = QueryEngine::open(&cat, EngineOptions::default())
            .await
            .unwrap();
        let got = single_f64(
            &engine
                .sql("SELECT sum(value) FROM fleet.site_1_b")
                .await
                .unwrap(),
        );
        assert_eq!(got, sum_of("site_1_b"), "{backend}");
        let own = under(&root, "fleet/site_1_b/");
        let log = recording.take_log();
        assert_metadata_read_once(backend, &log);
        let elsewhere: Vec<_> = log.iter().filter(|(_, k)| !k.starts_with(&own)).collect();
        assert!(
            elsewhere.is_empty(),
            "{backend}: a query of fleet.site_1_b read outside its table: {elsewhere:?}"
        );
        // A query that browses the catalog still sees every table.
        let n = engine
            .sql("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'fleet'")
            .await
            .unwrap();
        let n = n[0]
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap()
            .value(0);
        assert_eq!(
            n as usize,
            TABLES.len() + 1,
            "{backend}: the tables and all_devices"
        );
    }
}

#[tokio::test]
async fn listing_a_namespace_costs_its_lists_not_a_request_per_table() {
    for (backend, wh) in all_warehouses() {
        let (cat, recording, _) = recorded_fleet(&wh).await;
        let ns = Namespace::parse("fleet").unwrap();
        let listed = cat.list_tables(&ns).await.unwrap();
        let names: Vec<&str> = listed.iter().map(|t| t.name()).collect();
        assert_eq!(names, TABLES, "{backend}");
        let log = recording.take_log();
        assert!(
            log.iter().all(|(kind, _)| *kind == "LIST") && log.len() <= 2,
            "{backend}: listing 5 tables took {log:?}"
        );
    }
}

#[tokio::test]
async fn a_table_missing_from_the_index_is_still_listed_and_check_repairs_the_index() {
    let (wh, dir) = local_warehouse();
    let (cat, _, root) = recorded_fleet(&wh).await;
    let ns = Namespace::parse("fleet").unwrap();
    // A creator that crashed between its v1 and its marker; a marker of a table that is
    // gone (written by hand).
    let store = cat.store().clone();
    let marker_folder = Path::from(under(&root, "fleet/.floe/tables/site_2_a"));
    let markers: Vec<_> =
        futures::TryStreamExt::try_collect::<Vec<_>>(store.list(Some(&marker_folder)))
            .await
            .unwrap();
    assert_eq!(markers.len(), 1, "one marker per table");
    store.delete(&markers[0].location).await.unwrap();
    let ghost = Path::from(under(
        &root,
        "fleet/.floe/tables/ghost/0123456789abcdef0123456789abcdef",
    ));
    store.put(&ghost, bytes::Bytes::new().into()).await.unwrap();

    let names: Vec<String> = cat
        .list_tables(&ns)
        .await
        .unwrap()
        .iter()
        .map(|t| t.name().to_string())
        .collect();
    assert_eq!(names, TABLES, "the gap is found, the ghost is not listed");
    let engine = QueryEngine::open(&cat, EngineOptions::default())
        .await
        .unwrap();
    let got = single_f64(
        &engine
            .sql("SELECT sum(value) FROM fleet.all_devices")
            .await
            .unwrap(),
    );
    assert_eq!(got, TABLES.iter().map(|t| sum_of(t)).sum::<f64>());

    let w = dir.to_str().unwrap();
    let out = floe_ok(w, &["check", "fleet"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("fleet.site_2_a") && text.contains("recorded"),
        "{text}"
    );
    assert!(
        text.contains("fleet.ghost") && text.contains("removed"),
        "{text}"
    );
    let index = floe_table_format::index::list(cat.warehouse(), &ns)
        .await
        .unwrap();
    let indexed: Vec<&str> = index.keys().map(String::as_str).collect();
    assert_eq!(indexed, TABLES, "repaired");
    let out = floe_ok(w, &["check", "fleet"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("fleet: table index ok"));

    // A dropped table leaves the index at once (its remains are not a table).
    cat.drop_table(&TableIdent::parse("fleet.other_x").unwrap(), false)
        .await
        .unwrap();
    let index = floe_table_format::index::list(cat.warehouse(), &ns)
        .await
        .unwrap();
    assert!(!index.contains_key("other_x"));
    assert_eq!(cat.list_tables(&ns).await.unwrap().len(), TABLES.len() - 1);
}
