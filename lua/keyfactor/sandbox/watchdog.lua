-- The sandbox's watchdog: no request may hold the event loop.
--
-- The server is one cqueues loop; a coroutine that runs without yielding
-- freezes every connection (lua-http's clean-up of some broken streams
-- loops forever on a socket at EOF, and a handler bug could too). A
-- heartbeat coroutine notes each turn of the loop, and every coroutine made
-- with cq:wrap carries a count hook that notes how long that coroutine has
-- been running without a pause. A coroutine that has run for longer than the
-- limit while the heartbeat is as old is the one holding the loop: it hangs
-- up its stream (if it serves one) and raises an error, which ends that
-- coroutine; cqueues reports the error and the loop goes on. The traceback
-- goes to the log, to find the cause.
--
-- Hooks are per coroutine in Lua 5.4: coroutines that a guarded one creates
-- itself are not guarded (the sandbox creates none; lua-http uses cq:wrap).
local cqueues = require "cqueues"
local util = require "keyfactor.sandbox.util"

local watchdog = {}

local HOOK_INSTRUCTIONS = 100000     -- about a millisecond of Lua between checks
-- Two checks further apart than this: the coroutine paused in between (it
-- yielded, or worked in C, where no hook runs): a new run starts.
local PAUSE = 0.1
local monotime = cqueues.monotime

-- Per coroutine (weak keys: a finished coroutine goes away): the stream it
-- serves, its last check, and when its current run started.
local streams = setmetatable({}, { __mode = "k" })
local last_check = setmetatable({}, { __mode = "k" })
local run_start = setmetatable({}, { __mode = "k" })
local limit, beat = nil, nil

local function check()
  local co, now = coroutine.running(), monotime()
  local last = last_check[co]
  last_check[co] = now
  if not last or now - last > PAUSE then run_start[co] = now end
  if now - beat <= limit or now - run_start[co] <= limit then return end
  beat = now                          -- one culprit per stall
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
-- on (in any controller of this process: once per process). `seconds` is
-- the limit.
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
