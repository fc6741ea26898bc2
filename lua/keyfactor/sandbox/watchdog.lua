-- The sandbox's watchdog: no request may hold the event loop.
--
-- The server is one cqueues loop; a coroutine that runs without yielding
-- freezes every connection (lua-http's clean-up of some broken streams
-- loops forever on a socket at EOF, and a handler bug could too). A
-- heartbeat coroutine notes each turn of the loop, and every coroutine made
-- with cq:wrap carries a count hook: when it runs while the heartbeat is
-- older than the limit, it hangs up its stream (if it serves one) and
-- raises an error, which ends that coroutine; cqueues reports the error and
-- the loop goes on. The traceback goes to the log, to find the cause.
local cqueues = require "cqueues"
local util = require "keyfactor.sandbox.util"

local watchdog = {}

local HOOK_INSTRUCTIONS = 100000     -- about a millisecond of Lua between checks
local monotime = cqueues.monotime

-- The stream each coroutine serves (weak: a finished coroutine goes away).
local streams = setmetatable({}, { __mode = "k" })
local limit, beat = nil, nil

local function check()
  if monotime() - beat <= limit then return end
  beat = monotime()                  -- one culprit per stall
  local co = coroutine.running()
  util.log("%s", debug.traceback(string.format(
    "watchdog: a coroutine held the event loop for over %g s; dropped it", limit), 2))
  local stream = streams[co]
  if stream then require("keyfactor.sandbox.http").abort(stream) end
  error(string.format("watchdog: held the event loop for over %g s", limit), 2)
end

--- Records that the running coroutine serves `stream` (hung up if it stalls).
function watchdog.serving(stream)
  streams[coroutine.running()] = stream
end

--- Starts the heartbeat on `cq` and guards every coroutine wrapped from now
-- on (in any controller of this process). `seconds` is the limit.
function watchdog.start(cq, seconds)
  assert(limit == nil, "watchdog.start: already started")
  limit, beat = seconds, monotime()
  cq:wrap(function()
    while true do
      beat = monotime()
      cqueues.sleep(math.min(0.25, seconds / 4))
    end
  end)
  local wrap
  wrap = cqueues.interpose("wrap", function(self, f, ...)
    return wrap(self, function(...)
      debug.sethook(check, "", HOOK_INSTRUCTIONS)
      return f(...)
    end, ...)
  end)
end

return watchdog
