-- A fleet worker that kills itself with SIGKILL at one stage of the claim
-- protocol (keyfactor.fleet.claim), for the crash specs:
--
--   lua5.4 spec/fleet/crash_worker.lua REDIS-PORT PREFIX STAGE LEASE
--
-- STAGE: "claimed", "settled", "renewing", "renewed", "recorded", or
-- "in-flight" (killed 0.3 s into the renewal POST, which the sandbox delays).
-- Keyfactor from KEYFACTOR_*.  Exits 3 if it reached no such stage.
local keyfactor = require "keyfactor"
local fleet = require "keyfactor.fleet"

local port, prefix, target, lease = tonumber(arg[1]), arg[2], arg[3], tonumber(arg[4])
local pid = fleet.process_id()

local function die() os.execute("kill -KILL " .. pid) end

local kf = keyfactor.from_env { timeout = lease / 4 }
local f = fleet.new { kf = kf, redis = { host = "127.0.0.1", port = port }, prefix = prefix,
  name = "crasher-" .. target, lease = lease, settle = 0.5, concurrency = 1,
  on_stage = function(stage)
    if stage == target then die() end
    if target == "in-flight" and stage == "renewing" then
      os.execute("(sleep 0.3; kill -KILL " .. pid .. ") >/dev/null 2>&1 &")
    end
  end }
f:run(f:take(1))
os.exit(3)
