#!/usr/bin/env bash
# Two workers try to renew the same certificate at the same moment; the lock
# in Redis lets exactly one of them do it.
#
#   bash examples/redis/demo.sh    (needs redis-server, lua5.3, lua-redis)
set -euo pipefail

source "$(dirname "$0")/../demo-lib.sh"
demo_init lua5.3 redis

start_sandbox

start_redis
# Why the client cannot run inside Redis: its scripts get no module loader.
echo "inside Redis EVAL: $(redis-cli -h 127.0.0.1 -p "$KF_REDIS_PORT" EVAL "local r = {_VERSION}
  for _, n in ipairs({'require', 'package', 'io', 'os', 'dofile'}) do r[#r + 1] = n .. '=' .. type(rawget(_G, n)) end
  return table.concat(r, ' ')" 0)"

# The certificate both workers want to renew.
CERT_ID=$(lua5.3 -e '
  local kf = require("keyfactor").from_env()
  local r = assert(kf:enroll { Template = "WebServer", Subject = "CN=api.example.com", format = "STORE" })
  print(r.CertificateInformation.KeyfactorId)
  kf:close()')
echo "certificate $CERT_ID enrolled"

# Renewals take a second here, so the two workers overlap for sure.
curl -sf --cacert "$KEYFACTOR_CA_CERT" -u "$KEYFACTOR_USERNAME:$KEYFACTOR_PASSWORD" \
  -H 'Content-Type: application/json' -d "{\"path\": \"/${URL#https://*/}/Enrollment/Renew\", \"delay_ms\": 1000}" \
  "$KEYFACTOR_HOSTNAME/_sandbox/faults" >/dev/null

echo "== two workers at once"
lua5.3 examples/redis/renew_with_lock.lua worker-a "$CERT_ID" >"$TMP/a.out" 2>&1 &
A=$!
lua5.3 examples/redis/renew_with_lock.lua worker-b "$CERT_ID" >"$TMP/b.out" 2>&1 &
B=$!
wait $A || true
wait $B || true
cat "$TMP/a.out" "$TMP/b.out"

echo "== a third worker, later"
lua5.3 examples/redis/renew_with_lock.lua worker-c "$CERT_ID"

echo "== redis state"
echo "lock left behind: $(redis-cli -h 127.0.0.1 -p "$KF_REDIS_PORT" exists "kf:lock:certificate:$CERT_ID")"

RENEWED=$(cat "$TMP/a.out" "$TMP/b.out" | grep -c ': RENEWED ' || true)
echo "RESULT: $RENEWED of 2 concurrent workers renewed certificate $CERT_ID"
[ "$RENEWED" = 1 ]
