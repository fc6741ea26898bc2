-- The Keyfactor calls of spec/hosts and bench/hosts.lua inside HAProxy
-- (haproxy.cfg.in).  KF_MODE=attached (keyfactor.haproxy) or blocking.
--   /call?id=N        a Lua service: kf:certificate(N)
--   /parallel?id=N&n=M[&c=C][&slow=S]  a Lua service: kf:parallel of M such
--                     calls (at concurrency C; the first for certificate S)
--   /pages?n=N        a Lua service: kf:certificates, one per page, N items
--   /close?id=N       a Lua service: kf:certificate(N) on its own client,
--                     which a task closes 0.3 s later
--   /spawn?id=N       an action registering a task that makes the call;
--   /result           the last task's answer ("pending" before)
--   /fetch?id=N       a sample fetch making the call (HAProxy cannot yield there)
--   /late_spawn?id=N  hands N to the task of haproxy_late_app.lua (host.haproxy{late = true}),
--   /late_result      and its last answer ("pending" before)
-- Answers: see calls.lua.
local keyfactor = require "keyfactor"
local kf_haproxy = require "keyfactor.haproxy"     -- before the core.register_* below
local calls = require "calls"

local OPTIONS = { url = os.getenv("KF_URL"), ca_file = os.getenv("KF_CA"),
  username = os.getenv("KF_USER"), password = os.getenv("KF_PASS"), retries = 1, timeout = 30 }
local kf = keyfactor.new(OPTIONS)
if os.getenv("KF_MODE") ~= "blocking" then kf_haproxy.attach(kf) end

local PID = io.open("/proc/self/stat"):read("l"):match("^(%d+)")

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
  reply(applet, calls.certificate(kf, param(applet.qs, "id"), PID))
end)

core.register_service("kf_parallel", "http", function(applet)
  local qs = applet.qs
  reply(applet, calls.parallel(kf, param(qs, "id"), param(qs, "n"), param(qs, "c"), param(qs, "slow")))
end)

core.register_service("kf_pages", "http", function(applet)
  reply(applet, calls.pages(kf, param(applet.qs, "n") or 3))
end)

core.register_service("kf_close", "http", function(applet)
  local own = kf_haproxy.attach(keyfactor.new(OPTIONS))
  core.register_task(function()
    core.msleep(300)
    own:close()
  end)
  reply(applet, calls.closed_while_waiting(own, param(applet.qs, "id")))
end)

local result = "pending"
core.register_action("kf_spawn", { "http-req" }, function(txn)
  local id = tonumber(txn.sf:url_param("id"))
  result = "pending"
  core.register_task(function() result = calls.certificate(kf, id, PID) end)
end, 0)
core.register_service("kf_result", "http", function(applet) reply(applet, result) end)

core.register_fetches("kf_id", function(txn)
  return calls.certificate(kf, tonumber(txn.sf:url_param("id")), PID)
end)

-- The task of haproxy_late_app.lua, when loaded (it requires keyfactor.haproxy itself).
local late = rawget(_G, "late_jobs")
core.register_service("kf_late_spawn", "http", function(applet)
  if not late then return reply(applet, "no late task loaded") end
  late.result = "pending"
  late.id = param(applet.qs, "id")
  reply(applet, "spawned")
end)
core.register_service("kf_late_result", "http", function(applet)
  reply(applet, late and late.result or "no late task loaded")
end)
