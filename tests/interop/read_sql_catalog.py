"""Open a published Floe SQL catalog with pyiceberg's SqlCatalog and report what it sees.

Usage: python tests/interop/read_sql_catalog.py DB_FILE CATALOG_NAME NAMESPACE

Prints one JSON object: the namespaces, the namespace's properties, its tables, and for
each table the row count and sum of `value` of a full scan.
"""

import json
import os
import sys

from pyiceberg.catalog.sql import SqlCatalog


def main() -> int:
    db, name, namespace = sys.argv[1], sys.argv[2], sys.argv[3]
    catalog = SqlCatalog(name, uri=f"sqlite:///{os.path.abspath(db)}")
    tables = {}
    for ident in catalog.list_tables(namespace):
        table = catalog.load_table(ident)
        data = table.scan().to_arrow()
        tables[".".join(ident)] = {
            "rows": data.num_rows,
            "sum_value": sum(v for v in data.column("value").to_pylist() if v is not None),
            "metadata_location": table.metadata_location,
        }
    props = catalog.load_namespace_properties(namespace)
    print(
        json.dumps(
            {
                "namespaces": sorted(".".join(n) for n in catalog.list_namespaces()),
                "properties": {k: v for k, v in props.items()},
                "tables": tables,
            }
        )
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:
        print(f"read_sql_catalog.py: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
