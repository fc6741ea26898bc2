--- Driving the client from a cqueues event loop.
--
--   local cqueues = require "cqueues"
--   local kf_cqueues = require "keyfactor.cqueues"
--   kf_cqueues.attach(kf)
--   local loop = cqueues.new()
--   loop:wrap(function() local cert = kf:certificate(42) ... end)   -- yields, never blocks
--   loop:wrap(function() serve_other_things() end)
--   assert(loop:loop())
--
-- Once attached, a `kf:` call made inside a cqueues coroutine waits on
-- curl's sockets through `cqueues.poll` (so the rest of the service keeps
-- running); outside a cqueues coroutine it blocks as usual.
-- @module keyfactor.cqueues

local cqueues = require "cqueues"

local kf_cqueues = {}

local unpack = table.unpack or unpack   -- luacheck: ignore 113

-- Longest single wait, so a transfer whose socket curl has not opened yet
-- (name resolution) is still driven promptly.
local MAX_WAIT = 0.05

local function wait(session, request)
  while not request:done() do
    local pollables = {}
    for i, fd in ipairs(session:fds()) do
      pollables[i] = { pollfd = fd[1], events = fd[2] }
    end
    pollables[#pollables + 1] = math.min(session:timeout() or MAX_WAIT, MAX_WAIT)
    cqueues.poll(unpack(pollables))
    session:step(0)
  end
end

--- Makes `kf` cooperate with cqueues.  Returns `kf`.
function kf_cqueues.attach(kf)
  kf.http.waiter = function(session, request)
    if not cqueues.running() then return session:wait(request) end
    return wait(session, request)
  end
  kf.http.sleeper = function(seconds)
    if not cqueues.running() then return false end
    cqueues.sleep(seconds)
    return true
  end
  return kf
end

return kf_cqueues
