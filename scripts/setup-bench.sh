#!/usr/bin/env bash
# Creates (once) the venv the benchmark's peers run in: pyiceberg 0.12 (SQLite catalog,
# pyarrow), DuckDB (with pytz, for its timestamptz results) and psycopg, from PyPI. A stamp file makes a rerun instant. Prints the venv's
# python last.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FLOE_BENCH_VENV:-$REPO/.venv/bench}"
REQ=('pyiceberg[pyarrow,sql-sqlite,pyiceberg-core,s3fs]==0.12.0' 'duckdb==1.4.4' 'psycopg[binary]==3.2.10' 'pytz==2025.2')
STAMP="$VENV/.floe-stamp"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "${REQ[*]}" ]; then
  echo "installing ${REQ[*]} into $VENV (about a minute) ..." >&2
  python3 -m venv "$VENV" >&2 || { echo "error: python3 -m venv could not create $VENV" >&2; exit 1; }
  "$VENV/bin/pip" install --disable-pip-version-check -q "${REQ[@]}" >&2 \
    || { echo "error: pip could not install ${REQ[*]} into $VENV" >&2; exit 1; }
  printf '%s' "${REQ[*]}" > "$STAMP"
fi
echo "$VENV/bin/python"
