"""Answer a fixed set of fleet questions with pyiceberg + pyarrow, for comparison with Floe's SQL.

Usage: python tests/interop/query_table.py METADATA_LOCATION DAY1_ISO8601

Each question is a pyiceberg row filter (so pyiceberg's own pruning and reader run) and an
aggregate computed in Python over the rows it returns. Prints one JSON object, question name
-> answer; the Rust test asks Floe the same questions in SQL. For s3:// locations the S3
settings come from the standard AWS_* variables and AWS_ENDPOINT_URL.
"""

import json
import math
import os
import sys
from datetime import datetime, timedelta, timezone

from pyiceberg.expressions import (
    AlwaysTrue,
    And,
    EqualTo,
    GreaterThan,
    GreaterThanOrEqual,
    IsNull,
    LessThan,
    LessThanOrEqual,
    Or,
)
from pyiceberg.table import StaticTable


def open_table(location):
    props = {}
    if location.startswith("s3"):
        env = os.environ
        props = {
            "s3.endpoint": env.get("AWS_ENDPOINT_URL"),
            "s3.access-key-id": env.get("AWS_ACCESS_KEY_ID"),
            "s3.secret-access-key": env.get("AWS_SECRET_ACCESS_KEY"),
            "s3.region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        }
        props = {k: v for k, v in props.items() if v}
    return StaticTable.from_metadata(location, properties=props)


def iso(ts):
    # pyiceberg 0.12 rejects a trailing "Z": always the "+00:00" form.
    return ts.astimezone(timezone.utc).isoformat()


def rows(table, row_filter):
    return table.scan(row_filter=row_filter).to_arrow().to_pylist()


def stats(rs):
    values = [r["value"] for r in rs if r["value"] is not None and not math.isnan(r["value"])]
    return {
        "n": len(rs),
        "sum": sum(values),
        "min": min(values) if values else None,
        "max": max(values) if values else None,
    }


def main() -> int:
    table = open_table(sys.argv[1])
    day1 = datetime.fromisoformat(sys.argv[2].replace("Z", "+00:00"))
    answers = {}

    answers["all"] = stats(rows(table, AlwaysTrue()))

    answers["power_since_day1"] = stats(
        rows(table, And(EqualTo("metric", "power_kw"), GreaterThanOrEqual("ts", iso(day1))))
    )

    early = rows(
        table,
        And(EqualTo("device_id", "dev-2"), LessThan("ts", iso(day1 + timedelta(hours=6)))),
    )
    answers["dev2_early"] = stats(early)

    answers["value_band_or_null"] = {
        "n": len(
            rows(
                table,
                Or(
                    And(GreaterThanOrEqual("value", 10.0), LessThanOrEqual("value", 20.0)),
                    IsNull("value"),
                ),
            )
        )
    }

    by_metric = {}
    for r in rows(table, GreaterThan("value", 5.0)):
        m = r["metric"]
        acc = by_metric.setdefault(m, {"n": 0, "sum": 0.0})
        acc["n"] += 1
        acc["sum"] += r["value"]
    answers["by_metric_over_5"] = [
        {"metric": m, "n": v["n"], "sum": v["sum"]} for m, v in sorted(by_metric.items())
    ]

    print(json.dumps(answers))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # one clear line for the Rust test to show
        print(f"query_table.py: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
