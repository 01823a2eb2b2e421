#!/usr/bin/env bash
# LocalStack S3 on 127.0.0.1:4566 (or $FLOE_LOCALSTACK_PORT) for the tests: a real S3 API
# that honours conditional writes under races (If-None-Match / If-Match). Installed from
# PyPI into its own venv; state is in memory only (nothing survives a restart).
#   scripts/localstack.sh start   # idempotent; prints `export …` lines for eval
#   scripts/localstack.sh stop    # stops the server this script started (by PID)
#   scripts/localstack.sh status  # exit 0 if S3 answers
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FLOE_LOCALSTACK_VENV:-$REPO/.venv/localstack}"
PIDFILE="$REPO/.venv/localstack.pid"
LOG="$REPO/.venv/localstack.log"
BUCKET="${FLOE_S3_BUCKET:-floe-test}"
# Port overridable so a second checkout (or a test of this script) can run beside a server in use.
PORT="${FLOE_LOCALSTACK_PORT:-4566}"
ENDPOINT="http://127.0.0.1:$PORT"
# Newer LocalStack releases fail on Python 3.11; these pins are checked to work together.
REQ=("localstack-core[runtime]==4.9.2" "cbor2<6" "pyopenssl<25" "cryptography<45" "service_identity")

healthy() {
  curl -sf "$ENDPOINT/_localstack/health" 2>/dev/null | grep -Eq '"s3": *"(running|available)"'
}

install() {
  local stamp="$VENV/.floe-stamp"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "${REQ[*]}" ]; then return; fi
  echo "installing LocalStack into $VENV (about a minute) ..." >&2
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV" >&2 || { echo "error: python3 -m venv could not create $VENV" >&2; exit 1; }
  "$VENV/bin/pip" install --disable-pip-version-check -q "${REQ[@]}" >&2 \
    || { echo "error: pip could not install ${REQ[*]} into $VENV" >&2; exit 1; }
  printf '%s' "${REQ[*]}" > "$stamp"
}

start() {
  install
  if ! healthy; then
    echo "starting LocalStack S3 on $ENDPOINT (log: $LOG) ..." >&2
    mkdir -p "$(dirname "$PIDFILE")"
    # setsid: its own process group, so stop can end the server and its children.
    # Note: LocalStack's default (twisted) gateway uses only the port of GATEWAY_LISTEN and
    # binds 0.0.0.0; its S3 race behaviour was checked with that server, so it is kept.
    GATEWAY_LISTEN="127.0.0.1:$PORT" SERVICES=s3 EAGER_SERVICE_LOADING=1 DNS_ADDRESS=0 \
      SKIP_SSL_CERT_DOWNLOAD=1 DISABLE_EVENTS=1 \
      setsid "$VENV/bin/python" -m localstack.runtime.main >"$LOG" 2>&1 < /dev/null &
    echo $! > "$PIDFILE"
    for _ in $(seq 1 240); do
      healthy && break
      if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
        echo "error: LocalStack exited during start; last lines of $LOG:" >&2
        tail -n 20 "$LOG" >&2
        exit 1
      fi
      sleep 0.5
    done
    healthy || { echo "error: LocalStack S3 not healthy after 120 s (see $LOG)" >&2; exit 1; }
  fi
  # Create the bucket (200 when new, 409 when it exists: both fine).
  code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$ENDPOINT/$BUCKET")
  case "$code" in 200|409) ;; *) echo "error: creating bucket $BUCKET returned HTTP $code" >&2; exit 1;; esac
  cat <<ENV
export AWS_ENDPOINT_URL=$ENDPOINT
export AWS_ALLOW_HTTP=true
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=us-east-1
export FLOE_TEST_S3_URL=s3://$BUCKET
ENV
}

stop() {
  [ -f "$PIDFILE" ] || return 0
  pid=$(cat "$PIDFILE")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$PIDFILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) healthy ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
