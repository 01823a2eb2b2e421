#!/usr/bin/env bash
# Contention benchmark (figures for RELIABILITY.md, not a test): WRITERS processes each run
# APPENDS `floe append` commits, one at a time, against ONE table; then the table is
# verified (snapshots = acknowledged appends, each commit id once, rows exact, versions
# gap-free via `floe check`) and latency / attempts are summarised.
#   scripts/contention.sh [WAREHOUSE_URL] [WRITERS] [APPENDS]
# e.g. scripts/contention.sh /tmp/contention 8 50
#      eval "$(scripts/localstack.sh start)"; scripts/contention.sh s3://floe-test/contention 8 50
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WH="${1:-/tmp/floe-contention-$$}"
WRITERS="${2:-8}"
APPENDS="${3:-50}"
FLOE="${FLOE_BIN:-$REPO/target/release/floe}"
[ -x "$FLOE" ] || FLOE="$REPO/target/debug/floe"
[ -x "$FLOE" ] || { echo "build floe first: cargo build --release -p floe-cli" >&2; exit 1; }
TABLE="bench.contention_$(date +%s)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

python3 - "$WORK/in.csv" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("device_id,ts,metric,value\n")
    for i in range(1000):
        f.write(f"dev,2026-01-01T{i // 60 % 24:02d}:{i % 60:02d}:00Z,power_kw,{i * 0.1:.1f}\n")
PY
"$FLOE" --warehouse "$WH" create "$TABLE" >/dev/null
echo "floe: $FLOE ($(basename "$(dirname "$FLOE")") build); warehouse $WH; $WRITERS writers x $APPENDS appends of 1000 rows" >&2
start=$(date +%s.%N)
for w in $(seq 1 "$WRITERS"); do
  (
    for a in $(seq 1 "$APPENDS"); do
      t0=$(date +%s%N)
      if out=$("$FLOE" --warehouse "$WH" append "$TABLE" "$WORK/in.csv" --json --commit-id "w$w-a$a" 2>>"$WORK/err.$w"); then
        t1=$(date +%s%N)
        echo "$out" | python3 -c "import json,sys; d=json.load(sys.stdin); print(d['commit_id'], d['attempts'], ($t1-$t0)/1e6)"
      else
        echo "FAILED w$w-a$a" ; cat "$WORK/err.$w" >&2
      fi
    done > "$WORK/out.$w"
  ) &
done
wait
end=$(date +%s.%N)
cat "$WORK"/out.* > "$WORK/all"
"$FLOE" --warehouse "$WH" snapshots "$TABLE" --json > "$WORK/snaps.json"
"$FLOE" --warehouse "$WH" check "$TABLE" 2>"$WORK/check.err" >"$WORK/check.out" && check=ok || check="FAILED: $(cat "$WORK/check.out")"
python3 - "$WORK/all" "$WORK/snaps.json" "$start" "$end" "$WRITERS" "$APPENDS" "$check" <<'PY'
import json, statistics, sys
lines = [l.split() for l in open(sys.argv[1]) if l.strip()]
failed = [l for l in lines if l[0] == "FAILED"]
ok = [l for l in lines if l[0] != "FAILED"]
snaps = json.load(open(sys.argv[2]))
ids = [s["commit_id"] for s in snaps]
acked = [l[0] for l in ok]
lat = sorted(float(l[2]) for l in ok)
att = [int(l[1]) for l in ok]
wall = float(sys.argv[4]) - float(sys.argv[3])
pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")
print(f"writers x appends        {sys.argv[5]} x {sys.argv[6]}")
print(f"acknowledged / failed    {len(acked)} / {len(failed)}")
print(f"snapshots in table       {len(snaps)}")
print(f"each acked id once       {all(ids.count(a) == 1 for a in acked) and len(set(ids)) == len(ids)}")
print(f"rows exact               {snaps[-1]['total_records'] == 1000 * len(snaps) if snaps else False}")
print(f"floe check               {sys.argv[7]}")
print(f"commits/s (wall)         {len(acked) / wall:.1f}")
print(f"latency p50 / p99 (ms)   {pct(0.5):.0f} / {pct(0.99):.0f}  (process start included)")
print(f"attempts mean / max      {statistics.mean(att):.2f} / {max(att)}")
PY
