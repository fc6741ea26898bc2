--- Renew a certificate once, however many workers try and wherever they die.
--
-- The record is kept in Keyfactor itself, in the certificate's `RenewalClaim`
-- metadata field (a String field), never only in a queue:
--
--   claimed of=42 after=977 at=1796160600 by=web1:812:w1 token=9f3a51c2d8e07b14
--   renewed of=42 new=981 at=1796160601 by=web1:812:w1
--   pending of=42 request=977 at=1796160601 by=web1:812:w1   (waiting for approval)
--   released of=42 at=1796160601 by=web1:812:w1        (a renewal the server refused)
--
-- `of` names the certificate the mark is about: a renewal copies the
-- metadata to the new certificate, and a mark copied that way is not the new
-- one's.  That copy is also how a renewal whose answer was lost (a worker
-- killed, a timed-out POST the server finished anyway) is found: the new
-- certificate carries the claim, `token` included, that was on the old one
-- when it was renewed.  A certificate of the same subject without it (a
-- decoy, another team's enrollment, another certificate's renewal) is not
-- this one's renewal.  `after` (the highest certificate id before the claim)
-- narrows that search.  `pending`: the renewal is a request waiting for
-- approval; its certificate (`CertRequestId`) is the renewal once issued.
-- Times (`at`) are the server's (its `Date` header), not the worker's.
--
-- One attempt (`claim.renew_once`):
--  1. read the certificate and its mark; `renewed` -> done;
--  2. a claim by someone else: look for the certificate carrying that claim
--     (a worker that died after renewing) and record it; a claim younger than `lease` ->
--     come back when it expires; an older one is taken over;
--  3. write our claim, and only if read-to-written took less than `settle`
--     seconds; wait `settle`; read it back: still ours -> we alone hold it
--     (two workers that both read "no claim" cannot both see their own claim
--     `settle` after writing it unless one of them took longer than `settle`
--     between its read and its write — which is why that is refused);
--  4. look for a renewal carrying our claim (or the one taken over) once more, then POST /Enrollment/Renew,
--     but only within `lease / 2` of our claim's write;
--  5. record `renewed ... new=` on the old certificate.
-- A worker killed at any point leaves either no claim, a claim (resolved by
-- the newer certificate if the renewal happened, else taken over once the
-- lease has passed), or the `renewed` mark.
--
-- This module knows nothing of Redis: any queue can call it.
-- @module keyfactor.fleet.claim

local core = require "keyfactor.core"
local dates = require "keyfactor.util.dates"
local query = require "keyfactor.query"

local claim = {}

claim.FIELD = "RenewalClaim"

--- The mark in a certificate's metadata as a table (`state`, `of`, `after`,
-- `at`, `by`, `token`, `new`, `request`), or nil when there is none about
-- `cert_id`.
function claim.parse(value, cert_id)
  if type(value) ~= "string" then return nil end
  local state = value:match("^(%a+) ")
  if not state then return nil end
  local mark = { state = state }
  for k, v in value:gmatch("(%w+)=(%S+)") do mark[k] = v end
  for _, k in ipairs { "of", "after", "at", "new", "request" } do mark[k] = tonumber(mark[k]) end
  if mark.of ~= cert_id then return nil end
  return mark
end

local function format_mark(state, fields)
  local parts = { state }
  for _, k in ipairs { "of", "new", "request", "after", "at", "by", "token" } do
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

--- This process's id (from /proc), for owner names.
function claim.process_id()
  local f = io.open("/proc/self/stat", "r")
  local pid = f and f:read("*l"):match("^(%d+)")
  if f then f:close() end
  return pid or "0"
end

local function set_mark(kf, cert_id, value)
  return kf:set_metadata(cert_id, { [claim.FIELD] = value })
end
claim.set_mark = set_mark

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

--- The renewal of `cert` made under one of the claims `tokens` (a set of
-- token strings), issued after certificate id `after`: the certificate of
-- the same subject whose metadata carries that claim (copied by the server
-- at renewal).  Returns it, false when there is none, or nil, err.
function claim.find_renewal(kf, cert, after, tokens)
  if next(tokens) == nil or cert.IssuedDN == nil then return false end
  local found
  local ok, err = pcall(function()
    for other in kf:certificates { query = query.clause("IssuedDN", "-eq", cert.IssuedDN) .. " AND "
        .. query.clause("Id", "-gt", after or cert.Id), sort = "Id", ascending = true, page_size = 100,
        includeMetadata = true, includeRevoked = true, includeExpired = true } do
      local copied = type(other.Metadata) == "table" and claim.parse(other.Metadata[claim.FIELD], cert.Id)
      if other.Id ~= cert.Id and copied and copied.token and tokens[copied.token] then
        found = other
        return
      end
    end
  end)
  if not ok then
    if type(err) == "table" then return nil, err end
    error(err, 0)
  end
  return found or false
end

--- The certificate issued for request `request_id` (a renewal that waited
-- for approval), false when there is none yet, or nil, err.
function claim.issued_for(kf, request_id)
  return first_of(kf:certificates { query = query.clause("CertRequestId", "-eq", request_id), page_size = 1,
    includeRevoked = true, includeExpired = true })
end

--- Seconds since the epoch of an HTTP date ("Mon, 07 Dec 2026 04:56:39 GMT"), or nil.
claim.http_date = dates.http

-- Reads the certificate with its metadata; notes the server's clock (its
-- Date header) in `clock.offset` (server minus this host, seconds).
local function read(kf, cert_id, clock)
  local cert, status, headers = kf:request("GET", "/Certificates/" .. string.format("%d", cert_id),
    { query = { includeMetadata = "true" } })
  if not cert then return nil, status end
  if type(cert) ~= "table" then return nil, "GET /Certificates/" .. cert_id .. " answered no certificate" end
  local server_time = headers and claim.http_date(headers.date or headers.Date)
  if server_time then clock.offset = server_time - os.time() end
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
-- "renewed", "recorded"; for logs and crash tests), now (a clock to use
-- instead of the server's).
-- Returns a table: `result` = "renewed" (with `new_id`), "already" (`new_id`,
-- `how` = "marked", "found" or "approved"), "pending" (`request_id`,
-- `reason`: waiting for approval), "deferred" (`retry_at`, a time on this
-- host's clock, and `reason`) or "failed" (`err`; the server refused, the
-- claim was released; or the renewal request was denied).
-- The client's `timeout` must be at most `lease / 4`: a renewal is only
-- started within `lease / 2` of the claim and must end before others may take
-- the claim over (the rest is room for the transport's backoff before
-- resending a POST that never reached the server: up to `retries` x 8 s, so
-- keep the lease well above that).  No wait here is longer than `lease / 4`.
function claim.renew_once(kf, cert_id, opts)
  if type(opts) ~= "table" or type(opts.owner) ~= "string" or opts.owner:find("%s") then
    error("keyfactor.fleet.claim.renew_once: opts.owner must be a string without spaces", 2)
  end
  local lease, settle = opts.lease or 600, opts.settle or 2
  local clock = { offset = 0 }
  local now = opts.now or function() return os.time() + clock.offset end
  -- a time on the server's clock as one on this host's (retry_at is for a local schedule)
  local function local_time(t) return t - (opts.now and 0 or clock.offset) end
  local function nap(seconds) kf:sleep(math.max(0, math.min(seconds, lease / 4))) end
  local stage = opts.on_stage or function() end
  local mine                       -- {token, at, after, written_at (monotonic), fast, previous}
  local function record(newer, how)
    set_mark(kf, cert_id, format_mark("renewed", { of = cert_id, new = newer.Id, at = now(), by = opts.owner }))
    return outcome("already", { new_id = newer.Id, how = how or "found" })
  end
  local function deferred(delay, reason)
    return outcome("deferred", { retry_at = local_time(now() + delay), reason = tostring(reason) })
  end
  local floor                      -- the highest id before any claim of ours
  for _ = 1, opts.attempts or 5 do
    if not floor then
      -- looked up before the read, so it stays out of the read-to-write window
      local err
      floor, err = highest_id(kf)
      if not floor then return deferred(30, err) end
    end
    local started = core.now()
    local cert, mark_or_err = read(kf, cert_id, clock)
    if not cert then
      local err = mark_or_err
      if type(err) == "table" and err.status == 404 then return outcome("failed", { err = err }) end
      return deferred(mine and lease + 1 or 30, err)
    end
    local mark = mark_or_err
    if mark and mark.state == "renewed" then
      return outcome("already", { new_id = mark.new, how = "marked" })
    end
    if mark and mark.state == "pending" and mark.request then
      local issued, err = claim.issued_for(kf, mark.request)
      if issued == nil then return deferred(30, err) end
      if issued then return record(issued, "approved") end
      local request = kf:workflow_request(mark.request)
      if type(request) == "table" and request.State == 3 then      -- 3: Denied
        return outcome("failed", { err = string.format("renewal request %d was denied", mark.request) })
      end
      return outcome("pending", { request_id = mark.request,
        reason = string.format("renewal request %d is waiting for approval", mark.request) })
    end
    local claimed = mark and mark.state == "claimed"
    local ours = claimed and mine and mark.token == mine.token
    if claimed and not ours then
      -- someone claimed it: did they renew before they stopped?
      local newer, err = claim.find_renewal(kf, cert, mark.after, { [mark.token or ""] = true })
      if newer == nil then return deferred(30, err) end
      if newer then return record(newer) end
      if (mark.at or 0) + lease > now() then
        return deferred((mark.at or now()) + lease + 1 - now(), "claimed by " .. tostring(mark.by))
      end
    end
    if not ours then
      -- claim it (or take a stale claim over, keeping its `after`)
      local after = claimed and mark.after or floor
      mine = { token = random_token(), at = now(), after = after, written_at = core.now(),
        previous = claimed and mark.token or nil }
      local ok, err = set_mark(kf, cert_id, format_mark("claimed", { of = cert_id, after = after, at = mine.at,
        by = opts.owner, token = mine.token }))
      if not ok then return deferred(lease + 1, err) end
      mine.fast = core.now() - started < settle
      stage("claimed", cert_id)
      nap(settle)
    elseif not mine.fast or core.now() - mine.written_at > lease / 2 then
      -- too slow to be sure no one else holds it, or too late to renew now
      return deferred(lease + 1, "claim too slow or too old")
    else
      stage("settled", cert_id)
      local tokens = { [mine.token] = true }
      if mine.previous then tokens[mine.previous] = true end
      local newer, err = claim.find_renewal(kf, cert, mine.after, tokens)
      if newer == nil then return deferred(lease + 1, err) end
      if newer then return record(newer) end
      stage("renewing", cert_id)
      local renewed, rerr = kf:renew { CertificateId = cert_id }
      if renewed then
        stage("renewed", cert_id)
        local new_id = tonumber(renewed.KeyfactorId) or 0
        if new_id == 0 then
          -- no certificate yet: a request waiting for approval, finished by a later look
          set_mark(kf, cert_id, format_mark("pending", { of = cert_id, request = renewed.KeyfactorRequestId,
            at = now(), by = opts.owner }))
          stage("recorded", cert_id)
          return outcome("pending", { request_id = renewed.KeyfactorRequestId,
            reason = tostring(renewed.DispositionMessage or "waiting for approval") })
        end
        -- if this write fails, the next look finds the certificate carrying our claim instead
        set_mark(kf, cert_id, format_mark("renewed", { of = cert_id, new = new_id, at = now(), by = opts.owner }))
        stage("recorded", cert_id)
        return outcome("renewed", { new_id = new_id })
      end
      -- keyfactor.errors: `retryable` (calling again is safe), `unprocessed`
      -- (429, 503) and `refused` (another status below 500) come from the
      -- server's answer, `sent` from the transfer
      local failure = type(rerr) == "table" and rerr or {}
      if failure.retryable or failure.sent == false or failure.unprocessed then
        -- nothing was done: wait as told (never past the lease), then look again
        nap(failure.retry_after or settle)
      elseif failure.refused then
        set_mark(kf, cert_id, format_mark("released", { of = cert_id, at = now(), by = opts.owner }))
        return outcome("failed", { err = rerr })
      else
        -- no answer, or one that does not say: the renewal may have happened
        -- (a server may finish after the client gave up).  Look for it now;
        -- if it is not there, whoever looks after the lease looks again.
        newer = claim.find_renewal(kf, cert, mine.after, tokens)
        if newer then return record(newer) end
        return deferred(lease + 1, rerr)
      end
    end
  end
  return deferred(mine and lease + 1 or settle, "out of attempts")
end

return claim
