--- How the client waits for the network: drivers.
--
-- A client is given one driver (`keyfactor.new{driver = d}`, or
-- `kf:set_driver(d)`, which is what `attach(kf)` of keyfactor.cqueues,
-- keyfactor.haproxy and keyfactor.ngx does).  Every wait of the client goes
-- through it: a single call, `kf:parallel` (whose run installs a driver of
-- its own over it for its length: keyfactor.parallel.scheduler), paging, token
-- fetches, retry backoff, `wait_deployed` intervals and `kf:sleep`.  A
-- driver is a table with:
--
--   name                     "block", "cqueues", "haproxy", "ngx", ...
--   d:active()               true when the running code may yield to the
--                            host now; when false, this wait blocks instead
--   d:poll(session, timeout) waits up to `timeout` seconds for curl (its
--                            sockets or its timer), then drives the session
--                            without blocking; returns the array of requests
--                            that finished (maybe empty)
--   d:sleep(seconds)         sleeps, letting the host run meanwhile
--   d:wait(session, request) optional: waits until `request` is done
--   d:release(session)       optional: the client is being closed (kf:close(),
--                            maybe from another coroutine while a call
--                            waits here): forget what is watched for it
--
-- A poll that finds the session closed returns no request: the waits see
-- their requests canceled and end with `nil, err` of kind "canceled".
--
-- The C session tells a driver what to watch: `session:pollfd()` (one
-- descriptor, readable when any of curl's sockets is ready),
-- `session:sockets()` (the sockets themselves), `session:timeout()` (when
-- curl wants to be called regardless).  Hosts that cannot watch a
-- descriptor from Lua (HAProxy, nginx) poll: `driver.polling` below.
-- @module keyfactor.driver

local core = require "keyfactor.core"

local driver = {}

--- The default: blocks the calling thread in poll(2).
driver.block = {
  name = "block",
  active = function() return true end,
  poll = function(_, session, timeout) return (session:step(timeout)) end,
  wait = function(_, session, request)
    if not request:done() then session:wait(request) end
  end,
  sleep = function(_, seconds) core.sleep(seconds) end,
}

--- Waits until `request` is done, with driver `d`.
function driver.wait(d, session, request)
  if d.wait then return d:wait(session, request) end
  while not request:done() do d:poll(session, 1) end
end

-- Adaptive polling.  The first look comes after MIN_DELAY, each look that
-- finds nothing waits GROWTH times longer up to RAMP_MAX, and past that
-- QUIET_SHARE of the time nothing has happened (at most MAX_DELAY): a fast
-- call costs a millisecond or two of latency, a slow one RAMP_MAX or 15% of
-- its time, whichever is more (7% on average past a second, never more than
-- MAX_DELAY), and about 30 wake-ups in its first 3 s, 4 a second after that
-- (each costs the host ~60-140 us of CPU: its scheduler, a Lua resume, a
-- context switch).  Any socket activity starts over.
local MIN_DELAY, GROWTH, RAMP_MAX, QUIET_SHARE, MAX_DELAY = 0.001, 1.5, 0.05, 0.15, 0.25

local Polling = {}
Polling.__index = Polling

function Polling:active() return self.can_yield() end

function Polling:sleep(seconds) self.nap(seconds) end

function Polling:progress(events, finished)
  if events > 0 or finished > 0 then
    self.delay, self.quiet_since = MIN_DELAY, core.now()
    return
  end
  local ramp = math.min(self.delay * GROWTH, RAMP_MAX)
  self.delay = math.min(MAX_DELAY, math.max(ramp, (core.now() - self.quiet_since) * QUIET_SHARE))
end

-- A look needs no step when the last poll ended with one less than the
-- shortest nap ago (back to back in one wait) and curl's timer is not due
-- (a request started since makes it due at once).
local FRESH = MIN_DELAY

function Polling:poll(session, timeout)
  if session:closed() then return {} end
  local now = core.now()
  -- no look for a while: a new wait, not the quiet middle of an old one
  if now - self.last_look > 2 * self.delay + 0.01 then self.delay, self.quiet_since = MIN_DELAY, now end
  local due = session:timeout()
  if now - self.last_look > FRESH or due == 0 then
    local finished, events = session:step(0)
    if events > 0 then self:progress(events, 0) end
    if #finished > 0 or timeout <= 0 then
      self.last_look = core.now()
      return finished
    end
    due = session:timeout()
  elseif timeout <= 0 then
    return {}
  end
  local wait = math.min(self.delay, timeout)
  if due and due < wait then wait = math.max(due, MIN_DELAY) end
  self.nap(wait)
  if session:closed() then return {} end   -- kf:close() while it napped
  local finished, events = session:step(0)
  self.last_look = core.now()
  self:progress(events, #finished)
  return finished
end

--- A driver for hosts that can only sleep.
-- `spec.name`, `spec.sleep(seconds)` (yields to the host), `spec.active()`
-- (whether sleeping may yield here; default: always).
function driver.polling(spec)
  assert(type(spec) == "table" and type(spec.sleep) == "function",
    "keyfactor.driver.polling: spec.sleep must be a function")
  return setmetatable({
    name = spec.name or "polling", nap = spec.sleep,
    can_yield = spec.active or function() return true end,
    delay = MIN_DELAY, quiet_since = core.now(), last_look = 0,
  }, Polling)
end

--- Raises unless `d` has what a driver needs (for set_driver).
function driver.check(d, where)
  if type(d) ~= "table" then error(where .. ": driver must be a table, not " .. type(d), 3) end
  for _, name in ipairs { "active", "poll", "sleep" } do
    if type(d[name]) ~= "function" then
      error(where .. ": driver." .. name .. " must be a function", 3)
    end
  end
  return d
end

return driver
