#!/usr/bin/env bash
# nginx (lua-nginx-module, LuaJIT) with lua-keyfactor in a background timer:
# enrolls a certificate in the sandbox, starts nginx, and curls /keyfactor,
# which returns what the timer read from the sandbox.
#
#   bash examples/openresty/demo.sh    (needs nginx, libnginx-mod-http-lua, luajit)
set -euo pipefail

source "$(dirname "$0")/../demo-lib.sh"
demo_init luajit nginx

start_sandbox
# Started as root, nginx runs its workers as "nobody": they must be able to
# read the CA file (the sandbox keeps it in a private directory).
chmod 755 "$TMP"
install -m 644 "$KEYFACTOR_CA_CERT" "$TMP/ca.pem"
export KEYFACTOR_CA_CERT=$TMP/ca.pem
export KF_WATCH_CN=shop.example.com KF_WATCH_INTERVAL=60

# A certificate for the timer to find, enrolled with the same LuaJIT build.
luajit -e '
  local kf = require("keyfactor").from_env()
  local r = assert(kf:enroll { Template = "WebServer", Subject = "CN=" .. os.getenv("KF_WATCH_CN"),
                               format = "STORE" })
  local c = r.CertificateInformation
  print(("enrolled certificate %d serial %s"):format(c.KeyfactorId, c.SerialNumber))
  kf:close()' | tee "$TMP/enrolled"

PORT=$(free_port)
mkdir -p "$TMP/tmp"
sed -e "s|@ROOT@|$ROOT|g" -e "s|@PORT@|$PORT|g" examples/openresty/nginx.conf >"$TMP/nginx.conf"
nginx -p "$TMP" -c "$TMP/nginx.conf" -e "$TMP/error.log" &
NGINX_PID=$!
DEMO_PIDS+=("$NGINX_PID")

BODY=
for _ in $(seq 50); do                                      # at most 10 s
  BODY=$(curl -s "http://127.0.0.1:$PORT/keyfactor" || true)
  case $BODY in *'"serial"'*|*'"error"'*) break ;; esac
  sleep 0.2
done
echo "== GET http://127.0.0.1:$PORT/keyfactor"
echo "$BODY"
echo "== nginx error.log (keyfactor lines)"
grep -E 'keyfactor|emerg|\[error\]' "$TMP/error.log" | sed 's/^[0-9/]* [0-9:]* //' || true

SERIAL=$(sed -n 's/.* serial //p' "$TMP/enrolled")
case $BODY in
  *"\"serial\":\"$SERIAL\""*) echo "RESULT: nginx served certificate data read from the sandbox (serial $SERIAL)" ;;
  *) echo "RESULT: no certificate data from the sandbox"; exit 1 ;;
esac
