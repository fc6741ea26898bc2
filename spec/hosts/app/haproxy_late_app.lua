-- Loaded by haproxy.cfg.in before haproxy_app.lua when host.haproxy{late = true}:
-- a script that registers its task first and requires keyfactor.haproxy
-- inside it (so the task's function is not wrapped), then attaches its own
-- client there.  The task takes ids from the shared global `late_jobs`
-- (set by haproxy_app.lua's /late_spawn) and leaves each answer in
-- `late_jobs.result`.
late_jobs = { result = "pending" }        -- a global: shared with haproxy_app.lua

core.register_task(function()
  local keyfactor = require "keyfactor"
  local kf = require("keyfactor.haproxy").attach(keyfactor.new {
    url = os.getenv("KF_URL"), ca_file = os.getenv("KF_CA"),
    username = os.getenv("KF_USER"), password = os.getenv("KF_PASS"), retries = 1, timeout = 30,
  })
  local calls = require "calls"
  while true do
    local id = late_jobs.id
    if id then
      late_jobs.id = nil
      late_jobs.result = calls.certificate(kf, id, "late")
    end
    core.msleep(10)
  end
end)
