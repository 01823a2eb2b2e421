//! `floe serve`: the Iceberg REST catalog, driven by pyiceberg's `RestCatalog`, by
//! iceberg-rust's REST client and by raw HTTP, on the file backend and on LocalStack S3
//! (where the Python client holds no S3 keys and goes through the server's signer).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use floe_catalog::{Catalog, NamespaceDoc, TableTemplate};
use floe_server::principals::PrincipalStore;
use floe_table_format::{Namespace, TableIdent, Warehouse};
use serde_json::{json, Value};

use crate::support::{self, append_rows, floe_bin, floe_ok, iot_definition, python, repo_root};

/// A `floe serve` child process, killed on drop.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(warehouse: &str, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(floe_bin());
        cmd.args([
            "--warehouse",
            warehouse,
            "serve",
            "--rest",
            "127.0.0.1:0",
            "--principal-cache",
            "0",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in the start-up line: {line:?}"))
            .trim_end_matches('/')
            .to_string();
        Server { child, url }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `floe principal add NAME --grant …` on `wh`: the credential it printed.
fn principal(wh: &str, name: &str, grants: &[&str]) -> String {
    let mut args = vec!["principal", "add", name, "--json"];
    for g in grants {
        args.extend(["--grant", g]);
    }
    let out = floe_ok(wh, &args);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["credential"].as_str().unwrap().to_string()
}

/// Run a step of tests/interop/rest_client.py as `credential`, with no S3 keys in its
/// environment.
fn client(url: &str, credential: &str, step: &[&str]) -> Value {
    let mut cmd = Command::new(python());
    cmd.arg("tests/interop/rest_client.py")
        .args([url, credential])
        .args(step)
        .current_dir(repo_root());
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "rest_client {step:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "rest_client printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn refused(v: &Value) -> &str {
    assert_eq!(v["ok"], false, "expected a refusal, got {v}");
    v["error"].as_str().unwrap()
}

/// A fleet namespace with a template and two device tables, and a site namespace with a
/// shared table; 5 rows in each table.
async fn fleet(wh: &str) -> Catalog {
    let catalog = Catalog::new(Warehouse::open(wh).unwrap());
    let def = iot_definition();
    let template = TableTemplate {
        schema: def.schema.clone(),
        partition: "day(ts)".into(),
        properties: Default::default(),
    };
    catalog
        .create_namespace(
            &Namespace::parse("fleet").unwrap(),
            NamespaceDoc {
                template: Some(template),
                ..NamespaceDoc::default()
            },
        )
        .await
        .unwrap();
    for t in ["fleet.dev_1", "fleet.dev_2", "site_17.c1"] {
        let mut table = catalog
            .create_table(&TableIdent::parse(t).unwrap(), iot_definition())
            .await
            .unwrap();
        append_rows(&mut table, 5).await;
    }
    catalog
}

async fn head(catalog: &Catalog, t: &str) -> String {
    catalog
        .load_table(&TableIdent::parse(t).unwrap())
        .await
        .unwrap()
        .metadata_location()
        .to_string()
}

/// The objects under a table's folder.
async fn objects_of(catalog: &Catalog, t: &str) -> Vec<String> {
    let wh = catalog.warehouse();
    let mut keys: Vec<String> = wh
        .list_all(&wh.location(&TableIdent::parse(t).unwrap().path()))
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.location.to_string())
        .collect();
    keys.sort();
    keys
}

/// The scenario of the issue, for one warehouse: a device appends to its own table and is
/// refused everywhere else; a device creates its table from the template; a read-only
/// party sees only its share. `write_refusal` is how a read-only party's append ends: on
/// S3 the signer refuses its first data-file PUT (pyiceberg's `SignError`), so nothing at
/// all is written; on local files pyiceberg writes its data file itself and the commit is
/// refused (`ForbiddenError`).
async fn grants_scenario(wh: &str, write_refusal: &str) {
    let env: &[(&str, &str)] = &[];
    let catalog = fleet(wh).await;
    let dev_1 = principal(wh, "dev_1", &["write:fleet.dev_1"]);
    let dev_3 = principal(wh, "dev_3", &["write:fleet.dev_3"]);
    let party = principal(wh, "party", &["read:site_17.*"]);
    let server = Server::start(wh, &[], env);
    let url = server.url.as_str();
    let dev_2_head = head(&catalog, "fleet.dev_2").await;
    let c1_head = head(&catalog, "site_17.c1").await;

    // The device: sees its own namespace and table only.
    assert_eq!(
        client(url, &dev_1, &["namespaces"])["namespaces"],
        json!(["fleet"])
    );
    assert_eq!(
        client(url, &dev_1, &["tables", "fleet"])["tables"],
        json!(["fleet.dev_1"])
    );
    assert_eq!(client(url, &dev_1, &["scan", "fleet.dev_1"])["rows"], 5);
    let appended = client(url, &dev_1, &["append", "fleet.dev_1", "10"]);
    assert_eq!(
        appended["snapshots_after"],
        appended["snapshots_before"].as_u64().unwrap() + 1
    );
    assert_eq!(client(url, &dev_1, &["scan", "fleet.dev_1"])["rows"], 15);
    for step in [
        vec!["try", "scan", "fleet.dev_2"],
        vec!["try", "append", "fleet.dev_2", "3"],
        vec!["try", "create", "fleet.dev_9"],
        vec!["try", "tables", "site_17"],
        vec!["try", "scan", "fleet.no_such_table"],
    ] {
        assert_eq!(
            refused(&client(url, &dev_1, &step)),
            "ForbiddenError",
            "{step:?}"
        );
    }
    // What the library reads: the device's commit went through the one driver.
    let t = catalog
        .load_table(&TableIdent::parse("fleet.dev_1").unwrap())
        .await
        .unwrap();
    assert_eq!(support::scan(&t).await.0, 15);
    let report = floe_table_format::check::check_table(catalog.warehouse(), t.ident().unwrap())
        .await
        .unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);

    // A new device creates its table from the template and appends.
    let created = client(url, &dev_3, &["create", "fleet.dev_3"]);
    assert_eq!(
        created["fields"],
        json!(["device_id", "ts", "metric", "value"])
    );
    client(url, &dev_3, &["append", "fleet.dev_3", "4"]);
    assert_eq!(client(url, &dev_3, &["scan", "fleet.dev_3"])["rows"], 4);

    // The party: its share only, read-only.
    assert_eq!(
        client(url, &party, &["namespaces"])["namespaces"],
        json!(["site_17"])
    );
    assert_eq!(
        client(url, &party, &["tables", "site_17"])["tables"],
        json!(["site_17.c1"])
    );
    assert_eq!(client(url, &party, &["scan", "site_17.c1"])["rows"], 5);
    let c1_objects = objects_of(&catalog, "site_17.c1").await;
    assert_eq!(
        refused(&client(url, &party, &["try", "append", "site_17.c1", "1"])),
        write_refusal
    );
    if write_refusal == "SignError" {
        assert_eq!(
            objects_of(&catalog, "site_17.c1").await,
            c1_objects,
            "a refused signature wrote nothing"
        );
    }
    for step in [
        vec!["try", "tables", "fleet"],
        vec!["try", "scan", "fleet.dev_1"],
    ] {
        assert_eq!(
            refused(&client(url, &party, &step)),
            "ForbiddenError",
            "{step:?}"
        );
    }
    // Refusals changed nothing.
    assert_eq!(head(&catalog, "fleet.dev_2").await, dev_2_head);
    assert_eq!(head(&catalog, "site_17.c1").await, c1_head);
}

#[tokio::test]
async fn pyiceberg_through_rest_reaches_only_its_grants_on_files() {
    let dir = tempfile_dir("rest-grants");
    grants_scenario(&dir, "ForbiddenError").await;
}

#[tokio::test]
async fn pyiceberg_without_s3_keys_reads_and_writes_through_the_signer() {
    let Some(warehouse) = support::s3_warehouse() else {
        return;
    };
    grants_scenario(warehouse.url(), "SignError").await;
}

/// A fresh local warehouse folder (as a path).
fn tempfile_dir(tag: &str) -> String {
    let dir = std::env::temp_dir().join(format!("floe-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.to_string_lossy().to_string()
}

#[tokio::test]
async fn concurrent_rest_commits_are_each_present_exactly_once() {
    let wh = tempfile_dir("rest-concurrency");
    let catalog = fleet(&wh).await;
    let admin = principal(&wh, "admin", &["admin"]);
    let store = PrincipalStore::new(Warehouse::open(&wh).unwrap());
    let mut creds = Vec::new();
    for i in 0..50 {
        let grant = format!("write:fleet.gw_{i}");
        let (_, secret) = store.add(&format!("gw_{i}"), &[grant]).await.unwrap();
        creds.push(format!("gw_{i}:{secret}"));
    }
    let credfile = std::path::Path::new(&wh).join("creds.txt");
    std::fs::write(&credfile, creds.join("\n")).unwrap();
    let server = Server::start(&wh, &[], &[]);

    // 50 devices, each creating its own table from the template and appending once.
    let out = client(
        &server.url,
        &admin,
        &[
            "devices",
            "fleet",
            "gw_",
            "50",
            "6",
            credfile.to_str().unwrap(),
        ],
    );
    assert_eq!(out["errors"], json!([]));
    for i in 0..50 {
        let t = catalog
            .load_table(&TableIdent::parse(&format!("fleet.gw_{i}")).unwrap())
            .await
            .unwrap();
        assert_eq!(t.metadata().snapshots().count(), 1, "gw_{i}");
        assert_eq!(support::scan(&t).await.0, 6, "gw_{i}");
    }

    // 8 writers on one table, 3 appends of 4 rows each, retrying on conflicts.
    let out = client(
        &server.url,
        &admin,
        &["concurrent", "fleet.dev_1", "8", "3", "4"],
    );
    assert_eq!(out["errors"], json!([]));
    let t = catalog
        .load_table(&TableIdent::parse("fleet.dev_1").unwrap())
        .await
        .unwrap();
    assert_eq!(t.metadata().snapshots().count(), 1 + 24);
    assert_eq!(support::scan(&t).await.0, 5 + 8 * 3 * 4);

    // A client that sends each commit twice (a retry after a lost answer) commits once,
    // with and without an idempotency key.
    let once = client(
        &server.url,
        &admin,
        &["append", "fleet.dev_2", "3", "--twice"],
    );
    assert_eq!(
        once["snapshots_after"],
        once["snapshots_before"].as_u64().unwrap() + 1
    );
    let t = catalog
        .load_table(&TableIdent::parse("fleet.dev_2").unwrap())
        .await
        .unwrap();
    assert_eq!(support::scan(&t).await.0, 8);
}

/// Raw HTTP against the server.
struct Http {
    client: reqwest::Client,
    url: String,
}

impl Http {
    fn new(url: &str) -> Http {
        Http {
            // No pooled connections: the server answers an oversize body with 413 before
            // reading it and closes that connection, which a pooled client would reuse.
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            url: url.to_string(),
        }
    }

    async fn token(&self, credential: &str) -> reqwest::Response {
        let (id, secret) = credential.split_once(':').unwrap();
        self.client
            .post(format!("{}/v1/oauth/tokens", self.url))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", secret),
                ("scope", "catalog"),
            ])
            .send()
            .await
            .unwrap()
    }

    async fn bearer(&self, credential: &str) -> String {
        let r = self.token(credential).await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        v["access_token"].as_str().unwrap().to_string()
    }

    fn req(&self, method: reqwest::Method, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token)
    }
}

/// Status and ErrorModel message of a response.
async fn error_of(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    let message = v["error"]["message"]
        .as_str()
        .or_else(|| v["error_description"].as_str())
        .unwrap_or_default()
        .to_string();
    (status, message)
}

#[tokio::test]
async fn hostile_requests_get_a_clear_4xx_and_change_nothing() {
    use reqwest::Method;
    let wh = tempfile_dir("rest-hostile");
    let catalog = fleet(&wh).await;
    let dev_1 = principal(&wh, "dev_1", &["write:fleet.dev_1"]);
    let admin = principal(&wh, "admin", &["admin"]);
    let server = Server::start(&wh, &["--max-body-mib", "1", "--token-ttl", "2"], &[]);
    let http = Http::new(&server.url);
    let heads_before = (
        head(&catalog, "fleet.dev_1").await,
        head(&catalog, "fleet.dev_2").await,
    );
    let commit = "/v1/namespaces/fleet/tables/dev_1";

    // Credentials: a wrong secret and an unknown name get the same answer.
    let (s1, m1) = error_of(http.token("dev_1:wrong").await).await;
    let (s2, m2) = error_of(http.token("nobody:wrong").await).await;
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(m1, m2);
    let r = http
        .client
        .get(format!("{}/v1/config", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (s, _) = error_of(
        http.req(Method::GET, "/v1/config", "not-a-token")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 401);

    let token = http.bearer(&dev_1).await;
    let admin_token = http.bearer(&admin).await;
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        (
            "malformed JSON",
            http.req(Method::POST, commit, &token).body("{\"updates\": [").header("content-type", "application/json"),
            400,
            "invalid commit-table request",
        ),
        (
            "unknown update type",
            http.req(Method::POST, commit, &token)
                .json(&json!({"requirements": [], "updates": [{"action": "drop-everything"}]})),
            400,
            "drop-everything",
        ),
        (
            "oversize body",
            http.req(Method::POST, commit, &token).body(vec![b' '; 2 << 20]),
            413,
            "too large",
        ),
        (
            "another device's table",
            http.req(Method::GET, "/v1/namespaces/fleet/tables/dev_2", &token),
            403,
            "no read grant on fleet.dev_2",
        ),
        (
            "a table that does not exist answers the same",
            http.req(Method::GET, "/v1/namespaces/fleet/tables/dev_404", &token),
            403,
            "no read grant on fleet.dev_404",
        ),
        (
            "a commit to another device's table",
            http.req(Method::POST, "/v1/namespaces/fleet/tables/dev_2", &token)
                .json(&json!({"requirements": [], "updates": [{"action": "set-properties", "updates": {"a": "b"}}]})),
            403,
            "no write grant on fleet.dev_2",
        ),
        (
            "a path-escaping namespace",
            http.req(Method::GET, "/v1/namespaces/..%2F..%2Fetc/tables/passwd", &token),
            400,
            "invalid name",
        ),
        (
            "an upper-case table name",
            http.req(Method::GET, "/v1/namespaces/fleet/tables/DEV_1", &token),
            400,
            "lowercase",
        ),
        (
            "moving the table",
            http.req(Method::POST, commit, &token)
                .json(&json!({"updates": [{"action": "set-location", "location": format!("file://{wh}/fleet/dev_2")}]})),
            400,
            "may not move the table",
        ),
        (
            "redirecting its data",
            http.req(Method::POST, commit, &token)
                .json(&json!({"updates": [{"action": "set-properties", "updates": {"write.data.path": format!("file://{wh}/fleet/dev_2/data")}}]})),
            400,
            "write.data.path",
        ),
        (
            "a new uuid",
            http.req(Method::POST, commit, &token)
                .json(&json!({"updates": [{"action": "assign-uuid", "uuid": "00000000-0000-4000-8000-000000000000"}]})),
            400,
            "uuid",
        ),
        (
            "a snapshot whose manifest list lies in another table",
            http.req(Method::POST, commit, &token).json(&json!({"updates": [{"action": "add-snapshot", "snapshot": {
                "snapshot-id": 7, "sequence-number": 99, "timestamp-ms": 1, "manifest-list": format!("file://{wh}/fleet/dev_2/metadata/snap.avro"),
                "summary": {"operation": "append"}, "schema-id": 0}}]})),
            400,
            "outside the table",
        ),
        (
            "a namespace change by a device",
            http.req(Method::POST, "/v1/namespaces/fleet/properties", &token).json(&json!({"updates": {"owner": "me"}})),
            403,
            "admin only",
        ),
        (
            "a drop by a device",
            http.req(Method::DELETE, commit, &token),
            403,
            "admin only",
        ),
        (
            "a multi-table transaction",
            http.req(Method::POST, "/v1/transactions/commit", &admin_token).json(&json!({"table-changes": []})),
            406,
            "multi-table transactions are not supported",
        ),
        (
            "an unknown endpoint",
            http.req(Method::GET, "/v1/namespaces/fleet/views", &token),
            404,
            "no such endpoint",
        ),
    ];
    for (what, request, status, needle) in cases {
        let (s, message) = error_of(request.send().await.unwrap()).await;
        assert_eq!(s, status, "{what}: {message}");
        assert!(
            message.contains(needle),
            "{what}: {message:?} should mention {needle:?}"
        );
    }
    assert_eq!(
        (
            head(&catalog, "fleet.dev_1").await,
            head(&catalog, "fleet.dev_2").await
        ),
        heads_before,
        "refused requests changed a table"
    );

    // A token of another principal does not open this one's table; a revoked principal's
    // token stops working; an expired token is refused.
    let store = PrincipalStore::new(Warehouse::open(&wh).unwrap());
    let (_, secret) = store
        .add("dev_2", &["write:fleet.dev_2".into()])
        .await
        .unwrap();
    let dev_2_token = http.bearer(&format!("dev_2:{secret}")).await;
    let r = http
        .req(
            Method::GET,
            "/v1/namespaces/fleet/tables/dev_1",
            &dev_2_token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    store.revoke("dev_2").await.unwrap();
    let (s, m) = error_of(
        http.req(
            Method::GET,
            "/v1/namespaces/fleet/tables/dev_2",
            &dev_2_token,
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, 401, "{m}");
    assert!(m.contains("revoked"), "{m}");
    // The same name added again is a new principal: the old token stays dead.
    store
        .add("dev_2", &["write:fleet.dev_2".into()])
        .await
        .unwrap();
    let r = http
        .req(
            Method::GET,
            "/v1/namespaces/fleet/tables/dev_2",
            &dev_2_token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "a revoked principal's token came back to life"
    );
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let (s, m) = error_of(
        http.req(Method::GET, "/v1/config", &token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 401, "{m}");
    assert!(m.contains("expired"), "{m}");

    // Idempotency: a retried create with the same key gets the first answer.
    let token = http.bearer(&admin).await;
    let create = |key: Option<&str>| {
        let r = http
            .req(Method::POST, "/v1/namespaces", &token)
            .json(&json!({"namespace": ["site_99"]}));
        match key {
            Some(k) => r.header("Idempotency-Key", k),
            None => r,
        }
    };
    let first = create(Some("k-1")).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let again = create(Some("k-1")).send().await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replay"], "true");
    let (s, _) = error_of(create(None).send().await.unwrap()).await;
    assert_eq!(s, 409, "without the key, the namespace exists");

    // A commit retried with its key commits once: the retry gets the first answer and
    // the table moves by exactly one version. Without a key, the same request is a new
    // commit.
    let version = |catalog: &Catalog| {
        let catalog = catalog.clone();
        async move {
            catalog
                .load_table(&TableIdent::parse("fleet.dev_1").unwrap())
                .await
                .unwrap()
                .version()
        }
    };
    let before = version(&catalog).await;
    let commit_once = |key: Option<&str>| {
        let r = http
            .req(Method::POST, commit, &token)
            .json(&json!({"updates": [{"action": "set-properties", "updates": {"owner": "ops"}}]}));
        match key {
            Some(k) => r.header("Idempotency-Key", k),
            None => r,
        }
    };
    let first = commit_once(Some("c-1")).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let first_body: Value = first.json().await.unwrap();
    let again = commit_once(Some("c-1")).send().await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replay"], "true");
    let again_body: Value = again.json().await.unwrap();
    assert_eq!(
        again_body["metadata-location"],
        first_body["metadata-location"]
    );
    assert_eq!(
        version(&catalog).await.0,
        before.0 + 1,
        "a keyed retry committed again"
    );
    let fresh = commit_once(None).send().await.unwrap();
    assert_eq!(fresh.status(), 200);
    assert_eq!(version(&catalog).await.0, before.0 + 2);

    // ETag and 304 on load; health.
    let r = http
        .req(Method::GET, "/v1/namespaces/fleet/tables/dev_1", &token)
        .send()
        .await
        .unwrap();
    let tag = r.headers()["etag"].to_str().unwrap().to_string();
    let r = http
        .req(Method::GET, "/v1/namespaces/fleet/tables/dev_1", &token)
        .header("If-None-Match", &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let r = http
        .client
        .get(format!("{}/health", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn iceberg_rust_rest_client_drives_the_server() {
    use floe_table_format::iceberg::transaction::{ApplyTransactionAction, Transaction};
    use floe_table_format::iceberg::{Catalog as _, CatalogBuilder as _, NamespaceIdent};
    let wh = tempfile_dir("rest-iceberg-rust");
    let catalog = fleet(&wh).await;
    let dev_1 = principal(&wh, "dev_1", &["write:fleet.dev_1"]);
    let server = Server::start(&wh, &[], &[]);
    let props = HashMap::from([
        ("uri".to_string(), server.url.clone()),
        ("credential".to_string(), dev_1),
        (
            "oauth2-server-uri".to_string(),
            format!("{}/v1/oauth/tokens", server.url),
        ),
    ]);
    let rest = iceberg_catalog_rest::RestCatalogBuilder::default()
        .with_storage_factory(std::sync::Arc::new(
            floe_table_format::storage::ObjectStoreStorageFactory::new(catalog.warehouse()),
        ))
        .load("floe", props)
        .await
        .unwrap();
    let namespaces = rest.list_namespaces(None).await.unwrap();
    assert_eq!(namespaces, vec![NamespaceIdent::new("fleet".into())]);
    let fleet_ns = NamespaceIdent::new("fleet".into());
    let tables = rest.list_tables(&fleet_ns).await.unwrap();
    assert_eq!(tables.len(), 1);
    assert_eq!(tables[0].name(), "dev_1");
    let table = rest.load_table(&tables[0]).await.unwrap();
    assert_eq!(table.metadata().snapshots().count(), 1);
    let other = floe_table_format::iceberg::TableIdent::new(fleet_ns.clone(), "dev_2".into());
    let e = rest.load_table(&other).await.unwrap_err();
    assert!(e.to_string().contains("no read grant"), "{e}");

    // A commit through iceberg-rust's Transaction lands through the driver.
    let tx = Transaction::new(&table);
    let tx = tx
        .update_table_properties()
        .set("owner".into(), "installer".into())
        .apply(tx)
        .unwrap();
    tx.commit(&rest).await.unwrap();
    let t = catalog
        .load_table(&TableIdent::parse("fleet.dev_1").unwrap())
        .await
        .unwrap();
    assert_eq!(
        t.metadata().properties().get("owner").map(String::as_str),
        Some("installer")
    );
    // Namespace creation and drops by a device are refused (admin only) and change
    // nothing. (iceberg-rust's client has no namespace-properties update.)
    let e = rest
        .create_namespace(
            &NamespaceIdent::new("site_99".into()),
            HashMap::from([("x".into(), "y".into())]),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("admin only"), "{e}");
    assert!(!catalog
        .namespace_exists(&Namespace::parse("site_99").unwrap())
        .await
        .unwrap());
    let e = rest.drop_table(&tables[0]).await.unwrap_err();
    assert!(e.to_string().contains("admin only"), "{e}");
    assert_eq!(
        head(&catalog, "fleet.dev_1").await,
        t.metadata_location(),
        "a refused drop left the table as it was"
    );
}

/// `floe` as a client of `floe serve` (`--catalog http://… --credential …`), with no S3
/// keys and no warehouse of its own in its environment.
fn floe_rest(url: &str, credential: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(floe_bin());
    cmd.args(["--catalog", url, "--credential", credential])
        .args(args)
        .env_remove("FLOE_WAREHOUSE")
        .current_dir(std::env::temp_dir());
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.output().unwrap()
}

fn ok(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn csv(dir: &std::path::Path, device: &str, rows: usize) -> String {
    let mut text = String::from("device_id,ts,metric,value\n");
    for i in 0..rows {
        text.push_str(&format!(
            "{device},2026-11-20T00:{:02}:{:02}Z,temp,{i}.5\n",
            i / 60,
            i % 60
        ));
    }
    let path = dir.join(format!("{device}-{rows}.csv"));
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().to_string()
}

/// Floe's own client through the server: a device appends to its own table (created from
/// the template on first contact), queries it, and syncs a gateway's local table into the
/// cloud; it is refused everywhere else, with nothing written. On S3 it holds no keys and
/// every file goes through the signer.
async fn own_client_scenario(wh: &str) {
    let catalog = fleet(wh).await;
    let dev_1 = principal(wh, "dev_1", &["write:fleet.dev_1"]);
    let gw = principal(wh, "gw", &["write:fleet.gw_*"]);
    let party = principal(wh, "party", &["read:site_17.*"]);
    let server = Server::start(wh, &[], &[]);
    let url = server.url.as_str();
    let scratch = std::path::PathBuf::from(tempfile_dir("rest-own-client-input"));

    // Append twice to its own table; the commits land through the server's driver.
    let input = csv(&scratch, "dev_1", 7);
    for _ in 0..2 {
        ok(
            floe_rest(url, &dev_1, &["append", "fleet.dev_1", &input]),
            "append",
        );
    }
    let t = catalog
        .load_table(&TableIdent::parse("fleet.dev_1").unwrap())
        .await
        .unwrap();
    assert_eq!(support::scan(&t).await.0, 5 + 14);
    assert_eq!(t.metadata().snapshots().count(), 3);
    let report = floe_table_format::check::check_table(catalog.warehouse(), t.ident().unwrap())
        .await
        .unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    // It reads what it may: listing, describe, SQL.
    assert_eq!(
        ok(floe_rest(url, &dev_1, &["tables", "fleet"]), "tables").trim(),
        "fleet.dev_1"
    );
    let sql = ok(
        floe_rest(
            url,
            &dev_1,
            &[
                "sql",
                "--format",
                "csv",
                "SELECT count(*) AS n FROM fleet.dev_1",
            ],
        ),
        "sql",
    );
    assert!(sql.contains("\n19"), "{sql}");

    // Refused elsewhere, with nothing changed.
    let dev_2_head = head(&catalog, "fleet.dev_2").await;
    let out = floe_rest(url, &dev_1, &["append", "fleet.dev_2", &input]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no read grant on fleet.dev_2"), "{err}");
    assert_eq!(head(&catalog, "fleet.dev_2").await, dev_2_head);
    let c1_objects = objects_of(&catalog, "site_17.c1").await;
    let out = floe_rest(url, &party, &["append", "site_17.c1", &input]);
    assert!(!out.status.success(), "a reader appended");
    if wh.starts_with("s3://") {
        // The signer refused the data file itself: not one object was written.
        assert_eq!(objects_of(&catalog, "site_17.c1").await, c1_objects);
    }
    assert_eq!(
        support::scan(
            &catalog
                .load_table(&TableIdent::parse("site_17.c1").unwrap())
                .await
                .unwrap()
        )
        .await
        .0,
        5
    );

    // A device's first append creates its table from the namespace's template.
    ok(
        floe_rest(
            url,
            &gw,
            &["append", "fleet.gw_9", &csv(&scratch, "gw_9", 2)],
        ),
        "first append",
    );
    let created = catalog
        .load_table(&TableIdent::parse("fleet.gw_9").unwrap())
        .await
        .unwrap();
    assert_eq!(support::scan(&created).await.0, 2);
    assert_eq!(
        created.metadata().default_partition_spec().fields().len(),
        1,
        "partitioned by the template's day(ts)"
    );

    // A gateway: local appends, then sync through the server; a rerun projects nothing.
    let local = tempfile_dir("rest-own-client-gateway");
    for rows in [3, 4] {
        floe_ok(
            &local,
            &[
                "append",
                "fleet.gw_7",
                &csv(&scratch, "gw_7", rows),
                "--create",
            ],
        );
    }
    for rerun in [false, true] {
        let out = ok(
            floe_rest(url, &gw, &["sync", "--from", &local, "--to", url]),
            "sync",
        );
        assert_eq!(out.contains("1 already in sync"), rerun, "{out}");
    }
    let cloud = catalog
        .load_table(&TableIdent::parse("fleet.gw_7").unwrap())
        .await
        .unwrap();
    assert_eq!(support::scan(&cloud).await.0, 7);
    // Both local appends in one squashed cloud commit.
    assert_eq!(cloud.metadata().snapshots().count(), 1);
}

#[tokio::test]
async fn floes_own_client_appends_queries_and_syncs_through_the_server_on_files() {
    own_client_scenario(&tempfile_dir("rest-own-client")).await;
}

#[tokio::test]
async fn floes_own_client_needs_no_s3_keys_through_the_server() {
    let Some(warehouse) = support::s3_warehouse() else {
        return;
    };
    own_client_scenario(warehouse.url()).await;
}
