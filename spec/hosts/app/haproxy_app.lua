-- The Keyfactor calls of spec/hosts and bench/hosts.lua inside HAProxy
-- (haproxy.cfg.in).  KF_MODE=attached (keyfactor.haproxy) or blocking.
--   /call?id=N       a Lua service: kf:certificate(N)
--   /parallel?id=N&n=M  a Lua service: kf:parallel of M such calls
--   /spawn?id=N      an action registering a task that makes the call;
--   /result          the last task's answer ("pending" before)
--   /fetch?id=N      a sample fetch making the call (HAProxy cannot yield there)
-- Answers: "id=<Id> ms=<elapsed> pid=<pid>" or "error=<err>".
local keyfactor = require "keyfactor"
local kf_haproxy = require "keyfactor.haproxy"     -- before the core.register_* below
local clock = require("keyfactor.core").now

local kf = keyfactor.new { url = os.getenv("KF_URL"), ca_file = os.getenv("KF_CA"),
  username = os.getenv("KF_USER"), password = os.getenv("KF_PASS"), retries = 0, timeout = 30 }
if os.getenv("KF_MODE") ~= "blocking" then kf_haproxy.attach(kf) end

local PID = io.open("/proc/self/stat"):read("l"):match("^(%d+)")

local function call(id)
  local t0 = clock()
  local cert, err = kf:certificate(id)
  if not cert then return "error=" .. tostring(err) end
  return ("id=%s ms=%.3f pid=%s"):format(tostring(cert.Id), (clock() - t0) * 1000, PID)
end

local function reply(applet, body)
  applet:set_status(200)
  applet:add_header("content-type", "text/plain")
  applet:add_header("content-length", tostring(#body))
  applet:start_response()
  applet:send(body)
end

local function param(qs, name) return tonumber((qs or ""):match(name .. "=(%d+)")) end

core.register_service("kf_lua", "http", function(applet) reply(applet, "lua") end)

core.register_service("kf_call", "http", function(applet)
  reply(applet, call(param(applet.qs, "id")))
end)

core.register_service("kf_parallel", "http", function(applet)
  local id, n = param(applet.qs, "id"), param(applet.qs, "n") or 10
  local fns = {}
  for i = 1, n do fns[i] = function(k) return k:certificate(id) end end
  local t0 = clock()
  local values, errs = kf:parallel(fns, { concurrency = param(applet.qs, "c") or 16 })
  local ok = 0
  for i = 1, n do
    if not errs[i] and type(values[i]) == "table" and values[i].Id == id then ok = ok + 1 end
  end
  reply(applet, ("ok=%d of=%d ms=%.3f"):format(ok, n, (clock() - t0) * 1000))
end)

local result = "pending"
core.register_action("kf_spawn", { "http-req" }, function(txn)
  local id = tonumber(txn.sf:url_param("id"))
  result = "pending"
  core.register_task(function() result = call(id) end)
end, 0)
core.register_service("kf_result", "http", function(applet) reply(applet, result) end)

core.register_fetches("kf_id", function(txn) return call(tonumber(txn.sf:url_param("id"))) end)
