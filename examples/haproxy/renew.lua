-- Renews the certificate HAProxy serves through lua-keyfactor and swaps it in
-- through the runtime API (set ssl cert + commit ssl cert): no reload.
--
-- Loaded by haproxy.cfg with `lua-load` (the shared Lua state: one task for
-- the whole process, not one per thread).  HAProxy's Lua is 5.3, so the C
-- core is the lua5.3 build (`make build LUA=lua5.3`); haproxy.cfg puts
-- lua/ and build/lua5.3/ on the paths with lua-prepend-path.
--
-- The client is attached (keyfactor.haproxy): while a call waits, the task
-- sleeps in HAProxy (core.msleep), so its thread keeps serving and the
-- shared Lua lock is free for other Lua meanwhile.  A renewal starts when
--   * the served certificate expires within KF_RENEW_BEFORE_DAYS (default 30),
--     checked locally every KF_CHECK_INTERVAL seconds (default 3600), or
--   * the counter proc.kf_renew grows: haproxy.cfg counts GET /renew from
--     127.0.0.1 with set-var, so no Lua runs on the request path; the task
--     reads it with the runtime API's `get var` (HAProxy 2.6 has no
--     core.get_var; a counter keeps the request path free of Lua).
--
-- Environment: KEYFACTOR_* (keyfactor.from_env), KF_CERT_FILE (the crt file
-- named on the bind line), KF_ADMIN_SOCKET (the stats socket, level admin),
-- KF_CERT_CN (subject CN and DNS SAN, default shop.example.com), KF_TEMPLATE.

local keyfactor = require "keyfactor"
local kf_haproxy = require "keyfactor.haproxy"    -- before core.register_task
local kf_pem = require "kf_pem"
local x509 = require "openssl.x509"

local CERT_FILE = assert(os.getenv("KF_CERT_FILE"), "KF_CERT_FILE is not set")
local ADMIN_SOCKET = assert(os.getenv("KF_ADMIN_SOCKET"), "KF_ADMIN_SOCKET is not set")
local CN = os.getenv("KF_CERT_CN") or "shop.example.com"
local TEMPLATE = os.getenv("KF_TEMPLATE") or "WebServer"
local RENEW_BEFORE = (tonumber(os.getenv("KF_RENEW_BEFORE_DAYS")) or 30) * 86400
local CHECK_INTERVAL = tonumber(os.getenv("KF_CHECK_INTERVAL")) or 3600
local POLL_MS = 500                 -- how soon a /renew request is noticed

local function log(fmt, ...)
  core.log(core.notice, "kf-renew: " .. fmt:format(...))
end

-- The served certificate, read from CERT_FILE (first PEM block).
local function served()
  local f = io.open(CERT_FILE, "rb")
  if not f then return nil end
  local pem = f:read("a")
  f:close()
  local ok, cert = pcall(x509.new, pem, "PEM")
  if ok then return cert end
end

-- One runtime API command over the admin socket; returns HAProxy's answer.
-- The socket is non-interactive: HAProxy answers and closes.
local function runtime_api(command)
  local sock = core.tcp()
  sock:settimeout(5)
  local ok, err = sock:connect("unix@" .. ADMIN_SOCKET)
  if not ok then return nil, "connect " .. ADMIN_SOCKET .. ": " .. tostring(err) end
  local sent, serr = sock:send(command)
  if not sent then sock:close() return nil, "send: " .. tostring(serr) end
  local answer, rerr = sock:receive("*a")
  sock:close()
  if not answer then return nil, "receive: " .. tostring(rerr) end
  return answer
end

-- Hot-swaps the certificate: a transaction with the new PEM (the payload
-- ends at an empty line), then its commit.  HAProxy keeps serving the old
-- certificate until the commit succeeds.
local function swap(pem)
  local answer, err = runtime_api("set ssl cert " .. CERT_FILE .. " <<\n" .. pem:gsub("\n+$", "") .. "\n\n")
  if not answer then return nil, err end
  if not answer:find("Transaction created", 1, true) and not answer:find("Transaction updated", 1, true) then
    return nil, "set ssl cert: " .. answer:gsub("%s+$", "")
  end
  answer, err = runtime_api("commit ssl cert " .. CERT_FILE .. "\n")
  if not answer then return nil, err end
  if not answer:find("Success!", 1, true) then
    runtime_api("abort ssl cert " .. CERT_FILE .. "\n")
    return nil, "commit ssl cert: " .. answer:gsub("%s+$", "")
  end
  return true
end

local function renew(kf)
  local current = served()
  local renewal_of
  if current then
    -- Link the new certificate to the old one in Keyfactor when it is known there.
    local old = kf:certificate { SerialNumber = current:getSerial():toHex():upper() }
    renewal_of = old and old.Id or nil
  end
  local pem, info = kf_pem.enroll(kf, "CN=" .. CN, { CN }, { template = TEMPLATE, renewal_of = renewal_of })
  if not pem then return nil, "enroll: " .. tostring(info) end
  -- The file first, so a later restart or reload serves the new certificate too.
  local written, werr = kf_pem.write_atomic(CERT_FILE, pem)
  if not written then return nil, "write " .. CERT_FILE .. ": " .. tostring(werr) end
  local swapped, err = swap(pem)
  if not swapped then return nil, err end
  return info
end

-- The /renew counter, 0 before the first request.
local function renew_requests()
  local answer = runtime_api("get var proc.kf_renew\n")
  return tonumber(answer and answer:match("value=<(%d+)>")) or 0
end

local function due()
  local cert = served()
  if not cert then return true end
  local _, not_after = cert:getLifetime()
  return not_after - os.time() < RENEW_BEFORE
end

core.register_task(function()
  local kf = kf_haproxy.attach(keyfactor.from_env { timeout = 15, connect_timeout = 5, retries = 1 })
  log("watching %s (renew %d days before expiry, /renew on demand)", CERT_FILE, RENEW_BEFORE // 86400)
  local next_check, seen = 0, renew_requests()
  while true do
    local requests = renew_requests()
    local requested = requests > seen
    seen = requests
    local now = os.time()
    if requested or (now >= next_check and due()) then
      next_check = now + CHECK_INTERVAL
      local info, err = renew(kf)
      if info then
        log("installed certificate %s serial %s", tostring(info.KeyfactorId), tostring(info.SerialNumber))
      else
        log("renewal failed: %s", tostring(err))
      end
    elseif now >= next_check then
      next_check = now + CHECK_INTERVAL
    end
    core.msleep(POLL_MS)
  end
end)
