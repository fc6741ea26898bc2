#!/usr/bin/env lua5.3
-- Renews a certificate from a worker that shares a lock with other workers
-- through Redis: a lock per certificate (SET NX PX) so two workers never work
-- on the same certificate at once.  Whether it was renewed already is not
-- Redis's business: keyfactor.renewal reads the record on the certificate in
-- Keyfactor, so a worker that comes later deploys the renewal that exists (if
-- it is not yet everywhere) and never renews a second time.
--
--   lua5.3 examples/redis/renew_with_lock.lua WORKER-NAME CERTIFICATE-ID
--
-- Runs on Lua 5.3 with lua-keyfactor's lua5.3 build (make build LUA=lua5.3)
-- because Debian's Redis client, lua-redis, installs for Lua 5.1 to 5.3.
-- Redis: KF_REDIS_HOST (127.0.0.1), KF_REDIS_PORT (6379); Keyfactor:
-- KEYFACTOR_* (keyfactor.from_env); KEYFACTOR_ENTRY_PASSWORD for stores
-- such as PEM.
local redis = require "redis"
local keyfactor = require "keyfactor"
local renewal = require "keyfactor.renewal"

local worker, cert_id = arg[1], math.tointeger(tonumber(arg[2] or ""))
if not worker or not cert_id then
  io.stderr:write("usage: renew_with_lock.lua WORKER-NAME CERTIFICATE-ID\n")
  os.exit(2)
end
local LOCK_TTL_MS = 60000           -- longer than one renewal may take (client timeouts below)
local LOCK_KEY = "kf:lock:certificate:" .. cert_id

local function say(fmt, ...) print(("%s: " .. fmt):format(worker, ...)) end

local db = redis.connect(os.getenv("KF_REDIS_HOST") or "127.0.0.1",
                         tonumber(os.getenv("KF_REDIS_PORT")) or 6379)

-- The lock's value is this worker's random token: only its owner deletes it.
math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16))
local token = ("%s-%08x%08x"):format(worker, math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))

-- Deletes the lock only if it still holds our token (it may have expired and
-- been taken by another worker).  This script is the one piece of Lua that
-- runs inside Redis: plain Redis commands, no modules.
local RELEASE = [[
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0
]]

local function release()
  db:eval(RELEASE, 1, LOCK_KEY, token)
end

if not db:set(LOCK_KEY, token, "NX", "PX", LOCK_TTL_MS) then
  say("certificate %d is locked by %s, not renewing", cert_id, tostring(db:get(LOCK_KEY)))
  os.exit(0)
end
say("took the lock for certificate %d", cert_id)

local ok, err = pcall(function()
  local kf = keyfactor.from_env { timeout = 20, connect_timeout = 5 }
  local entry = renewal.finish(kf, cert_id, { owner = worker, password = os.getenv("KEYFACTOR_ENTRY_PASSWORD"),
    wait = 30, settle = 0.5 })
  kf:close()
  if entry.Renewed then
    say("RENEWED certificate %d -> certificate %s", cert_id, tostring(entry.SuccessorId))
  end
  say("%s", renewal.line(entry))
  if entry.State ~= "complete" then error(table.concat(entry.Reasons, "; "), 0) end
end)
release()
if not ok then
  say("renewal failed: %s", tostring(err))
  os.exit(1)
end
