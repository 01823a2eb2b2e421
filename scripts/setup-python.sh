#!/usr/bin/env bash
# Creates (once) the venv with the third-party reader the interop tests run: pyiceberg 0.12
# with pyarrow, the SQLite catalog, pyiceberg-core (needed for day()/hour() transforms on
# write) and s3fs; psycopg (with its own libpq) for the Postgres-wire tests. A stamp
# file makes a rerun instant. Prints the venv's python last.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FLOE_PY_VENV:-$REPO/.venv/interop}"
REQ='pyiceberg[pyarrow,sql-sqlite,pyiceberg-core,s3fs]==0.12.0 psycopg[binary]==3.2.10'
STAMP="$VENV/.floe-stamp"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$REQ" ]; then
  echo "installing $REQ into $VENV (about a minute) ..." >&2
  python3 -m venv "$VENV" >&2 || { echo "error: python3 -m venv could not create $VENV" >&2; exit 1; }
  # shellcheck disable=SC2086 # REQ holds several requirements
  "$VENV/bin/pip" install --disable-pip-version-check -q $REQ >&2 \
    || { echo "error: pip could not install $REQ into $VENV" >&2; exit 1; }
  printf '%s' "$REQ" > "$STAMP"
fi
echo "$VENV/bin/python"
