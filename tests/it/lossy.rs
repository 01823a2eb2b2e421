//! Lost responses on real S3 (issue 15, class 10): a small fault-injecting TCP proxy of our
//! own on 127.0.0.1 between `floe` processes and LocalStack drops connections at random
//! after a request went through (so the request took effect and its answer is lost) and
//! delays answers. Eight writer processes append through it while compaction and expiry
//! run through it too; every unknown outcome is rerun with its commit id until settled.
//! The table must then hold every acknowledged append exactly once, and check clean.
//!
//! The figures it prints are in RELIABILITY.md; rerun them with
//! `cargo test -p floe-tests --test e2e lossy -- --nocapture` (LocalStack started, see
//! scripts/test.sh). `FLOE_LOSSY_APPENDS` sets the appends per writer (default 50).

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

/// What the proxy did.
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections cut after the upstream had begun to answer.
    pub dropped: AtomicU64,
    /// Answers delayed.
    pub delayed: AtomicU64,
}

/// A TCP proxy that loses answers: for each chunk the upstream sends back, with
/// probability `drop` it closes both sides instead (the request already reached the
/// upstream), and with probability `delay` it waits up to `max_delay` first.
pub struct FaultProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// Its counters.
    pub stats: Arc<ProxyStats>,
}

impl FaultProxy {
    pub async fn start(
        upstream: SocketAddr,
        drop: f64,
        delay: f64,
        max_delay: Duration,
        seed: u64,
    ) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(ProxyStats::default());
        let counters = Arc::clone(&stats);
        tokio::spawn(async move {
            let mut n = 0u64;
            while let Ok((client, _)) = listener.accept().await {
                n += 1;
                counters.connections.fetch_add(1, Ordering::Relaxed);
                let stats = Arc::clone(&counters);
                let rng = StdRng::seed_from_u64(seed.wrapping_add(n));
                tokio::spawn(relay(client, upstream, drop, delay, max_delay, rng, stats));
            }
        });
        FaultProxy { addr, stats }
    }
}

async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    drop: f64,
    delay: f64,
    max_delay: Duration,
    mut rng: StdRng,
    stats: Arc<ProxyStats>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let requests = async {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    };
    let answers = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if rng.random_bool(drop) {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            if rng.random_bool(delay) {
                stats.delayed.fetch_add(1, Ordering::Relaxed);
                let ms = rng.random_range(0..=max_delay.as_millis() as u64);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            if client_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    // Whichever side ends first ends the connection: both halves are dropped (closed).
    tokio::select! {
        () = requests => {},
        () = answers => {},
    }
}

/// How each append ended.
#[derive(Debug, Default)]
struct Tally {
    first_try: u64,
    unknown_then_settled: u64,
    failed_then_settled: u64,
    reruns: u64,
}

fn floe_via(endpoint: &str, wh: &str, args: &[&str]) -> std::process::Output {
    Command::new(floe_bin())
        .args(["--warehouse", wh])
        .args(args)
        .env("AWS_ENDPOINT_URL", endpoint)
        .output()
        .unwrap()
}

#[test]
fn appends_compaction_and_expiry_through_a_lossy_link_stay_exact() {
    let Some(warehouse) = s3_warehouse() else {
        return;
    };
    let wh = warehouse.url().to_string();
    let upstream: SocketAddr = std::env::var("AWS_ENDPOINT_URL")
        .expect("LocalStack's endpoint")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("an IP:port endpoint");
    let writers = 8usize;
    let appends: usize = std::env::var("FLOE_LOSSY_APPENDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let rows_each = 4usize;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let proxy = rt.block_on(FaultProxy::start(
        upstream,
        0.08,
        0.05,
        Duration::from_millis(200),
        seed(),
    ));
    let endpoint = format!("http://{}", proxy.addr);
    floe_ok(&wh, &["create", "fleet.lossy"]);
    let dir = std::path::PathBuf::from(format!(
        "{}/floe-lossy-{}",
        std::env::temp_dir().display(),
        uuid::Uuid::new_v4()
    ));
    std::fs::create_dir_all(&dir).unwrap();

    let tally = Arc::new(Mutex::new(Tally::default()));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let writing = Arc::new(AtomicBool::new(true));
    let started = Instant::now();
    // Expiry and compaction, each in its own loop (a compaction can run long).
    let maintenance: Vec<_> = [
        // Aggressive: a rerun must find its commit id in the ledger of expired commits when
        // its snapshot is already gone.
        vec![
            "expire",
            "fleet.lossy",
            "--older-than",
            "1s",
            "--retain-last",
            "1",
        ],
        vec!["compact", "fleet.lossy", "--target-mib", "1"],
    ]
    .into_iter()
    .map(|args| {
        let (wh, endpoint, writing) = (wh.clone(), endpoint.clone(), Arc::clone(&writing));
        std::thread::spawn(move || {
            // (verb, ok, failed, slowest seconds, first failure)
            let mut run = (args[0], 0u64, 0u64, 0f64, String::new());
            while writing.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let out = floe_via(&endpoint, &wh, &args);
                run.3 = run.3.max(t0.elapsed().as_secs_f64());
                if out.status.success() {
                    run.1 += 1;
                } else {
                    run.2 += 1;
                    if run.4.is_empty() {
                        run.4 = String::from_utf8_lossy(&out.stderr)
                            .lines()
                            .next()
                            .unwrap_or_default()
                            .to_string();
                    }
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            run
        })
    })
    .collect();
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let (wh, endpoint, dir) = (wh.clone(), endpoint.clone(), dir.clone());
            let (tally, acked) = (Arc::clone(&tally), Arc::clone(&acked));
            std::thread::spawn(move || {
                for a in 0..appends {
                    let id = format!("w{w}-a{a}");
                    let input = dir.join(format!("{id}.csv"));
                    let mut text = String::from("device_id,ts,metric,value\n");
                    for i in 0..rows_each {
                        text.push_str(&format!("{id},2026-11-20T00:00:{i:02}Z,temp,{i}.0\n"));
                    }
                    std::fs::write(&input, text).unwrap();
                    let mut unknown = false;
                    let mut tries = 0;
                    loop {
                        tries += 1;
                        let out = floe_via(
                            &endpoint,
                            &wh,
                            &[
                                "append",
                                "fleet.lossy",
                                input.to_str().unwrap(),
                                "--commit-id",
                                &id,
                            ],
                        );
                        if out.status.success() {
                            let mut t = tally.lock().unwrap();
                            match (tries, unknown) {
                                (1, _) => t.first_try += 1,
                                (_, true) => t.unknown_then_settled += 1,
                                (_, false) => t.failed_then_settled += 1,
                            }
                            acked.lock().unwrap().push(id.clone());
                            break;
                        }
                        let err = String::from_utf8_lossy(&out.stderr).to_string();
                        unknown |= err.contains("unknown");
                        tally.lock().unwrap().reruns += 1;
                        assert!(tries < 20, "append {id} never settled: {err}");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    writing.store(false, Ordering::Relaxed);
    let maintenance: Vec<String> = maintenance
        .into_iter()
        .map(|t| t.join().unwrap())
        .map(|(verb, ok, failed, slowest, why)| {
            format!(
                "{verb} ok {ok}, failed {failed} (slowest {slowest:.0} s){}",
                if why.is_empty() {
                    String::new()
                } else {
                    format!(", first failure: {why}")
                }
            )
        })
        .collect();
    let elapsed = started.elapsed();

    // Read back without the proxy: every acknowledged append exactly once.
    let out = floe_ok(
        &wh,
        &[
            "sql",
            "--format",
            "csv",
            "SELECT device_id, count(*) AS n FROM fleet.lossy GROUP BY device_id",
        ],
    );
    let mut counts: Vec<(String, usize)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(','))
        .map(|(d, n)| (d.to_string(), n.trim().parse().unwrap()))
        .collect();
    counts.sort();
    let mut acked = acked.lock().unwrap().clone();
    acked.sort();
    assert_eq!(
        acked.len(),
        writers * appends,
        "every append was acknowledged in the end"
    );
    assert_eq!(
        counts.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>(),
        acked,
        "the table holds exactly the acknowledged appends"
    );
    for (device, n) in &counts {
        assert_eq!(
            *n,
            rows_each,
            "append {device} is present {} times",
            *n as f64 / rows_each as f64
        );
    }
    floe_ok(&wh, &["check", "fleet.lossy"]);
    let t = tally.lock().unwrap();
    eprintln!(
        "lossy link: {writers} writers x {appends} appends of {rows_each} rows in {:.0} s; acknowledged first try {}, unknown then settled by rerun {}, failed then settled {}, reruns {}; maintenance meanwhile: {}; proxy: {} connections, {} answers dropped, {} delayed; rows exact ({} appends x {rows_each}), floe check clean",
        elapsed.as_secs_f64(),
        t.first_try,
        t.unknown_then_settled,
        t.failed_then_settled,
        t.reruns,
        maintenance.join("; "),
        proxy.stats.connections.load(Ordering::Relaxed),
        proxy.stats.dropped.load(Ordering::Relaxed),
        proxy.stats.delayed.load(Ordering::Relaxed),
        counts.len(),
    );
    assert!(
        proxy.stats.dropped.load(Ordering::Relaxed) > 0,
        "the proxy lost no answer: the test tested nothing"
    );
}

fn seed() -> u64 {
    std::env::var("FLOE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7)
        })
}
