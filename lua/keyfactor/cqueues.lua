--- Driving the client from a cqueues event loop.
--
--   local cqueues = require "cqueues"
--   require("keyfactor.cqueues").attach(kf)
--   local loop = cqueues.new()
--   loop:wrap(function() local cert = kf:certificate(42) ... end)   -- yields, never blocks
--   loop:wrap(function() serve_other_things() end)
--   assert(loop:loop())
--
-- Once attached, every wait of a `kf:` call made inside a cqueues coroutine
-- (calls, kf:parallel, paging, token fetches, retry backoff) yields to the
-- loop; outside a cqueues coroutine the call blocks as usual.  The loop
-- watches one descriptor per client, `session:pollfd()`, which stays open
-- while curl opens and closes its sockets, so a server hang-up, a retry or
-- a connect timeout never leaves cqueues holding a closed descriptor.
-- @module keyfactor.cqueues

local cqueues = require "cqueues"

local kf_cqueues = {}

local Driver = { name = "cqueues" }
Driver.__index = Driver

function Driver:active()
  local controller, managed = cqueues.running()
  return controller ~= nil and managed == true
end

function Driver:poll(session, timeout)
  local wait = timeout
  local due = session:timeout()
  if due and due < wait then wait = due end
  if wait > 0 then
    local pollable = self.pollables[session]
    if not pollable then
      pollable = { pollfd = session:pollfd(), events = "r" }
      self.pollables[session] = pollable
    end
    cqueues.poll(pollable, wait)
  end
  -- kf:close() from another coroutine meanwhile: its requests are canceled
  if session:closed() then return {} end
  return (session:step(0))
end

-- Called by kf:close() before the session's descriptor is closed: cqueues
-- forgets it and wakes whoever polls it, so that neither its loop nor a
-- later poll meets a closed descriptor ("Bad file descriptor").
function Driver:release(session)
  local pollable = self.pollables[session]
  if pollable then
    self.pollables[session] = nil
    cqueues.cancel(pollable.pollfd)
  end
end

function Driver:sleep(seconds)
  cqueues.sleep(seconds)
end

--- The cqueues driver (see keyfactor.driver).
function kf_cqueues.driver()
  return setmetatable({ pollables = setmetatable({}, { __mode = "k" }) }, Driver)
end

--- Makes `kf` cooperate with cqueues.  Returns `kf`.
function kf_cqueues.attach(kf)
  return kf:set_driver(kf_cqueues.driver())
end

return kf_cqueues
