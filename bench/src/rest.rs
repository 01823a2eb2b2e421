//! `floe-bench rest`: what `floe serve` costs over a writer committing on its own with
//! conditional writes. Side by side in one run, on one warehouse (file or S3):
//!
//! - commits/s of a property change (`set-properties`), sent as a REST commit through the
//!   server (an HTTP request, token check, grant check, load of the head, the one commit
//!   driver) against the same change committed directly through the driver by a writer
//!   that keeps its table handle (a gateway's way);
//! - load-table latency through the server (`GET …/tables/{t}`, metadata serialized)
//!   against `Catalog::load_table` in-process.
//!
//! Metadata-only commits isolate the commit path: the data files of an append cost the
//! same whoever commits them. The server runs in this process on 127.0.0.1, so the figures
//! include HTTP over loopback but no network.

use std::time::Instant;

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};

use floe_catalog::Catalog;
use floe_server::principals::PrincipalStore;
use floe_table_format::external::ApplyUpdates;
use floe_table_format::iceberg::TableUpdate;
use floe_table_format::schema::{self, DEFAULT_PARTITION};
use floe_table_format::{RetryPolicy, TableDefinition, TableIdent, Warehouse};

use crate::report::{self, ms};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn definition() -> Result<TableDefinition> {
    let s = schema::default_iot_schema();
    let partition = schema::parse_partition_spec(DEFAULT_PARTITION, &s)?;
    Ok(TableDefinition {
        schema: s,
        partition,
        properties: Default::default(),
    })
}

fn set_property(n: usize) -> TableUpdate {
    TableUpdate::SetProperties {
        updates: [("bench.n".to_string(), n.to_string())].into(),
    }
}

/// Run `repeats` rounds of `commits` commits and `loads` loads each way on `warehouse`;
/// print medians and the server/direct ratios.
pub async fn rest(
    warehouse: &Warehouse,
    commits: usize,
    loads: usize,
    repeats: usize,
) -> Result<()> {
    ensure!(
        commits > 0 && loads > 0 && repeats > 0,
        "--commits, --loads and --repeats must be at least 1"
    );
    let (mut direct_commit, mut served_commit) = (Vec::new(), Vec::new());
    let (mut direct_load, mut served_load) = (Vec::new(), Vec::new());
    for r in 0..repeats {
        let run = warehouse.location(&format!("rest-{}-{r}", std::process::id()));
        let wh = Warehouse::open(&run)?;
        let catalog = Catalog::new(wh.clone());
        let (direct_t, served_t) = (
            TableIdent::parse("bench.direct")?,
            TableIdent::parse("bench.served")?,
        );
        let mut direct = catalog.create_table(&direct_t, definition()?).await?;
        catalog.create_table(&served_t, definition()?).await?;
        let (_, secret) = PrincipalStore::new(wh.clone())
            .add("bench", &["write:bench.*".to_string()])
            .await?;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(floe_server::serve(
            Catalog::new(wh.clone()),
            floe_server::ServerConfig::default(),
            listener,
            async {
                let _ = stopped.await;
            },
        ));
        let http = reqwest::Client::new();
        let token: Value = http
            .post(format!("{url}/v1/oauth/tokens"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "bench"),
                ("client_secret", secret.as_str()),
            ])
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let token = token["access_token"]
            .as_str()
            .context("the server answered no access_token")?
            .to_string();
        let table_url = format!("{url}/v1/namespaces/bench/tables/served");

        // Commits: direct through the driver, then the same changes through the server.
        let t0 = Instant::now();
        for n in 0..commits {
            let mut action = ApplyUpdates::new(vec![], vec![set_property(n)]);
            direct
                .commit(
                    &uuid::Uuid::new_v4().to_string(),
                    &RetryPolicy::default(),
                    &mut action,
                )
                .await?;
        }
        direct_commit.push(commits as f64 / t0.elapsed().as_secs_f64());
        let t0 = Instant::now();
        for n in 0..commits {
            let body = json!({
                "requirements": [],
                "updates": [{"action": "set-properties", "updates": {"bench.n": n.to_string()}}],
            });
            http.post(&table_url)
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await?
                .error_for_status()
                .context("a REST commit failed")?;
        }
        served_commit.push(commits as f64 / t0.elapsed().as_secs_f64());

        // Loads of a table with `commits` versions: in-process, then through the server.
        let t0 = Instant::now();
        for _ in 0..loads {
            catalog.load_table(&direct_t).await?;
        }
        direct_load.push(t0.elapsed().as_secs_f64() * 1000.0 / loads as f64);
        let t0 = Instant::now();
        for _ in 0..loads {
            http.get(&table_url)
                .bearer_auth(&token)
                .send()
                .await?
                .error_for_status()
                .context("a REST load failed")?
                .bytes()
                .await?;
        }
        served_load.push(t0.elapsed().as_secs_f64() * 1000.0 / loads as f64);
        let _ = stop.send(());
        server.await??;
        let served = catalog.load_table(&served_t).await?;
        ensure!(
            served.metadata().properties().get("bench.n") == Some(&(commits - 1).to_string()),
            "the served table does not hold the last commit"
        );
        eprintln!(
            "  repeat {r}: commits/s direct {:.0}, served {:.0}; load ms direct {:.1}, served {:.1}",
            direct_commit[r], served_commit[r], direct_load[r], served_load[r]
        );
    }
    let (dc, sc) = (median(direct_commit), median(served_commit));
    let (dl, sl) = (median(direct_load), median(served_load));
    let as_ms = |v: f64| format!("{} ms", ms(std::time::Duration::from_secs_f64(v / 1000.0)));
    println!(
        "REST server vs direct commits on {} ({commits} commits, {loads} loads, {repeats} repeats, medians)",
        warehouse.url()
    );
    print!(
        "{}",
        report::table(
            &[
                "case",
                "direct (driver, kept handle)",
                "through floe serve",
                "served / direct"
            ],
            &[
                vec![
                    "commit (set-properties)".into(),
                    format!("{dc:.0} commits/s ({} each)", as_ms(1000.0 / dc)),
                    format!("{sc:.0} commits/s ({} each)", as_ms(1000.0 / sc)),
                    format!("{:.2}x the time", dc / sc),
                ],
                vec![
                    "load table".into(),
                    as_ms(dl),
                    as_ms(sl),
                    format!("{:.2}x the time", sl / dl),
                ],
            ],
        )
    );
    Ok(())
}
