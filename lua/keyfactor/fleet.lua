--- Renewal across a fleet: a due-date schedule and a work queue in Redis that
-- workers on any number of hosts share.
--
--   local fleet = require "keyfactor.fleet"
--   local f = fleet.new{ kf = kf, redis = { host = "127.0.0.1", port = 6379 }, name = "web1-w1" }
--   f:schedule{ days = 30 }        -- due certificates into the schedule (a sorted set)
--   f:work{ idle_exit = 30 }       -- renew from the queue until it has been empty 30 s
--
-- Keys (prefix "kf:fleet"): `:due` sorted set certificate id -> due time;
-- `:jobs` a stream of {certificate = id} read through the consumer group
-- "renewers"; `:queued` the ids now in the stream (so one is never queued
-- twice); `:stats` outcome counters; `:failed` id -> why.  Moving due ids
-- into the stream and finishing a job are each one Redis script (Redis
-- commands only), so they are atomic.  A worker reads new jobs with
-- XREADGROUP, takes over jobs idle longer than `reclaim_idle` (a dead or
-- stuck worker's) with XAUTOCLAIM, renews with kf:parallel, and acknowledges
-- each job (XACK + XDEL) as soon as it is done.
--
-- Redis only hands work out.  Whether a certificate was renewed is decided in
-- Keyfactor (keyfactor.fleet.claim), so a delivery that Redis repeats or
-- loses on a failover is harmless.  So a worker outlives its Redis: when the
-- connection drops (a restart) or the stream and group vanish (a flush) it
-- connects again with backoff, makes the group again and goes on; jobs lost
-- with the data come back at the next `schedule`.  This is the one module
-- that needs a Redis client (Debian's lua-redis, keyfactor.fleet.connection:
-- AUTH, ACL users, db numbers, TLS); the rest of the library does not.
-- @module keyfactor.fleet

local core = require "keyfactor.core"
local claim = require "keyfactor.fleet.claim"
local renewal = require "keyfactor.renewal"
local connection = require "keyfactor.fleet.connection"
local dates = require "keyfactor.util.dates"
local query_language = require "keyfactor.query"
local v = require "keyfactor.api.validate"

local fleet = { claim = claim }

local Fleet = {}
Fleet.__index = Fleet

local GROUP = "renewers"

-- KEYS: due, queued, jobs.  ARGV: now, limit.  Due ids not already queued
-- go into the stream; returns how many.
local PROMOTE = [[
local ids = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1], "LIMIT", 0, ARGV[2])
local moved = 0
for _, id in ipairs(ids) do
  redis.call("ZREM", KEYS[1], id)
  if redis.call("SADD", KEYS[2], id) == 1 then
    redis.call("XADD", KEYS[3], "*", "certificate", id)
    moved = moved + 1
  end
end
return moved
]]

-- KEYS: jobs, queued, due, stats, failed.  ARGV: group, entry id,
-- certificate id, result, retry time ("" for none), failure ("" for none).
local FINISH = [[
if redis.call("XACK", KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call("XDEL", KEYS[1], ARGV[2])
redis.call("SREM", KEYS[2], ARGV[3])
if ARGV[5] ~= "" then redis.call("ZADD", KEYS[3], ARGV[5], ARGV[3]) end
if ARGV[6] ~= "" then redis.call("HSET", KEYS[5], ARGV[3], ARGV[6]) else redis.call("HDEL", KEYS[5], ARGV[3]) end
redis.call("HINCRBY", KEYS[4], ARGV[4], 1)
return 1
]]

local function hostname()
  local f = io.open("/proc/sys/kernel/hostname", "r") or io.open("/etc/hostname", "r")
  local name = f and f:read("*l")
  if f then f:close() end
  return name or os.getenv("HOSTNAME") or "host"
end

local process_id = claim.process_id
fleet.process_id = process_id

local positive, at_least_one = v.positive, v.integer_in(1)

local OPTIONS = v.record({
  kf = v.table, redis = v.table, prefix = v.nonempty, name = v.nonempty,
  concurrency = at_least_one, batch = at_least_one,
  reclaim_idle = positive, lease = positive, settle = positive, log = v.callable, on_stage = v.callable,
  deploy = v.boolean, password = v.string, wait = positive, recheck = positive,
}, { "kf" })

--- A fleet member.  `opts`: kf (a client; required), redis (connection
-- settings: {host, port, username, password, db, tls, timeout}, see
-- keyfactor.fleet.connection; default 127.0.0.1:6379; or an open redis-lua
-- client, which is then never reconnected), prefix
-- ("kf:fleet"), name (this consumer's name in the group; default
-- host:pid), concurrency (renewals at once, 8), batch (jobs taken per round,
-- 4 x concurrency), reclaim_idle (seconds before another worker takes a job
-- over, 60), lease and settle (keyfactor.fleet.claim; 600 and 2), log
-- (function(line)), on_stage (keyfactor.fleet.claim); and for the renewal
-- (keyfactor.renewal): deploy (into the old certificate's stores, true),
-- password (the entry password stores such as PEM need), wait (seconds to
-- confirm the deploy, half of reclaim_idle at most 60), recheck (seconds
-- before a renewal waiting for approval or not yet everywhere is looked at
-- again, the lease).
function fleet.new(opts)
  opts = v.check("keyfactor.fleet.new", OPTIONS, opts, "opts")
  if opts.name and opts.name:find("%s") then v.raise("keyfactor.fleet.new", "opts.name must not contain spaces") end
  local db, settings = opts.redis, nil
  if type(db) ~= "table" or not db.network then
    settings = connection.check("keyfactor.fleet.new", db)
    db = connection.open(settings)
  end
  local prefix = opts.prefix or "kf:fleet"
  local self = setmetatable({
    kf = opts.kf, db = db, settings = settings, prefix = prefix,
    name = opts.name or (hostname() .. ":" .. process_id()),
    concurrency = opts.concurrency or 8,
    reclaim_idle = opts.reclaim_idle or 60,
    lease = opts.lease or 600, settle = opts.settle or 2,
    log = opts.log or function() end, on_stage = opts.on_stage,
    deploy = opts.deploy ~= false, password = opts.password,
    wait = opts.wait or math.min(60, (opts.reclaim_idle or 60) / 2), recheck = opts.recheck or opts.lease or 600,
    keys = { due = prefix .. ":due", queued = prefix .. ":queued", jobs = prefix .. ":jobs",
             stats = prefix .. ":stats", failed = prefix .. ":failed" },
  }, Fleet)
  self.batch = opts.batch or 4 * self.concurrency
  self:ensure_group()
  return self
end

--- Makes the consumer group (and its stream) unless it exists: once for
-- everyone, and again after the server lost its data.
function Fleet:ensure_group()
  local ok, err = pcall(self.db.xgroup, self.db, "CREATE", self.keys.jobs, GROUP, "0", "MKSTREAM")
  if not ok and not tostring(err):find("BUSYGROUP", 1, true) then error(err, 0) end
end

-- Backoff between attempts to get Redis back: 0.1 s doubling to 5 s.
local RECONNECT_FIRST, RECONNECT_MAX = 0.1, 5

--- After `err` (connection.lost): connects again, with backoff, until it
-- works or `deadline` (core.now() seconds; nil: never) passes, then makes
-- the group again.  Raises `err` for a client given open (it cannot be
-- reopened) and when the deadline passed.
function Fleet:recover(err, deadline)
  if not self.settings then error(err, 0) end
  local delay = RECONNECT_FIRST
  while true do
    self.log(string.format("%s: Redis: %s; connecting again in %.1fs", self.name, tostring(err), delay))
    if deadline and core.now() + delay > deadline then error(err, 0) end
    self.kf:sleep(delay)
    pcall(self.db.quit, self.db)
    local ok, db = pcall(connection.open, self.settings)
    if ok then
      self.db = db
      local made, why = pcall(self.ensure_group, self)
      if made then
        self.log(string.format("%s: Redis: connected again", self.name))
        return
      end
      err = why
    else
      err = db
    end
    if not connection.lost(err) then error(err, 0) end
    delay = math.min(delay * 2, RECONNECT_MAX)
  end
end

local epoch = dates.epoch
fleet.epoch = epoch

--- Puts the certificates due for renewal into the schedule: those
-- expiring within `opts.days` (30), narrowed by `opts.query` (Keyfactor query
-- language, ANDed), due `days` before they expire.  Certificates whose
-- renewal is complete (RenewalClaim says renewed, and the old certificate is
-- in no store any more) are left out.  Then moves what is due into the
-- queue.  Returns the number scheduled; raises a remote failure.
function Fleet:schedule(opts)
  opts = opts or {}
  local days = opts.days or 30
  local now = os.time()
  local query = "NotAfter -le " .. query_language.time(now + days * 86400)
  if opts.query then query = query .. " AND (" .. opts.query .. ")" end
  local count = 0
  for cert in self.kf:certificates { query = query, includeMetadata = true, includeLocations = true,
      page_size = 500 } do
    local mark = claim.parse(type(cert.Metadata) == "table" and cert.Metadata[claim.FIELD], cert.Id)
    local placed = self.deploy and type(cert.Locations) == "table" and #cert.Locations > 0
    if not (mark and mark.state == "renewed") or placed then
      local due = math.floor(math.min(now, (epoch(cert.NotAfter) or now) - days * 86400))
      self.db:zadd(self.keys.due, string.format("%d", due), string.format("%d", cert.Id))
      count = count + 1
    end
  end
  self:promote()
  return count
end

--- Moves the due ids of the schedule into the stream (any member may, at
-- any time: it is one atomic script).  Returns how many moved.
function Fleet:promote()
  local k = self.keys
  return self.db:eval(PROMOTE, 3, k.due, k.queued, k.jobs, string.format("%d", os.time()), 1000)
end

-- Acknowledges a job with its outcome; a deferred one goes back into the schedule.
function Fleet:finish(entry, cert_id, result)
  local k = self.keys
  local retry = result.retry_at and string.format("%d", math.ceil(result.retry_at)) or ""
  local failure = result.result == "failed" and tostring(result.err) or ""
  self.db:eval(FINISH, 5, k.jobs, k.queued, k.due, k.stats, k.failed, GROUP, entry,
    string.format("%d", cert_id), result.result, retry, failure)
end

-- Entries {id, {"certificate", "42"}} -> {entry = id, cert = 42}.
local function jobs_of(entries, into)
  for _, e in ipairs(entries or {}) do
    local fields, cert = e[2] or {}, nil
    for i = 1, #fields, 2 do
      if fields[i] == "certificate" then cert = math.tointeger and math.tointeger(tonumber(fields[i + 1]))
        or tonumber(fields[i + 1]) end
    end
    if cert then into[#into + 1] = { entry = e[1], cert = cert } end
  end
  return into
end

--- Takes up to `batch` jobs: first those idle longer than reclaim_idle
-- (XAUTOCLAIM: a dead or stuck worker's, or our own), then new ones
-- (XREADGROUP, waiting up to `block` seconds).
function Fleet:take(block)
  local k, db = self.keys, self.db
  local idle_ms = string.format("%d", math.floor(self.reclaim_idle * 1000))
  local claimed = db:xautoclaim(k.jobs, GROUP, self.name, idle_ms, "0-0", "COUNT", self.batch)
  local jobs = jobs_of(claimed and claimed[2], {})
  for _, job in ipairs(jobs) do job.reclaimed = true end
  if #jobs < self.batch then
    local read = db:xreadgroup("GROUP", GROUP, self.name, "COUNT", self.batch - #jobs,
      "BLOCK", string.format("%d", math.floor((block or 0) * 1000)), "STREAMS", k.jobs, ">")
    jobs_of(read and read[1] and read[1][2], jobs)
  end
  return jobs
end

-- A renewal report entry (keyfactor.renewal) as a queue outcome: `result`
-- "renewed", "already", "pending", "deferred" or "failed"; `complete`;
-- `retry_at` (this host's clock) when it is to be looked at again.
function Fleet:outcome(entry)
  local r = { new_id = entry.SuccessorId, complete = entry.State == "complete",
    reason = #entry.Reasons > 0 and table.concat(entry.Reasons, "; ") or nil }
  if entry.State == "failed" then
    r.result, r.err = "failed", r.reason
  elseif entry.State == "pending" then
    r.result, r.retry_at = "pending", os.time() + self.recheck
  elseif not entry.SuccessorId then
    r.result, r.retry_at = "deferred", entry.RetryAt or os.time() + 30
  else
    r.result = entry.Renewed and "renewed" or "already"
    if not r.complete then r.retry_at = os.time() + self.recheck end
  end
  return r
end

--- Renews the certificates of `jobs` (from `take`), `concurrency` at once,
-- each through keyfactor.renewal (renewed once, deployed where the old one
-- is, confirmed), acknowledging each as it finishes.  Returns the outcomes in
-- order (see `Fleet:outcome`).
function Fleet:run(jobs)
  local fns, outcomes = {}, {}
  local opts = { owner = self.name, lease = self.lease, settle = self.settle, on_stage = self.on_stage,
    deploy = self.deploy, password = self.password, wait = self.wait }
  for i, job in ipairs(jobs) do
    fns[i] = function(kf)
      local result = self:outcome(renewal.finish(kf, job.cert, opts))
      self:finish(job.entry, job.cert, result)
      outcomes[i] = result
      self.log(string.format("%s: certificate %d %s%s%s%s", self.name, job.cert, result.result,
        result.new_id and (" -> " .. string.format("%d", result.new_id)) or "",
        -- without deploy, complete means renewed: nothing was to be put anywhere
        self.deploy and result.new_id and (result.complete and ", deployed everywhere" or ", not yet everywhere")
          or "",
        result.reason and (" (" .. result.reason .. ")") or ""))
      return result
    end
  end
  local _, errs = self.kf:parallel(fns, { concurrency = self.concurrency, progress = false })
  for i, err in pairs(errs) do
    -- left unacknowledged: reclaimed after reclaim_idle
    self.log(string.format("%s: certificate %d: %s", self.name, jobs[i].cert, tostring(err)))
  end
  return outcomes
end

--- Works until the schedule and the queue have been empty for
-- `opts.idle_exit` seconds, or for `opts.max_seconds` (each nil: no limit).
-- Returns counts by result.
function Fleet:work(opts)
  opts = opts or {}
  local counts = { renewed = 0, already = 0, pending = 0, deferred = 0, failed = 0, complete = 0 }
  local started = core.now()
  local idle_since = started
  local deadline = opts.max_seconds and started + opts.max_seconds
  while not deadline or core.now() < deadline do
    -- one round; a lost connection or lost data (connection.lost) is
    -- recovered from, anything else raised
    local ok, err = pcall(function()
      self:promote()
      local jobs = self:take(opts.block or 1)
      for _, result in pairs(self:run(jobs)) do
        counts[result.result] = counts[result.result] + 1
        if result.complete then counts.complete = counts.complete + 1 end
      end
      if #jobs > 0 then idle_since = core.now() end
      if opts.idle_exit then
        local s = self:status()
        if s.due + s.queued > 0 then
          idle_since = core.now()
        elseif core.now() - idle_since >= opts.idle_exit then
          return true
        end
      end
    end)
    if ok and err then return counts end
    if not ok then
      if not connection.lost(err) then error(err, 0) end
      self:recover(err, deadline)
      idle_since = core.now()
    end
  end
  return counts
end

--- Counts: due (in the schedule), next_due (its earliest time), queued,
-- stream (entries), pending (delivered, not acknowledged), consumers,
-- failed, and the outcome counters in `stats`.
function Fleet:status()
  local k, db = self.keys, self.db
  local pending = db:xpending(k.jobs, GROUP)
  local first = db:zrange(k.due, 0, 0, { withscores = true })[1]   -- {member, score}
  local stats = {}
  local flat = db:hgetall(k.stats) or {}
  for name, value in pairs(flat) do stats[name] = tonumber(value) end
  return {
    due = db:zcard(k.due), next_due = first and tonumber(first[2]), queued = db:scard(k.queued),
    stream = db:xlen(k.jobs), pending = pending and tonumber(pending[1]) or 0,
    consumers = pending and type(pending[4]) == "table" and #pending[4] or 0,
    failed = db:hlen(k.failed), stats = stats,
  }
end

return fleet
