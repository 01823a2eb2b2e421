#!/usr/bin/env bash
# The test command: installs and starts what the tests need (the pyiceberg venv, LocalStack
# S3 on 127.0.0.1:4566), builds the binaries the end-to-end tests run (`floe`, `floe-bench`),
# then runs every test of the workspace against memory, local files and S3. Idempotent;
# stops the S3 server it started.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

echo "== python interop venv (pyiceberg)" >&2
FLOE_PYTHON="$(scripts/setup-python.sh | tail -n 1)"
export FLOE_PYTHON

echo "== LocalStack S3" >&2
started_here=0
if ! scripts/localstack.sh status >/dev/null 2>&1; then started_here=1; fi
eval "$(scripts/localstack.sh start)"
if [ "$started_here" = 1 ]; then trap 'scripts/localstack.sh stop >&2 || true' EXIT; fi
: "${FLOE_TEST_S3_URL:?localstack.sh did not export FLOE_TEST_S3_URL}"

echo "== build" >&2
cargo build --workspace --bins

echo "== tests" >&2
cargo test --workspace "$@"
