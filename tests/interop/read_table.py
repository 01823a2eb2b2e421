"""Read an Iceberg table with pyiceberg from its metadata file and report what it sees.

Usage: python tests/interop/read_table.py METADATA_LOCATION [--ts-from ISO8601] [--device ID]
                                          [--column NAME]

Prints one JSON object: full-scan row count and sum of `value`, the schema as
[field_id, name, type, required], snapshot facts, and the files planned with and without
the row filter (to show partition and statistics pruning); with --column, that column's
non-null count and sum in the full scan. For s3:// locations the S3
settings come from the standard AWS_* variables and AWS_ENDPOINT_URL.
"""

import argparse
import json
import os
import sys
from datetime import datetime, timezone

from pyiceberg.expressions import AlwaysTrue, And, EqualTo, GreaterThanOrEqual
from pyiceberg.table import StaticTable


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("metadata_location")
    parser.add_argument("--ts-from")
    parser.add_argument("--device")
    parser.add_argument("--column")
    args = parser.parse_args()

    props = {}
    if args.metadata_location.startswith("s3"):
        env = os.environ
        props = {
            "s3.endpoint": env.get("AWS_ENDPOINT_URL"),
            "s3.access-key-id": env.get("AWS_ACCESS_KEY_ID"),
            "s3.secret-access-key": env.get("AWS_SECRET_ACCESS_KEY"),
            "s3.region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        }
        # Unset variables are left out, so pyiceberg falls back to its own defaults.
        props = {k: v for k, v in props.items() if v}
    table = StaticTable.from_metadata(args.metadata_location, properties=props)

    row_filter = AlwaysTrue()
    if args.ts_from:
        # pyiceberg 0.12 rejects a trailing "Z" ("must be ISO-8601"): normalise through
        # datetime (naive means UTC) to the "+00:00" form it accepts.
        ts = datetime.fromisoformat(args.ts_from)
        ts = ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)
        row_filter = And(row_filter, GreaterThanOrEqual("ts", ts.isoformat()))
    if args.device:
        row_filter = And(row_filter, EqualTo("device_id", args.device))

    full = table.scan().to_arrow()
    filtered_scan = table.scan(row_filter=row_filter)
    names = set(full.column_names)
    column = {}
    if args.column:
        values = [v for v in full.column(args.column).to_pylist() if v is not None]
        column = {"column_non_null": len(values), "column_sum": sum(values) if values else None}
    print(
        json.dumps(
            {
                "row_count": full.num_rows,
                "sum_value": sum(v for v in full.column("value").to_pylist() if v is not None)
                if "value" in names
                else None,
                "schema": [[f.field_id, f.name, str(f.field_type), f.required] for f in table.schema().fields],
                "current_snapshot_id": table.metadata.current_snapshot_id,
                "snapshot_count": len(table.metadata.snapshots),
                "files_total": len(list(table.scan().plan_files())),
                "files_filtered": len(list(filtered_scan.plan_files())),
                "rows_filtered": filtered_scan.to_arrow().num_rows,
                **column,
            }
        )
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # one clear line for the Rust test to show
        print(f"read_table.py: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
