"""Append to a table through pyiceberg's SqlCatalog, retrying lost races, as a third-party
writer sharing a catalog with Floe.

Usage: python tests/interop/sql_writer.py DB_FILE CATALOG_NAME NS.TABLE COMMITS ROWS

Each commit appends ROWS rows for device "pyiceberg". Prints one JSON object:
{"committed": n, "retries": r}.
"""

import json
import os
import sys
from datetime import datetime, timedelta, timezone

import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitFailedException


def main() -> int:
    db, name, ident, commits, rows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    catalog = SqlCatalog(name, uri=f"sqlite:///{os.path.abspath(db)}")
    schema = pa.schema(
        [
            pa.field("device_id", pa.string()),
            pa.field("ts", pa.timestamp("us", tz="UTC")),
            pa.field("metric", pa.string()),
            pa.field("value", pa.float64()),
        ]
    )
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    retries = 0
    for c in range(commits):
        data = pa.Table.from_pydict(
            {
                "device_id": ["pyiceberg"] * rows,
                "ts": [start + timedelta(minutes=c * rows + i) for i in range(rows)],
                "metric": ["power_kw"] * rows,
                "value": [float(i) for i in range(rows)],
            },
            schema=schema,
        )
        for _ in range(100):
            try:
                catalog.load_table(ident).append(data)
                break
            except CommitFailedException:
                retries += 1
        else:
            raise RuntimeError(f"commit {c} lost 100 races")
    print(json.dumps({"committed": commits, "retries": retries}))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:
        print(f"sql_writer.py: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
