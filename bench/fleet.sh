#!/usr/bin/env bash
# Fleet renewal throughput: certificates renewed per second by 1, 2 and 4
# worker processes (bin/keyfactor-fleet work) sharing one Redis queue,
# against the sandbox (job delay 0.05 s, as in the specs).  Writes the
# "Fleet renewal" section of RESULTS.md (the rest of the file is kept).
#
#   bash bench/fleet.sh [--smoke] [RESULTS.md]     (default bench/RESULTS.md)
set -euo pipefail

SMOKE=0
[ "${1:-}" = "--smoke" ] && { SMOKE=1; shift; }
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$BENCH_DIR/RESULTS.md}
source "$BENCH_DIR/../examples/demo-lib.sh"
demo_init lua5.4 bench-fleet
N=$([ $SMOKE -eq 1 ] && echo 16 || echo 160)
CONCURRENCY=8 SETTLE=0.5

SANDBOX_JOB_DELAY=0.05 start_sandbox >&2
start_redis >&2

ROWS=""
for W in 1 2 4; do
  export KF_FLEET_PREFIX=bench$W
  lua5.4 examples/redis/enroll_many.lua "$N" "bench$W" >/dev/null
  bin/keyfactor-fleet schedule --days 400 --query "IssuedCN -contains \"bench$W-\"" >&2
  T0=$(date +%s.%N)
  PIDS=()
  for i in $(seq "$W"); do
    bin/keyfactor-fleet work --name "b$W-$i" --concurrency $CONCURRENCY --batch $((2 * CONCURRENCY)) \
      --settle $SETTLE --lease 60 --idle-exit 0.5 --max-seconds 300 --quiet >"$TMP/b$W-$i.out" 2>&1 &
    PIDS+=($!)
  done
  until [ "$(redis-cli -p "$KF_REDIS_PORT" hget "bench$W:stats" renewed)" = "$N" ]; do sleep 0.02; done
  T1=$(date +%s.%N)
  for p in "${PIDS[@]}"; do wait "$p"; done
  DEFERRED=$(redis-cli -p "$KF_REDIS_PORT" hget "bench$W:stats" deferred)
  ROW=$(awk -v w="$W" -v n="$N" -v a="$T0" -v b="$T1" -v d="${DEFERRED:-0}" \
    'BEGIN { printf "| %d | %d | %.1f | %.1f | %d |", w, n, b - a, n / (b - a), d }')
  echo "$ROW" >&2
  ROWS="$ROWS${ROWS:+$'\n'}$ROW"
done

SECTION=$(cat <<MD
<!-- fleet: written by bench/fleet.sh -->
## 7. Fleet renewal: certificates renewed per second

\`bash bench/fleet.sh\`: $N certificates due, renewed by W \`bin/keyfactor-fleet work\` processes sharing
one Redis queue (concurrency $CONCURRENCY each, settle $SETTLE s), against the sandbox (job delay 0.05 s),
all on this machine; from the workers' start to the last renewal recorded.  Each renewal is seven
Keyfactor calls (read, highest id, claim, read back after the settle wait, look for a newer
certificate, renew, mark); the settle wait dominates one job's time, so throughput grows with
workers x concurrency until the sandbox (one Lua process making the certificates) is the limit.
"deferred": claims whose read-to-write took longer than the settle wait on the loaded machine;
each waits out the lease (60 s here) before it is renewed, and shows in the seconds.

| workers | certificates | seconds | renewed/s | deferred |
|---|---|---|---|---|
$ROWS
<!-- /fleet -->
MD
)
if [ -f "$OUT" ] && grep -q '<!-- fleet: ' "$OUT"; then
  awk '/<!-- fleet: /{skip=1} !skip{print} /<!-- \/fleet -->/{skip=0}' "$OUT" >"$TMP/results.md"
else
  cp "$OUT" "$TMP/results.md" 2>/dev/null || : >"$TMP/results.md"
fi
{ cat "$TMP/results.md"; echo; echo "$SECTION"; } >"$OUT"
echo "bench/fleet.sh: wrote the fleet section of $OUT" >&2
