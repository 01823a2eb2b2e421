"""The peers of `floe-bench fleet`: pyiceberg (SQLite catalog) and DuckDB on the same data.

Run by the harness with the venv of scripts/setup-bench.sh; every subcommand times only
the work itself (not Python's start-up or imports) and prints one JSON object.

  commits WAREHOUSE N ROWS         N appends of ROWS rows to a fresh pyiceberg table
  append WAREHOUSE FILE            append one Parquet file's rows to a fresh pyiceberg table
  duckdb SQL                       one DuckDB query (in memory, every core)
  pyiceberg METADATA DEVICE FROM TO   scan one table with a device and time filter

For s3:// warehouses the S3 settings come from AWS_* variables and AWS_ENDPOINT_URL.
"""

import json
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone


def s3_props():
    env = os.environ
    props = {
        "s3.endpoint": env.get("AWS_ENDPOINT_URL"),
        "s3.access-key-id": env.get("AWS_ACCESS_KEY_ID"),
        "s3.secret-access-key": env.get("AWS_SECRET_ACCESS_KEY"),
        "s3.region": env.get("AWS_REGION") or "us-east-1",
    }
    return {k: v for k, v in props.items() if v}


def iot_table(warehouse, name):
    """A fresh pyiceberg table of Floe's default IoT schema, partitioned by day(ts)."""
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.transforms import DayTransform
    from pyiceberg.types import DoubleType, NestedField, StringType, TimestamptzType

    db = os.path.join(tempfile.mkdtemp(prefix="floe-bench-pyi-"), "catalog.db")
    props = {"uri": f"sqlite:///{db}", "warehouse": warehouse}
    if warehouse.startswith("s3"):
        props.update(s3_props())
    catalog = SqlCatalog("bench", **props)
    catalog.create_namespace("bench")
    schema = Schema(
        NestedField(1, "device_id", StringType(), required=False),
        NestedField(2, "ts", TimestamptzType(), required=False),
        NestedField(3, "metric", StringType(), required=False),
        NestedField(4, "value", DoubleType(), required=False),
    )
    spec = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=DayTransform(), name="ts_day"))
    return catalog.create_table(f"bench.{name}", schema=schema, partition_spec=spec)


def commits(warehouse, n, rows):
    import pyarrow as pa

    table = iot_table(warehouse, "commits")
    arrow_schema = table.schema().as_arrow()
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    batches = []
    for c in range(n):
        ts = [start + timedelta(seconds=c * rows + i) for i in range(rows)]
        batches.append(
            pa.Table.from_pydict(
                {
                    "device_id": ["dev_0001"] * rows,
                    "ts": ts,
                    "metric": ["power_kw"] * rows,
                    "value": [float(i) for i in range(rows)],
                },
                schema=arrow_schema,
            )
        )
    t0 = time.perf_counter()
    for b in batches:
        table.append(b)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "commits": n}


def append(warehouse, path):
    """What `floe append --create` does: read a Parquet file, append it as one commit."""
    import pyarrow.parquet as pq

    table = iot_table(warehouse, "append")
    t0 = time.perf_counter()
    data = pq.read_table(path).cast(table.schema().as_arrow())
    table.append(data)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "rows": data.num_rows}


def duckdb_query(sql):
    import duckdb

    con = duckdb.connect()
    t0 = time.perf_counter()
    rows = con.execute(sql).fetchall()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "rows": len(rows), "result": [list(map(str, r)) for r in rows]}


def pyiceberg_query(metadata, device, t_from, t_to):
    from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual, LessThan
    from pyiceberg.table import StaticTable

    t0 = time.perf_counter()
    props = s3_props() if metadata.startswith("s3") else {}
    table = StaticTable.from_metadata(metadata, properties=props)
    f = And(
        EqualTo("device_id", device),
        And(GreaterThanOrEqual("ts", t_from), LessThan("ts", t_to)),
    )
    scan = table.scan(row_filter=f)
    files = list(scan.plan_files())
    result = scan.to_arrow()
    values = [v for v in result.column("value").to_pylist() if v is not None]
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "rows": result.num_rows,
        "files": len(files),
        "bytes": sum(t.file.file_size_in_bytes for t in files),
        "result": [str(result.num_rows), str(sum(values) / len(values)) if values else "NULL"],
    }


def main():
    cmd = sys.argv[1]
    if cmd == "commits":
        out = commits(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif cmd == "append":
        out = append(sys.argv[2], sys.argv[3])
    elif cmd == "duckdb":
        out = duckdb_query(sys.argv[2])
    elif cmd == "pyiceberg":
        out = pyiceberg_query(*sys.argv[2:6])
    else:
        raise SystemExit(f"unknown command {cmd}")
    print(json.dumps(out))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # one clear line for the harness to show
        print(f"bench_peers.py: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
