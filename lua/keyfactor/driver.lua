--- How the client waits for the network: drivers.
--
-- A client's transport is given one driver (`keyfactor.new{driver = d}`,
-- or `kf.http:set_driver(d)`, which is what `attach(kf)` of
-- keyfactor.cqueues, keyfactor.haproxy and keyfactor.ngx does).  Every wait
-- of the client goes through it: a single call, `kf:parallel`, paging,
-- token fetches, retry backoff and `wait_deployed` intervals.  A driver is
-- a table with:
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
  wait = function(_, session, request) session:wait(request) end,
  sleep = function(_, seconds) core.sleep(seconds) end,
}

--- Waits until `request` is done, with driver `d`.
function driver.wait(d, session, request)
  if d.wait then return d:wait(session, request) end
  while not request:done() do d:poll(session, 1) end
end

-- Adaptive polling: the first look comes after MIN_DELAY, then each look
-- that finds nothing waits GROWTH times longer, up to MAX_DELAY; any socket
-- activity starts over.  A fast call so costs at most a few ms of latency,
-- a slow one a few dozen wake-ups a second.
local MIN_DELAY, MAX_DELAY, GROWTH = 0.001, 0.02, 1.5

local Polling = {}
Polling.__index = Polling

function Polling:active() return self.can_yield() end

function Polling:sleep(seconds) self.nap(seconds) end

function Polling:poll(session, timeout)
  local finished, events = session:step(0)
  if events > 0 then self.delay = MIN_DELAY end
  if #finished > 0 or timeout <= 0 then return finished end
  local wait = math.min(self.delay, timeout)
  local due = session:timeout()
  if due and due < wait then wait = math.max(due, MIN_DELAY) end
  self.nap(wait)
  finished, events = session:step(0)
  if events > 0 or #finished > 0 then
    self.delay = MIN_DELAY
  else
    self.delay = math.min(self.delay * GROWTH, MAX_DELAY)
  end
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
    can_yield = spec.active or function() return true end, delay = MIN_DELAY,
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
