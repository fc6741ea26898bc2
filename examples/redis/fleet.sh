#!/usr/bin/env bash
# Renewal across a fleet: 200 certificates due, four workers sharing one Redis
# queue, one of them killed with SIGKILL in the middle of its jobs.  The other
# three take its jobs over; Keyfactor's own records show each certificate
# renewed exactly once, and each renewal in its old certificate's place.
#
#   bash examples/redis/fleet.sh [COUNT]    (needs redis-server, lua-redis, lua5.4)
set -euo pipefail

source "$(dirname "$0")/../demo-lib.sh"
demo_init lua5.4 fleet
COUNT=${1:-200}

start_sandbox
start_redis
rcli() { redis-cli -h 127.0.0.1 -p "$KF_REDIS_PORT" "$@"; }

lua5.4 examples/redis/enroll_many.lua "$COUNT" >"$TMP/ids"
echo "enrolled $(wc -l <"$TMP/ids") certificates"
# Each sits in one of the three PKCS12 keystores under its own alias, as an
# inventory would have found it (a sandbox hook: these CSR enrollments have no
# key on the server to deploy): the renewal must take its place there.
mapfile -t P12 < <(bin/keyfactor stores 'CertStoreType -eq 102 AND ContainerId -eq 1' | awk '{print $2}')
n=0
while read -r id cn; do
  curl -sf --cacert "$KEYFACTOR_CA_CERT" -H 'Content-Type: application/json' \
    -d "{\"StoreId\": \"${P12[$((n % ${#P12[@]}))]}\", \"CertificateId\": $id, \"Alias\": \"$cn\"}" \
    "$KEYFACTOR_HOSTNAME/_sandbox/inventory" >/dev/null
  n=$((n + 1))
done <"$TMP/ids"
echo "placed them in ${#P12[@]} PKCS12 stores"
# The sandbox's certificates live 365 days: "due within 400 days" is all of them.
bin/keyfactor-fleet schedule --days 400
# Each renewal takes 150 ms more here, so the kill lands among running jobs.
curl -sf --cacert "$KEYFACTOR_CA_CERT" -H 'Content-Type: application/json' \
  -d "{\"method\": \"POST\", \"path\": \"/KeyfactorAPI/Enrollment/Renew\", \"delay_ms\": 150, \"times\": 100000}" \
  "$KEYFACTOR_HOSTNAME/_sandbox/faults" >/dev/null

WORK=(--concurrency 4 --batch 8 --lease 10 --settle 0.5 --reclaim-idle 2 --idle-exit 2 --max-seconds 120 --quiet)
declare -A PID
for w in w1 w2 w3 w4; do
  bin/keyfactor-fleet work --name "$w" "${WORK[@]}" >"$TMP/$w.out" 2>&1 &
  PID[$w]=$!
  DEMO_PIDS+=($!)
done
echo "4 workers started"

# Kill w2 once the fleet is well under way.
for _ in $(seq 600); do
  [ "$(rcli hget kf:fleet:stats renewed)" -ge $((COUNT / 4)) ] 2>/dev/null && break
  sleep 0.05
done
kill -KILL "${PID[w2]}"
wait "${PID[w2]}" 2>/dev/null || true
HELD=$(rcli xpending kf:fleet:jobs renewers - + 1000 w2 | grep -c -- '-' || true)
echo "killed w2 (SIGKILL) holding $HELD unacknowledged jobs; the others reclaim them after 2 s idle"

for w in w1 w3 w4; do wait "${PID[$w]}" && cat "$TMP/$w.out"; done
echo "== queue"
bin/keyfactor-fleet status
echo "XPENDING kf:fleet:jobs renewers: $(rcli xpending kf:fleet:jobs renewers | head -1)"
echo "== Keyfactor"
curl -sf --cacert "$KEYFACTOR_CA_CERT" "$KEYFACTOR_HOSTNAME/_sandbox/requests" >"$TMP/requests.json"
lua5.4 examples/redis/fleet_report.lua "$TMP/ids" "$TMP/requests.json"
