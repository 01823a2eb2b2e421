"""The dashboard benchmark (issue 18): eight panels' queries (last hour and last day, per
device and fleet-wide), refreshed again and again, timed side by side in one run:

  server warm   `floe serve --pg`, one psycopg connection, after its first refresh
  server cold   the first refresh of a freshly started server
  server warm, iceberg's reader   the same with --iceberg-reader (the scan before issue 17)
  floe sql      one `floe sql` process per query (what a dashboard had before)
  DuckDB        the same SQL over the raw Parquet files (no table layer, every core)

Prints medians of one refresh (all eight queries) and ratios, the server's peak RSS and
its cache counters. Every engine's answers are compared (row counts and rounded values).

usage: bench_dashboard.py --floe BIN [--warehouse DIR] [--devices N] [--commits N]
                          [--refreshes N] [--sql-refreshes N] [--cache-size SIZE]
Needs psycopg and duckdb (scripts/setup-bench.sh installs both).
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import duckdb
import psycopg

DEVICE = "dev_0007"
# (name, Floe SQL, DuckDB SQL or None when the same text runs on both)
PANELS = [
    ("fleet power, 5 min buckets, last hour",
     "SELECT time_bucket(INTERVAL '5 minutes', ts) AS t, avg(value) AS v FROM fleet.all_devices "
     "WHERE ts > {now} - INTERVAL '1 hour' AND metric = 'power_kw' GROUP BY 1 ORDER BY 1", None),
    ("fleet power, hourly, last day",
     "SELECT date_trunc('hour', ts) AS t, avg(value) AS v FROM fleet.all_devices "
     "WHERE ts > {now} - INTERVAL '1 day' AND metric = 'power_kw' GROUP BY 1 ORDER BY 1", None),
    ("one device, per minute, last hour",
     f"SELECT time_bucket(INTERVAL '1 minute', ts) AS t, metric, avg(value) AS v FROM fleet.{DEVICE} "
     "WHERE ts > {now} - INTERVAL '1 hour' GROUP BY 1, 2 ORDER BY 1, 2", None),
    ("one device, 15 min, last day",
     f"SELECT time_bucket(INTERVAL '15 minutes', ts) AS t, max(value) AS v FROM fleet.{DEVICE} "
     "WHERE ts > {now} - INTERVAL '1 day' GROUP BY 1 ORDER BY 1", None),
    ("latest value per device and metric",
     "SELECT device, metric, last_value(value ORDER BY ts) AS v FROM fleet.all_devices "
     "WHERE ts > {now} - INTERVAL '1 hour' GROUP BY 1, 2 ORDER BY 1, 2",
     "SELECT device, metric, arg_max(value, ts) AS v FROM fleet.all_devices "
     "WHERE ts > {now} - INTERVAL '1 hour' GROUP BY 1, 2 ORDER BY 1, 2"),
    ("readings per device, last day",
     "SELECT device, count(*) AS n FROM fleet.all_devices "
     "WHERE ts > {now} - INTERVAL '1 day' GROUP BY 1 ORDER BY 1", None),
    ("peak per device, last hour",
     "SELECT device, max(value) AS v FROM fleet.all_devices "
     "WHERE ts > {now} - INTERVAL '1 hour' AND metric = 'power_kw' GROUP BY 1 ORDER BY 1", None),
    ("fleet energy, last day",
     "SELECT sum(value) / 120.0 AS kwh, count(DISTINCT device) AS devices FROM fleet.all_devices "
     "WHERE ts > {now} - INTERVAL '1 day' AND metric = 'power_kw'", None),
]


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def norm(rows):
    """Rows as comparable text: numbers rounded, timestamps as UTC seconds."""
    out = []
    for r in rows:
        cells = []
        for c in r:
            if hasattr(c, "timestamp"):
                cells.append(str(int(c.timestamp())))
            elif isinstance(c, float):
                cells.append(f"{c:.6g}")
            else:
                cells.append(str(c))
        out.append("|".join(cells))
    return out


# Every engine answers as of the same instant (as Grafana sends literal times), so their
# answers can be compared: the fleet's newest reading, so a fleet generated earlier and
# reused gives the same windows (set in main).
NOW = None


def at_now(sql):
    return sql.replace("{now}", NOW)


def refresh_pg(conn):
    answers = []
    t0 = time.perf_counter()
    for _, sql, _ in PANELS:
        answers.append(norm(conn.execute(at_now(sql)).fetchall()))
    return time.perf_counter() - t0, answers


def refresh_floe_sql(floe, warehouse):
    t0 = time.perf_counter()
    for _, sql, _ in PANELS:
        run([floe, "--warehouse", warehouse, "sql", "--format", "csv", at_now(sql)])
    return time.perf_counter() - t0


def refresh_duckdb(con):
    answers = []
    t0 = time.perf_counter()
    for _, sql, duck in PANELS:
        answers.append(norm(con.execute(at_now(duck or sql)).fetchall()))
    return time.perf_counter() - t0, answers


def start_server(floe, warehouse, cache_size, *extra):
    proc = subprocess.Popen(
        [floe, "--warehouse", warehouse, "serve", "--rest", "127.0.0.1:0",
         "--pg", "127.0.0.1:0", "--cache-size", cache_size, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        m = re.search(r"Postgres wire protocol on [0-9.]+:(\d+)", line)
        if m:
            return proc, int(m.group(1))
    raise SystemExit("floe serve did not start")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["VmHWM"].split()[0]) / 1024, int(fields["VmRSS"].split()[0]) / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--floe", required=True)
    ap.add_argument("--warehouse")
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--commits", type=int, default=24)
    ap.add_argument("--refreshes", type=int, default=20)
    ap.add_argument("--sql-refreshes", type=int, default=3)
    ap.add_argument("--cache-size", default="256MiB")
    a = ap.parse_args()
    wh = a.warehouse or tempfile.mkdtemp(prefix="floe-dashboard-")
    if not os.path.exists(os.path.join(wh, "fleet")):
        run([a.floe, "--warehouse", wh, "demo", "--devices", str(a.devices),
             "--commits", str(a.commits)])
    secret = json.loads(run([a.floe, "--warehouse", wh, "principal", "add",
                             f"bench_{os.getpid()}", "--grant", "admin", "--json"]).stdout)
    files = sum(1 for _, _, fs in os.walk(os.path.join(wh, "fleet")) for f in fs if f.endswith(".parquet"))
    global NOW
    newest = duckdb.connect().execute(
        "SELECT epoch(max(ts)) FROM read_parquet("
        f"'{os.path.join(wh, 'fleet', '*', 'data', '**', '*.parquet')}', hive_partitioning = false)"
    ).fetchone()[0]
    NOW = time.strftime("TIMESTAMPTZ '%Y-%m-%d %H:%M:%S+00:00'", time.gmtime(int(newest) + 1))
    print(f"fleet: {a.devices} device tables, {files} Parquet files, in {wh}")

    proc, port = start_server(a.floe, wh, a.cache_size)
    try:
        info = f"host=127.0.0.1 port={port} user={secret['name']} password={secret['secret']} dbname=floe sslmode=disable"
        with psycopg.connect(info, autocommit=True) as conn:
            cold, floe_answers = refresh_pg(conn)
            warm = [refresh_pg(conn)[0] for _ in range(a.refreshes)]
            cache = conn.execute("SELECT hits, misses, bytes, capacity FROM floe_cache()").fetchone()
        peak, now_rss = rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait()

    # The same server reading Parquet with iceberg's reader instead of DataFusion's scan.
    proc, port = start_server(a.floe, wh, a.cache_size, "--iceberg-reader")
    try:
        info = f"host=127.0.0.1 port={port} user={secret['name']} password={secret['secret']} dbname=floe sslmode=disable"
        with psycopg.connect(info, autocommit=True) as conn:
            refresh_pg(conn)
            warm_iceberg = [refresh_pg(conn)[0] for _ in range(a.refreshes)]
    finally:
        proc.terminate()
        proc.wait()

    sql = [refresh_floe_sql(a.floe, wh) for _ in range(a.sql_refreshes)]

    con = duckdb.connect()
    glob = os.path.join(wh, "fleet", "*", "data", "**", "*.parquet")
    con.execute(
        "CREATE SCHEMA fleet; CREATE VIEW fleet.all_devices AS SELECT *, "
        "regexp_extract(filename, '/fleet/([^/]+)/data/', 1) AS device "
        f"FROM read_parquet('{glob}', filename = true, hive_partitioning = false)")
    con.execute(
        f"CREATE VIEW fleet.{DEVICE} AS SELECT * FROM read_parquet("
        f"'{os.path.join(wh, 'fleet', DEVICE, 'data', '**', '*.parquet')}', hive_partitioning = false)")
    duck = []
    duck_answers = None
    for _ in range(a.refreshes):
        t, duck_answers = refresh_duckdb(con)
        duck.append(t)

    same = [f == d for f, d in zip(floe_answers, duck_answers)]
    w = statistics.median(warm)
    rows = [
        ("server warm (median of %d)" % a.refreshes, w),
        ("server cold (first refresh)", cold),
        ("server warm, iceberg's reader (median of %d)" % a.refreshes, statistics.median(warm_iceberg)),
        ("floe sql, a process per query (median of %d)" % a.sql_refreshes, statistics.median(sql)),
        ("DuckDB over the raw files (median of %d)" % a.refreshes, statistics.median(duck)),
    ]
    print(f"\none refresh = {len(PANELS)} panel queries\n")
    print(f"{'case':<48} {'refresh ms':>11} {'x warm':>8}")
    for name, t in rows:
        print(f"{name:<48} {t * 1000:>11.1f} {t / w:>8.2f}")
    print(f"\nserver peak RSS {peak:.0f} MiB (now {now_rss:.0f} MiB); cache: {cache[0]} hits, "
          f"{cache[1]} misses, {cache[2] / 2**20:.1f} MiB held of {cache[3] / 2**20:.0f} MiB")
    print("same answers as DuckDB: " + ", ".join(
        f"{name}: {'yes' if s else 'NO'}" for (name, _, _), s in zip(PANELS, same)))
    if a.warehouse is None:
        shutil.rmtree(wh, ignore_errors=True)


if __name__ == "__main__":
    main()
