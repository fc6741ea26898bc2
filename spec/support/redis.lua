-- Real redis-servers for the fleet specs: 127.0.0.1, a free port, no
-- persistence, daemonized with their pid and log files in a spec's folder.
--   local redis = require "support.redis"
--   local port = redis.start(dir, "name")        -- redis.start(dir, "name", port, "--requirepass x")
--   redis.stop(dir, "name")
local socket = require "socket"
local sh = require("support.fixture").sh

local redis = {}

--- A TCP port on 127.0.0.1 that nothing listens on right now.
function redis.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

--- Starts redis-server `name` (files dir/name.pid and dir/name.log) on `port`
-- (a free one when nil) with `extra` arguments; returns its port.
function redis.start(dir, name, port, extra)
  port = port or redis.free_port()
  local _, code = sh(("redis-server --bind 127.0.0.1 --port %d --dir %s --save '' --appendonly no "
    .. "--daemonize yes --pidfile %s/%s.pid --logfile %s/%s.log %s")
    :format(port, dir, dir, name, dir, name, extra or ""))
  assert(code == 0, "redis-server " .. name .. " did not start (see " .. dir .. "/" .. name .. ".log)")
  return port
end

--- Stops redis-server `name` and waits (up to 5 s) until its process has ended.
function redis.stop(dir, name)
  sh(("kill $(cat %s/%s.pid) 2>/dev/null; for _ in $(seq 50); do kill -0 $(cat %s/%s.pid) 2>/dev/null || break; "
    .. "sleep 0.1; done"):format(dir, name, dir, name))
end

return redis
