#!/usr/bin/env lua5.3
-- Renews a certificate from a worker that shares its state with other
-- workers through Redis: a lock per certificate (SET NX PX) so two workers
-- never renew the same certificate at once, and a hash of certificate id ->
-- last renewal so one that comes later does not renew it again.
--
--   lua5.3 examples/redis/renew_with_lock.lua WORKER-NAME CERTIFICATE-ID
--
-- Runs on Lua 5.3 with lua-keyfactor's lua5.3 build (make build LUA=lua5.3)
-- because Debian's Redis client, lua-redis, installs for Lua 5.1 to 5.3.
-- Redis: KF_REDIS_HOST (127.0.0.1), KF_REDIS_PORT (6379); Keyfactor:
-- KEYFACTOR_* (keyfactor.from_env); KF_RENEW_MIN_AGE: seconds within which
-- a renewal recorded in Redis counts as fresh (3600).
local redis = require "redis"
local keyfactor = require "keyfactor"

local worker, cert_id = arg[1], math.tointeger(tonumber(arg[2] or ""))
if not worker or not cert_id then
  io.stderr:write("usage: renew_with_lock.lua WORKER-NAME CERTIFICATE-ID\n")
  os.exit(2)
end
local MIN_AGE = tonumber(os.getenv("KF_RENEW_MIN_AGE")) or 3600
local LOCK_TTL_MS = 60000           -- longer than one renewal may take (client timeouts below)
local LOCK_KEY = "kf:lock:certificate:" .. cert_id
local RENEWED_KEY = "kf:renewed"    -- hash: certificate id -> "unix-time new-id thumbprint"

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
  local last = db:hget(RENEWED_KEY, tostring(cert_id))
  local at = last and tonumber(last:match("^(%d+)"))
  if at and os.time() - at < MIN_AGE then
    say("certificate %d was renewed %ds ago (%s), not renewing", cert_id, os.time() - at, last)
    return
  end
  local kf = keyfactor.from_env { timeout = 20, connect_timeout = 5 }
  local renewed, rerr = kf:renew { CertificateId = cert_id }
  kf:close()
  if not renewed then error(rerr, 0) end
  db:hset(RENEWED_KEY, tostring(cert_id),
          ("%d %s %s"):format(os.time(), tostring(renewed.KeyfactorId), tostring(renewed.Thumbprint)))
  say("RENEWED certificate %d -> certificate %s (thumbprint %s)", cert_id,
      tostring(renewed.KeyfactorId), tostring(renewed.Thumbprint))
end)
release()
if not ok then
  say("renewal failed: %s", tostring(err))
  os.exit(1)
end
