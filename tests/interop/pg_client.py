"""Floe's Postgres-wire endpoint driven by psycopg 3 (extended protocol, parameters,
binary and text results, cancellation). Prints one JSON object; the Rust test compares it
with hand-computed answers.

usage: pg_client.py CONNINFO STEP
  queries  parameterized queries, binary and text results
  cancel   a long query cancelled from another thread, then the connection reused
"""
import json
import sys
import threading
import time
from datetime import datetime, timezone

import psycopg

conninfo, step = sys.argv[1], sys.argv[2]
out = {}
with psycopg.connect(conninfo, autocommit=True) as conn:
    if step == "queries":
        since = datetime(2026, 1, 1, 1, 0, tzinfo=timezone.utc)
        query = (
            "SELECT device, count(*) AS n, sum(value) AS s, max(ts) AS last "
            "FROM fleet.all_devices WHERE ts >= %s AND value >= %s "
            "GROUP BY device ORDER BY device"
        )
        for binary in (True, False):
            cur = conn.cursor(binary=binary)
            cur.execute(query, (since, 100.0))
            out["binary" if binary else "text"] = [
                [d, n, s, last.astimezone(timezone.utc).isoformat()]
                for d, n, s, last in cur.fetchall()
            ]
        cur = conn.cursor(binary=True)
        cur.execute(
            "SELECT bit_test(%s, %s), bit_count(%s), device_id = %s FROM fleet.dev_1 LIMIT 1",
            (6, 1, 255, "fleet.dev_1"),
        )
        out["types"] = list(cur.fetchone())
    elif step == "cancel":
        long_query = (
            "SELECT count(*) FROM fleet.all_devices a, fleet.all_devices b, "
            "fleet.all_devices c, fleet.all_devices d"
        )
        timer = threading.Timer(1.0, conn.cancel)
        started = time.monotonic()
        timer.start()
        try:
            conn.execute(long_query).fetchall()
            out["cancelled"] = False
        except psycopg.errors.QueryCanceled as e:
            out["cancelled"] = True
            out["message"] = str(e).strip()
        out["seconds"] = time.monotonic() - started
        out["after"] = conn.execute("SELECT count(*) FROM fleet.dev_1").fetchone()[0]
print(json.dumps(out))
