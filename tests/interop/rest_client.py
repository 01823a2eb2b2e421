"""Drive `floe serve` with pyiceberg's RestCatalog, as a device, a party or an admin would.

Usage: python tests/interop/rest_client.py URI CREDENTIAL STEP [ARGS...]

Steps (each prints one JSON object):
  namespaces                      visible namespaces (recursively)
  tables NS                       visible tables of NS
  scan NS.T                       rows and sum(value) of a full scan
  append NS.T ROWS [--twice]      append ROWS rows (device_id = the table name); with
                                  --twice every commit request is sent twice with the same
                                  body and headers, as a client retrying a lost answer does
  create NS.T                     create NS.T with the default IoT schema
  try STEP ...                    run STEP; report {"ok": false, "error": TYPE, "message"}
                                  instead of failing
  concurrent NS.T THREADS N ROWS  THREADS threads each append N times ROWS rows to one
                                  table, retrying on CommitFailedException (reload first)
  devices NS PREFIX COUNT ROWS CREDFILE
                                  COUNT threads, one per device PREFIX{i} with its own
                                  credential (lines of CREDFILE), each create + append
No step uses S3 keys: on S3 every data request goes through the server's signer.
"""

import json
import sys
import threading
from datetime import datetime, timedelta, timezone

import pyarrow as pa
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.schema import Schema
from pyiceberg.types import DoubleType, NestedField, StringType, TimestamptzType

SCHEMA = Schema(
    NestedField(1, "device_id", StringType(), required=False),
    NestedField(2, "ts", TimestamptzType(), required=False),
    NestedField(3, "metric", StringType(), required=False),
    NestedField(4, "value", DoubleType(), required=False),
)


def catalog(uri, credential, extra=None):
    props = {"uri": uri, "credential": credential, "oauth2-server-uri": uri.rstrip("/") + "/v1/oauth/tokens"}
    props.update(extra or {})
    return RestCatalog("floe", **props)


def rows(device, n, start=0):
    t0 = datetime(2026, 11, 20, tzinfo=timezone.utc)
    return pa.table(
        {
            "device_id": pa.array([device] * n, pa.string()),
            "ts": pa.array([t0 + timedelta(seconds=start + i) for i in range(n)], pa.timestamp("us", tz="UTC")),
            "metric": pa.array(["temp"] * n, pa.string()),
            "value": pa.array([float(i) for i in range(n)], pa.float64()),
        }
    )


def send_commits_twice(cat):
    session = cat._session
    original = session.post

    def post(url, *args, **kwargs):
        if "/tables/" in url and not url.endswith("/metrics"):
            original(url, *args, **kwargs)
        return original(url, *args, **kwargs)

    session.post = post


def run(cat, step, args):
    if step == "namespaces":
        out, todo = [], list(cat.list_namespaces())
        while todo:
            ns = todo.pop(0)
            out.append(".".join(ns))
            todo.extend(cat.list_namespaces(ns))
        return {"namespaces": sorted(out)}
    if step == "tables":
        return {"tables": sorted(".".join(t) for t in cat.list_tables(args[0]))}
    if step == "scan":
        t = cat.load_table(args[0])
        a = t.scan().to_arrow()
        return {"rows": a.num_rows, "sum": float(pa.compute.sum(a["value"]).as_py() or 0.0)}
    if step == "append":
        if "--twice" in args:
            send_commits_twice(cat)
        t = cat.load_table(args[0])
        before = len(t.metadata.snapshots)
        t.append(rows(args[0].split(".")[-1], int(args[1])))
        t = cat.load_table(args[0])
        return {"snapshots_before": before, "snapshots_after": len(t.metadata.snapshots)}
    if step == "create":
        t = cat.create_table(args[0], schema=SCHEMA)
        return {"location": t.location(), "fields": [f.name for f in t.schema().fields]}
    if step == "try":
        try:
            return {"ok": True, "result": run(cat, args[0], args[1:])}
        except Exception as e:  # noqa: BLE001 - the type is what the test checks
            return {"ok": False, "error": type(e).__name__, "message": str(e)}
    if step == "concurrent":
        name, threads, n, count = args[0], int(args[1]), int(args[2]), int(args[3])
        retries, errors = [0], []

        def work(k):
            mine = catalog(cat.properties["uri"], cat.properties["credential"])
            for j in range(n):
                while True:
                    try:
                        t = mine.load_table(name)
                        t.append(rows(f"w{k}", count, start=j * count))
                        break
                    except CommitFailedException:
                        retries[0] += 1
                    except Exception as e:  # noqa: BLE001
                        errors.append(repr(e))
                        return

        ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        return {"retries": retries[0], "errors": errors}
    if step == "devices":
        ns, prefix, count, n, credfile = args[0], args[1], int(args[2]), int(args[3]), args[4]
        creds = open(credfile).read().split()
        errors = []

        def device(i):
            try:
                mine = catalog(cat.properties["uri"], creds[i])
                ident = f"{ns}.{prefix}{i}"
                mine.create_table(ident, schema=SCHEMA)
                mine.load_table(ident).append(rows(f"{prefix}{i}", n))
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))

        ts = [threading.Thread(target=device, args=(i,)) for i in range(count)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        return {"errors": errors}
    raise SystemExit(f"unknown step {step}")


def main():
    uri, credential, step, *args = sys.argv[1:]
    cat = catalog(uri, credential)
    print(json.dumps(run(cat, step, args)))


if __name__ == "__main__":
    main()
