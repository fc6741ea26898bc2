# Shared by the embedding demos (examples/*/demo.sh); sourced, not run.
#
#   demo_init RUNTIME NAME   build the C core for RUNTIME (lua5.3, luajit, ...),
#                            make $TMP, stop everything in $DEMO_PIDS on exit
#   free_port                a free TCP port on 127.0.0.1
#   start_sandbox            start bin/keyfactor-sandbox (job delay
#                            $SANDBOX_JOB_DELAY, default 0.2 s); sets $URL and the
#                            KEYFACTOR_* variables for keyfactor.from_env()
#                            ($KEYFACTOR_CA_CERT is the sandbox's CA file)
#   start_redis              start redis-server on 127.0.0.1 (free port, no
#                            persistence, files in $TMP); sets KF_REDIS_HOST/PORT

DEMO_PIDS=()

demo_cleanup() {
  local rc=$? pid
  for pid in "${DEMO_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
  exit "$rc"
}

demo_init() {
  DEMO_LUA=$1
  ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  cd "$ROOT"
  make -s build LUA="$DEMO_LUA" >/dev/null
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/kf-$2.XXXXXX")
  trap demo_cleanup EXIT
  export LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;" LUA_CPATH="$ROOT/build/$DEMO_LUA/?.so;;"
}

free_port() {
  "$DEMO_LUA" -e 'local s = assert(require("socket").bind("127.0.0.1", 0)); local _, port = s:getsockname(); print(port); s:close()'
}

start_sandbox() {
  bin/keyfactor-sandbox --port 0 --job-delay "${SANDBOX_JOB_DELAY:-0.2}" >"$TMP/sandbox.out" 2>"$TMP/sandbox.log" &
  DEMO_PIDS+=($!)
  for _ in $(seq 100); do
    [ "$(wc -l <"$TMP/sandbox.out")" -ge 2 ] && break
    sleep 0.1
  done
  URL=$(sed -n 1p "$TMP/sandbox.out")
  [ -n "$URL" ] || { echo "sandbox did not start:" >&2; cat "$TMP/sandbox.log" >&2; exit 1; }
  echo "sandbox: $URL"
  export KEYFACTOR_HOSTNAME=${URL%/KeyfactorAPI} KEYFACTOR_API_PATH=KeyfactorAPI
  export KEYFACTOR_USERNAME='SANDBOX\admin' KEYFACTOR_PASSWORD=sandbox-admin
  KEYFACTOR_CA_CERT=$(sed -n 's/^ca: //p' "$TMP/sandbox.out")
  export KEYFACTOR_CA_CERT
}

start_redis() {
  export KF_REDIS_HOST=127.0.0.1 KF_REDIS_PORT=$(free_port)
  redis-server --bind 127.0.0.1 --port "$KF_REDIS_PORT" --dir "$TMP" --save '' --appendonly no \
    --daemonize no --logfile "$TMP/redis.log" &
  DEMO_PIDS+=($!)
  for _ in $(seq 50); do
    redis-cli -h 127.0.0.1 -p "$KF_REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  echo "redis: 127.0.0.1:$KF_REDIS_PORT ($(redis-cli -h 127.0.0.1 -p "$KF_REDIS_PORT" ping))"
}
