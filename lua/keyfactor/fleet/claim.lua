--- Renew a certificate once, however many workers try and wherever they die.
--
-- The record is kept in Keyfactor itself, in the certificate's `RenewalClaim`
-- metadata field (a String field), never only in a queue:
--
--   claimed of=42 after=977 at=1796160600 by=web1:812:w1 token=9f3a51c2d8e07b14
--   renewed of=42 new=981 at=1796160601 by=web1:812:w1
--   released of=42 at=1796160601 by=web1:812:w1        (a renewal the server refused)
--
-- `of` names the certificate the mark is about: a renewal may copy metadata
-- to the new certificate, and a mark copied that way is not the new one's.
-- `after` is the highest certificate id just before the first claim: a
-- certificate with the same IssuedDN and a higher id was issued after the
-- claim, so it is this renewal (Keyfactor ids only grow; no clocks compared).
--
-- One attempt (`claim.renew_once`):
--  1. read the certificate and its mark; `renewed` -> done;
--  2. a claim by someone else: look for the newer certificate (a worker that
--     died after renewing) and record it; a claim younger than `lease` ->
--     come back when it expires; an older one is taken over;
--  3. write our claim, and only if read-to-written took less than `settle`
--     seconds; wait `settle`; read it back: still ours -> we alone hold it
--     (two workers that both read "no claim" cannot both see their own claim
--     `settle` after writing it unless one of them took longer than `settle`
--     between its read and its write — which is why that is refused);
--  4. look for the newer certificate once more, then POST /Enrollment/Renew,
--     but only within `lease / 2` of our claim's write;
--  5. record `renewed ... new=` on the old certificate.
-- A worker killed at any point leaves either no claim, a claim (resolved by
-- the newer certificate if the renewal happened, else taken over once the
-- lease has passed), or the `renewed` mark.
--
-- This module knows nothing of Redis: any queue can call it.
-- @module keyfactor.fleet.claim

local core = require "keyfactor.core"

local claim = {}

claim.FIELD = "RenewalClaim"

--- The mark in a certificate's metadata as a table (`state`, `of`, `after`,
-- `at`, `by`, `token`, `new`), or nil when there is none about `cert_id`.
function claim.parse(value, cert_id)
  if type(value) ~= "string" then return nil end
  local state = value:match("^(%a+) ")
  if not state then return nil end
  local mark = { state = state }
  for k, v in value:gmatch("(%w+)=(%S+)") do mark[k] = v end
  mark.of, mark.after, mark.at, mark.new = tonumber(mark.of), tonumber(mark.after), tonumber(mark.at),
    tonumber(mark.new)
  if mark.of ~= cert_id then return nil end
  return mark
end

local function format_mark(state, fields)
  local parts = { state }
  for _, k in ipairs { "of", "new", "after", "at", "by", "token" } do
    if fields[k] ~= nil then parts[#parts + 1] = k .. "=" .. string.format(
      type(fields[k]) == "number" and "%d" or "%s", fields[k]) end
  end
  return table.concat(parts, " ")
end
claim.format = format_mark

local function random_token()
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(8)
  if f then f:close() end
  if not bytes or #bytes < 8 then
    bytes = string.char(math.random(0, 255), math.random(0, 255), math.random(0, 255), math.random(0, 255),
      math.random(0, 255), math.random(0, 255), math.random(0, 255), math.random(0, 255))
  end
  return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local function set_mark(kf, cert_id, value)
  return kf:set_metadata(cert_id, { [claim.FIELD] = value })
end

-- Runs an iterator loop, turning a raised error table into nil, err.
local function first_of(iterator)
  local ok, item = pcall(iterator)
  if ok then return item or false end
  if type(item) == "table" then return nil, item end
  error(item, 0)
end

-- The highest certificate id there is now (revoked and expired included).
local function highest_id(kf)
  local top, err = first_of(kf:certificates { sort = "Id", ascending = false, page_size = 1,
    includeRevoked = true, includeExpired = true })
  if top == nil then return nil, err end
  return top and top.Id or 0
end

-- A certificate for the same subject issued after `after`, or false.
local function find_newer(kf, cert, after)
  local query = string.format('IssuedDN -eq "%s" AND Id -gt %d', cert.IssuedDN, after)
  local newer, err = first_of(kf:certificates { query = query, sort = "Id", ascending = true,
    page_size = 1, includeRevoked = true, includeExpired = true })
  if newer == nil then return nil, err end
  return newer and newer.Id ~= cert.Id and newer
end

local function read(kf, cert_id)
  local cert, err = kf:certificate(cert_id, { includeMetadata = true })
  if not cert then return nil, err end
  local metadata = type(cert.Metadata) == "table" and cert.Metadata or {}
  return cert, claim.parse(metadata[claim.FIELD], cert_id)
end

local function outcome(result, fields)
  fields = fields or {}
  fields.result = result
  return fields
end

--- Renews certificate `cert_id` unless it has been (see the module text).
-- `opts`: owner (who we are, e.g. "host:pid:worker"; required), lease
-- (seconds a claim keeps others off, 600), settle (seconds, 2), attempts (5),
-- on_stage (function(stage, cert_id): "claimed", "settled", "renewing",
-- "renewed", "recorded"; for logs and crash tests), now (wall clock, os.time).
-- Returns a table: `result` = "renewed" (with `new_id`), "already" (`new_id`
-- when known, `how` = "marked" or "found"), "deferred" (`retry_at`, a wall
-- time, and `reason`) or "failed" (`err`; the server refused, the claim was
-- released).
-- The client's `timeout` must be at most `lease / 4`: a renewal is only
-- started within `lease / 2` of the claim and must end before others may take
-- the claim over (the rest is room for clock skew between hosts, and for the
-- transport's backoff before resending a POST that never reached the server:
-- up to `retries` x 8 s, so keep the lease well above that).
function claim.renew_once(kf, cert_id, opts)
  if type(opts) ~= "table" or type(opts.owner) ~= "string" or opts.owner:find("%s") then
    error("keyfactor.fleet.claim.renew_once: opts.owner must be a string without spaces", 2)
  end
  local lease, settle = opts.lease or 600, opts.settle or 2
  local now = opts.now or os.time
  local stage = opts.on_stage or function() end
  local mine                       -- {token, at, after, written_at (monotonic), fast}
  -- a renewal made by someone (who stopped before marking it): record it
  local function found(newer)
    set_mark(kf, cert_id, format_mark("renewed", { of = cert_id, new = newer.Id, at = now(), by = opts.owner }))
    return outcome("already", { new_id = newer.Id, how = "found" })
  end
  local floor                      -- the highest id before any claim of ours
  for _ = 1, opts.attempts or 5 do
    if not floor then
      -- looked up before the read, so it stays out of the read-to-write window
      local err
      floor, err = highest_id(kf)
      if not floor then return outcome("deferred", { retry_at = now() + 30, reason = tostring(err) }) end
    end
    local started = core.now()
    local cert, mark_or_err = read(kf, cert_id)
    if not cert then
      local err = mark_or_err
      if type(err) == "table" and err.status == 404 then return outcome("failed", { err = err }) end
      return outcome("deferred", { retry_at = now() + (mine and lease + 1 or 30), reason = tostring(err) })
    end
    local mark = mark_or_err
    if mark and mark.state == "renewed" then
      return outcome("already", { new_id = mark.new, how = "marked" })
    end
    if cert.IssuedDN == nil or tostring(cert.IssuedDN):find('"', 1, true) then
      return outcome("failed", { err = "IssuedDN cannot be queried: " .. tostring(cert.IssuedDN) })
    end
    local claimed = mark and mark.state == "claimed"
    local ours = claimed and mine and mark.token == mine.token
    if claimed and not ours then
      -- someone claimed it: did they renew before they stopped?
      local newer, err = find_newer(kf, cert, mark.after or cert.Id)
      if newer == nil then return outcome("deferred", { retry_at = now() + 30, reason = tostring(err) }) end
      if newer then return found(newer) end
      if (mark.at or 0) + lease > now() then
        return outcome("deferred", { retry_at = (mark.at or now()) + lease + 1, reason = "claimed by " ..
          tostring(mark.by) })
      end
    end
    if not ours then
      -- claim it (or take a stale claim over, keeping its `after`)
      local after = claimed and mark.after or floor
      mine = { token = random_token(), at = now(), after = after, written_at = core.now() }
      local ok, err = set_mark(kf, cert_id, format_mark("claimed", { of = cert_id, after = after, at = mine.at,
        by = opts.owner, token = mine.token }))
      if not ok then
        return outcome("deferred", { retry_at = now() + lease + 1, reason = tostring(err) })
      end
      mine.fast = core.now() - started < settle
      stage("claimed", cert_id)
      kf:sleep(settle)
    elseif not mine.fast or core.now() - mine.written_at > lease / 2 then
      -- too slow to be sure no one else holds it, or too late to renew now
      return outcome("deferred", { retry_at = now() + lease + 1, reason = "claim too slow or too old" })
    else
      stage("settled", cert_id)
      local newer, err = find_newer(kf, cert, mine.after)
      if newer == nil then return outcome("deferred", { retry_at = now() + lease + 1, reason = tostring(err) }) end
      if newer then return found(newer) end
      stage("renewing", cert_id)
      local renewed, rerr = kf:renew { CertificateId = cert_id }
      if renewed then
        stage("renewed", cert_id)
        local new_id = renewed.KeyfactorId
        -- if this write fails, the next look finds the newer certificate instead
        set_mark(kf, cert_id, format_mark("renewed", { of = cert_id, new = new_id, at = now(), by = opts.owner }))
        stage("recorded", cert_id)
        return outcome("renewed", { new_id = new_id })
      end
      local status = type(rerr) == "table" and rerr.status
      if status == 429 or status == 503 then
        -- refused before anything was done: wait as told, then look again
        kf:sleep(rerr.retry_after or settle)
      elseif status and status >= 400 and status < 500 then
        set_mark(kf, cert_id, format_mark("released", { of = cert_id, at = now(), by = opts.owner }))
        return outcome("failed", { err = rerr })
      else
        -- no answer, or an answer that does not say: the renewal may have
        -- happened; whoever looks after the lease finds out
        return outcome("deferred", { retry_at = now() + lease + 1, reason = tostring(rerr) })
      end
    end
  end
  return outcome("deferred", { retry_at = now() + (mine and lease + 1 or settle), reason = "out of attempts" })
end

return claim
