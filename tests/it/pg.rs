//! `floe serve --pg`: Floe's SQL over the Postgres wire protocol, driven by real clients
//! (the machine's `psql`, psycopg 3 from the test venv) against a `floe serve` child
//! process, every answer computed by hand from the rows written here.
//!
//! The fleet: `fleet.dev_1` (120 rows, one a minute from 2026-01-01T00:00Z, values 0‥119),
//! `fleet.dev_2` (the same times, values 1000‥1119) and `site_17.c1` (10 rows, values
//! 5‥14). Namespace `fleet` names the bits of `state`: `0:charging,1:fault,2:grid_lost`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

use serde_json::{json, Value};

use floe_catalog::{Catalog, NamespaceDoc};
use floe_table_format::{CommitOptions, Namespace, Table, TableIdent, Warehouse};

use crate::support::*;

struct PgServer {
    child: Child,
    port: u16,
}

impl PgServer {
    fn start(warehouse: &str) -> PgServer {
        Self::start_with(warehouse, &[])
    }

    fn start_with(warehouse: &str, extra: &[&str]) -> PgServer {
        let mut child = Command::new(floe_bin())
            .args(["--warehouse", warehouse, "serve", "--rest", "127.0.0.1:0"])
            .args(["--pg", "127.0.0.1:0", "--principal-cache", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = loop {
            let line = lines
                .next()
                .expect("floe serve printed its addresses")
                .unwrap();
            if let Some(rest) = line.split("Postgres wire protocol on ").nth(1) {
                let addr = rest.split_whitespace().next().unwrap();
                break addr.rsplit(':').next().unwrap().parse().unwrap();
            }
        };
        PgServer { child, port }
    }

    fn conninfo(&self, credential: &str) -> String {
        self.conninfo_ssl(credential, "disable")
    }

    fn conninfo_ssl(&self, credential: &str, sslmode: &str) -> String {
        let (user, password) = credential.split_once(':').unwrap();
        format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname=floe sslmode={sslmode}",
            self.port
        )
    }

    /// `psql -X -A -t` with `commands` (each `-c`), as `credential`.
    fn psql(&self, credential: &str, commands: &[&str]) -> Output {
        let mut cmd = Command::new("psql");
        cmd.args(["-X", "-A", "-t", "-F", "|"])
            .arg(self.conninfo(credential));
        for c in commands {
            cmd.args(["-c", c]);
        }
        cmd.output().expect("psql is installed")
    }

    /// Rows of one psql command that must succeed, as `a|b|c` lines.
    fn rows(&self, credential: &str, command: &str) -> Vec<String> {
        let out = self.psql(credential, &[command]);
        assert!(
            out.status.success(),
            "psql {command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Numbers compare by value: the server writes a double 7140 as `7140.0`.
        let field = |f: &str| match f.parse::<f64>() {
            Ok(v) if f.contains('.') => format!("{v}"),
            _ => f.to_string(),
        };
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split('|').map(field).collect::<Vec<_>>().join("|"))
            .collect()
    }

    /// The error of one psql command that must fail.
    fn error(&self, credential: &str, command: &str) -> String {
        let out = self.psql(credential, &[command]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            !out.status.success() || !err.is_empty(),
            "{command} succeeded"
        );
        err
    }

    fn psycopg(&self, credential: &str, step: &str) -> Value {
        let out = Command::new(python())
            .arg("tests/interop/pg_client.py")
            .args([&self.conninfo(credential), step])
            .current_dir(repo_root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_client.py {step}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn principal(wh: &str, name: &str, grant: &str) -> String {
    let out = floe_ok(wh, &["principal", "add", name, "--grant", grant, "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["credential"].as_str().unwrap().to_string()
}

async fn fleet() -> (Warehouse, String) {
    let (wh, _) = local_warehouse();
    let catalog = Catalog::new(wh.clone());
    let doc = NamespaceDoc {
        properties: BTreeMap::from([(
            "floe.bits.state".to_string(),
            "0:charging,1:fault,2:grid_lost".to_string(),
        )]),
        ..NamespaceDoc::default()
    };
    catalog
        .create_namespace(&Namespace::parse("fleet").unwrap(), doc)
        .await
        .unwrap();
    for (name, base, n) in [
        ("fleet.dev_1", 0.0, 120),
        ("fleet.dev_2", 1000.0, 120),
        ("site_17.c1", 5.0, 10),
    ] {
        let ident = TableIdent::parse(name).unwrap();
        let mut t = catalog
            .create_table(&ident, iot_definition())
            .await
            .unwrap();
        append_batch(
            &mut t,
            |s| rows(s, name, DAY0_US, n, base),
            CommitOptions::default(),
        )
        .await
        .unwrap();
    }
    let url = wh.url().to_string();
    (wh, url)
}

/// psql as an administrator: queries, `\dt`, `\d`, the time-series functions, the
/// query Grafana's PostgreSQL data source sends for a time-series panel, bit functions,
/// and a commit made while the server runs, seen by the next query.
#[tokio::test]
async fn psql_queries_the_fleet_with_dashboard_sql() {
    let (wh, url) = fleet().await;
    let admin = principal(&url, "ops", "admin");
    let server = PgServer::start(&url);

    assert_eq!(
        server.rows(
            &admin,
            "SELECT device, count(*), sum(value) FROM fleet.all_devices GROUP BY device ORDER BY device"
        ),
        ["dev_1|120|7140", "dev_2|120|127140"]
    );
    let dt = server.rows(&admin, "\\dt fleet.*");
    assert!(
        dt.iter().any(|l| l.starts_with("fleet|dev_1|table"))
            && dt.iter().any(|l| l.starts_with("fleet|dev_2|table")),
        "{dt:?}"
    );
    let d = server.rows(&admin, "\\d fleet.dev_1");
    for column in ["device_id", "ts", "metric", "value|double precision"] {
        assert!(d.iter().any(|l| l.starts_with(column)), "{column}: {d:?}");
    }

    // Grafana's PostgreSQL data source, time-series panel: $__timeGroupAlias(ts, 30m) and
    // $__timeFilter(ts) as its macros expand them (floor(extract(epoch …)) and a BETWEEN
    // of RFC 3339 times), one series per device.
    let grafana = "SELECT floor(extract(epoch from ts)/1800)*1800 AS \"time\", device AS metric, avg(value) AS value \
        FROM fleet.all_devices \
        WHERE ts BETWEEN '2026-01-01T00:00:00Z' AND '2026-01-01T00:59:59Z' \
        GROUP BY 1, 2 ORDER BY 1, 2";
    assert_eq!(
        server.rows(&admin, grafana),
        [
            "1767225600|dev_1|14.5",
            "1767225600|dev_2|1014.5",
            "1767227400|dev_1|44.5",
            "1767227400|dev_2|1044.5"
        ]
    );
    for bucket in [
        "time_bucket(INTERVAL '1 hour', ts)",
        "date_bin(INTERVAL '1 hour', ts)",
        "date_trunc('hour', ts)",
    ] {
        assert_eq!(
            server.rows(
                &admin,
                &format!("SELECT {bucket} AS h, count(*), min(value) FROM fleet.dev_1 GROUP BY 1 ORDER BY 1")
            ),
            [
                "2026-01-01 00:00:00.000000+00|60|0",
                "2026-01-01 01:00:00.000000+00|60|60"
            ],
            "{bucket}"
        );
    }
    // Latest value per device.
    assert_eq!(
        server.rows(
            &admin,
            "SELECT device, last_value(value ORDER BY ts), max(ts) FROM fleet.all_devices GROUP BY device ORDER BY device"
        ),
        [
            "dev_1|119|2026-01-01 01:59:00.000000+00",
            "dev_2|1119|2026-01-01 01:59:00.000000+00"
        ]
    );
    // Bit fields: 5 = 0b101, 6 = 0b110 (charging = bit 0, fault = bit 1).
    assert_eq!(
        server.rows(
            &admin,
            "SELECT bit_test(5, 0), bit_test(5, 1), bit_test(5, 2), bit_count(255), bits_set(7, 5), \
             bits_set(5, 7), bits_any(8, 7), bits_any(12, 4), bit_test(6, 'fault'), bit_test(6, 'charging'), \
             bit_test(NULL, 1)"
        ),
        ["t|f|t|8|t|f|f|t|t|f|"]
    );
    assert_eq!(
        server.rows(
            &admin,
            "SELECT bit_count(CAST(value AS BIGINT)), bit_test(CAST(value AS BIGINT), 'grid_lost') \
             FROM fleet.dev_1 WHERE value IN (7, 8) ORDER BY value"
        ),
        ["3|t", "1|f"]
    );
    let e = server.error(&admin, "SELECT bit_test(1, 'nope')");
    assert!(
        e.contains("unknown bit name 'nope'") && e.contains("fault"),
        "{e}"
    );

    // A commit while the server runs is seen by the very next query.
    let mut t = Table::load(&wh, &TableIdent::parse("fleet.dev_1").unwrap())
        .await
        .unwrap();
    append_batch(
        &mut t,
        |s| rows(s, "dev_1", DAY0_US + DAY_US, 5, 500.0),
        CommitOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        server.rows(&admin, "SELECT count(*), max(value) FROM fleet.dev_1"),
        ["125|504"]
    );

    // The warm cache: a repeated query reads its metadata, manifests and Parquet from it,
    // and the byte bound holds.
    let stats = |server: &PgServer| -> Vec<u64> {
        server.rows(
            &admin,
            "SELECT hits, misses, bytes, capacity FROM floe_cache()",
        )[0]
        .split('|')
        .map(|v| v.parse().unwrap())
        .collect()
    };
    let q = "SELECT device, sum(value) FROM fleet.all_devices GROUP BY device ORDER BY device";
    let first = server.rows(&admin, q);
    let before = stats(&server);
    assert_eq!(server.rows(&admin, q), first);
    let after = stats(&server);
    assert!(after[0] > before[0], "hits grew: {before:?} → {after:?}");
    assert_eq!(after[1], before[1], "no new misses: {before:?} → {after:?}");
    assert!(after[2] <= after[3], "within the bound: {after:?}");
    drop(server);
    let small = PgServer::start_with(&url, &["--cache-size", "8KiB"]);
    small.rows(&admin, q);
    small.rows(&admin, q);
    let s = stats(&small);
    assert!(s[2] <= 8192 && s[3] == 8192, "the bound holds: {s:?}");
}

/// A third party sees only what its grants let it read, through psql: listings,
/// `information_schema`, `all_devices`; other tables are "permission denied" whether they
/// exist or not, and a wrong secret or unknown name is refused alike.
#[tokio::test]
async fn a_principal_sees_only_its_grants() {
    let (_wh, url) = fleet().await;
    let dev1 = principal(&url, "dev1", "read:fleet.dev_1");
    let server = PgServer::start(&url);

    assert_eq!(
        server.rows(
            &dev1,
            "SELECT device, count(*) FROM fleet.all_devices GROUP BY device"
        ),
        ["dev_1|120"]
    );
    assert_eq!(
        server.rows(
            &dev1,
            "SELECT table_schema, table_name FROM information_schema.tables \
             WHERE table_schema NOT IN ('information_schema', 'pg_catalog') ORDER BY 1, 2"
        ),
        ["fleet|all_devices", "fleet|dev_1"]
    );
    let dt = server.rows(&dev1, "\\dt *.*");
    assert!(
        dt.iter().any(|l| l.starts_with("fleet|dev_1|"))
            && !dt
                .iter()
                .any(|l| l.contains("dev_2") || l.contains("site_17")),
        "{dt:?}"
    );
    for other in ["fleet.dev_2", "fleet.dev_404"] {
        let e = server.error(&dev1, &format!("SELECT count(*) FROM {other}"));
        assert!(
            e.contains(&format!("ERROR:  permission denied for table {other}")),
            "{other}: {e}"
        );
    }
    // Another namespace is invisible: its existing table and a made-up one look alike.
    let existing = server.error(&dev1, "SELECT count(*) FROM site_17.c1");
    let made_up = server.error(&dev1, "SELECT count(*) FROM site_99.c1");
    assert_eq!(
        existing.replace("site_17", "X"),
        made_up.replace("site_99", "X"),
        "an invisible namespace reveals nothing"
    );
    let user = dev1.split(':').next().unwrap();
    let wrong = server.psql(&format!("{user}:not-the-secret"), &["SELECT 1"]);
    let unknown = server.psql("nobody:not-the-secret", &["SELECT 1"]);
    assert!(!wrong.status.success() && !unknown.status.success());
    let e = |o: &Output| {
        String::from_utf8_lossy(&o.stderr)
            .replace(user, "U")
            .replace("nobody", "U")
    };
    assert_eq!(e(&wrong), e(&unknown));
    assert!(e(&wrong).contains("authentication failed"), "{}", e(&wrong));
}

/// psycopg 3: parameterized queries (extended protocol) with binary and text results for
/// the types Floe stores, a cancelled query, and the statement timeout; the server keeps
/// serving afterwards.
#[tokio::test]
async fn psycopg_runs_parameterized_queries_and_long_queries_stop() {
    let (_wh, url) = fleet().await;
    let admin = principal(&url, "ops", "admin");
    let server = PgServer::start(&url);

    let v = server.psycopg(&admin, "queries");
    let expected = json!([
        ["dev_1", 20, 2190.0, "2026-01-01T01:59:00+00:00"],
        ["dev_2", 60, 65370.0, "2026-01-01T01:59:00+00:00"]
    ]);
    assert_eq!(v["binary"], expected, "{v}");
    assert_eq!(v["text"], expected, "{v}");
    assert_eq!(v["types"], json!([true, 8, true]), "{v}");

    let v = server.psycopg(&admin, "cancel");
    assert_eq!(v["cancelled"], json!(true), "{v}");
    assert!(v["seconds"].as_f64().unwrap() < 30.0, "{v}");
    assert_eq!(v["after"], json!(120), "{v}");

    let long = "SELECT count(*) FROM fleet.all_devices a, fleet.all_devices b, fleet.all_devices c, fleet.all_devices d";
    let started = std::time::Instant::now();
    let out = server.psql(&admin, &["SET statement_timeout = 1000", long]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("statement timeout"), "{err}");
    assert!(started.elapsed().as_secs() < 30, "{:?}", started.elapsed());
    assert_eq!(
        server.rows(&admin, "SELECT count(*) FROM fleet.dev_2"),
        ["120"]
    );
}

/// With `--pg-tls-cert/--pg-tls-key`, a client that requires TLS gets it (the password no
/// longer crosses in clear); without them, such a client is told there is none.
#[tokio::test]
async fn tls_is_served_when_configured() {
    let (_wh, url) = fleet().await;
    let admin = principal(&url, "ops", "admin");
    let dir = std::env::temp_dir().join(format!("floe-tls-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let require = |server: &PgServer| {
        Command::new("psql")
            .args(["-X", "-A", "-t", "-c", "SELECT count(*) FROM fleet.dev_1"])
            .arg(server.conninfo_ssl(&admin, "require"))
            .output()
            .unwrap()
    };
    let tls = PgServer::start_with(
        &url,
        &[
            "--pg-tls-cert",
            cert.to_str().unwrap(),
            "--pg-tls-key",
            key.to_str().unwrap(),
        ],
    );
    let out = require(&tls);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "120");
    drop(tls);
    let plain = PgServer::start(&url);
    let out = require(&plain);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("SSL"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
