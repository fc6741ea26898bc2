#!/usr/bin/env bash
# HAProxy serves HTTPS with a certificate issued by the sandbox; GET /renew
# makes the Lua task (renew.lua) enroll a new one through lua-keyfactor and
# hot-swap it with the runtime API.  Prints the served serial before and
# after, and shows the HAProxy process is the same one (no reload).
#
#   bash examples/haproxy/demo.sh        (needs haproxy, socat, lua5.3, lua-luaossl)
set -euo pipefail

source "$(dirname "$0")/../demo-lib.sh"
demo_init lua5.3 haproxy

# 1. The sandbox: first line its URL, second "ca: FILE".
start_sandbox
export KF_ROOT=$ROOT KF_HAPROXY_DIR=$TMP KF_HAPROXY_PORT=$(free_port)
export KF_CERT_FILE=$TMP/site.pem KF_ADMIN_SOCKET=$TMP/admin.sock KF_CERT_CN=shop.example.com
PORT=$KF_HAPROXY_PORT

# 2. The first certificate, issued through the client (Lua 5.3 build).
LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;" LUA_CPATH="$ROOT/build/lua5.3/?.so;;" \
  lua5.3 examples/haproxy/issue.lua "$KF_CERT_FILE" "$KF_CERT_CN"

# 3. HAProxy in the foreground of a background job (-db), its log in TMP.
haproxy -f examples/haproxy/haproxy.cfg -db >"$TMP/haproxy.log" 2>&1 &
HAPROXY_PID=$!
DEMO_PIDS+=("$HAPROXY_PID")
api() { echo "$1" | socat -t 5 - "UNIX-CONNECT:$KF_ADMIN_SOCKET"; }
for _ in $(seq 50); do
  [ -S "$KF_ADMIN_SOCKET" ] && api "show info" >/dev/null 2>&1 && break
  sleep 0.1
done
api "show info" >/dev/null || { echo "haproxy did not start:" >&2; cat "$TMP/haproxy.log" >&2; exit 1; }

served() {
  openssl s_client -connect "127.0.0.1:$PORT" -servername "$KF_CERT_CN" </dev/null 2>/dev/null |
    openssl x509 -noout -serial -subject -dates
}
pid_of_haproxy() { api "show info" | sed -n 's/^Pid: //p'; }

echo "== before renewal"
served
BEFORE_SERIAL=$(served | sed -n 's/^serial=//p')
BEFORE_PID=$(pid_of_haproxy)
echo "haproxy pid: $BEFORE_PID"

echo "== GET /renew"
curl -s --cacert "$KEYFACTOR_CA_CERT" --resolve "$KF_CERT_CN:$PORT:127.0.0.1" "https://$KF_CERT_CN:$PORT/renew"
echo

AFTER_SERIAL=$BEFORE_SERIAL
for _ in $(seq 40); do                                  # at most 20 s
  AFTER_SERIAL=$(served | sed -n 's/^serial=//p')
  [ -n "$AFTER_SERIAL" ] && [ "$AFTER_SERIAL" != "$BEFORE_SERIAL" ] && break
  sleep 0.5
done

echo "== after renewal"
served
AFTER_PID=$(pid_of_haproxy)
echo "haproxy pid: $AFTER_PID"
echo "== show ssl cert $KF_CERT_FILE"
api "show ssl cert $KF_CERT_FILE" | grep -E '^(Filename|Status|Serial|notAfter|Subject|Issuer):'
echo "== haproxy log"
grep 'kf-renew' "$TMP/haproxy.log" | sed 's/^.*kf-renew/kf-renew/'

if [ "$AFTER_SERIAL" = "$BEFORE_SERIAL" ]; then
  echo "RESULT: serial unchanged ($BEFORE_SERIAL)"
  exit 1
fi
if [ "$AFTER_PID" != "$BEFORE_PID" ] || ! kill -0 "$HAPROXY_PID" 2>/dev/null; then
  echo "RESULT: haproxy restarted ($BEFORE_PID -> $AFTER_PID)"
  exit 1
fi
echo "RESULT: serial $BEFORE_SERIAL -> $AFTER_SERIAL, haproxy pid $BEFORE_PID unchanged (no reload)"
