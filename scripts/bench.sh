#!/usr/bin/env bash
# The benchmark command: Floe beside its peers on one generated IoT fleet, in one run.
#   scripts/bench.sh [--scale small|medium|large] [--repeats N] [other `floe-bench fleet` flags]
# Creates the peers' venv (pyiceberg 0.12, DuckDB; from PyPI), starts LocalStack S3 for the
# S3 cases, builds a release `floe` (20 to 40 minutes the first time on 2 cores), the
# gateway build and the harness `floe-bench`, and prints medians and Floe/peer ratios. The
# generated fleet is kept in target/bench-fleet.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

FLOE_BENCH_PYTHON="$(scripts/setup-bench.sh | tail -n 1)"
export FLOE_BENCH_PYTHON

started_here=0
if ! scripts/localstack.sh status >/dev/null 2>&1; then started_here=1; fi
eval "$(scripts/localstack.sh start)"
if [ "$started_here" = 1 ]; then trap 'scripts/localstack.sh stop >&2 || true' EXIT; fi

# The gateway build (no query engine, the size-optimized `gateway` profile; about 18
# minutes the first time) beside the full one: the memory case measures both, and its size
# is the gateway's footprint on disk.
cargo build --profile gateway -p floe-cli --bin floe --no-default-features >&2
cargo build --release -p floe-cli --bin floe >&2
# Built on its own, so that the harness's dependencies cannot change the floe it measures.
cargo build --release -p floe-bench --bin floe-bench >&2
echo "binary sizes: floe $(stat -c %s target/release/floe) bytes, gateway build $(stat -c %s target/gateway/floe) bytes" >&2
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GB; $(date -u +%Y-%m-%d)" >&2
target/release/floe-bench fleet --s3 "$FLOE_TEST_S3_URL/bench" \
  --floe-bin target/release/floe --gateway-bin target/gateway/floe "$@"
# floe serve against direct commits (issue 16): REST commits/s and load latency, file and S3.
rest_dir="$(mktemp -d)"
target/release/floe-bench --warehouse "$rest_dir" rest
target/release/floe-bench --warehouse "$FLOE_TEST_S3_URL/bench-rest" rest
rm -rf "$rest_dir"
# The dashboard case (issue 18): floe serve --pg warm and cold, floe sql, DuckDB on the raw
# files; eight panels refreshed 20 times.
"$FLOE_BENCH_PYTHON" scripts/bench_dashboard.py --floe target/release/floe \
  --warehouse target/bench-dashboard
