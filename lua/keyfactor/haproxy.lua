--- Driving the client from inside HAProxy (2.6+, Lua 5.3).
--
--   local keyfactor = require "keyfactor"
--   local kf_haproxy = require "keyfactor.haproxy"   -- before any core.register_*
--   local kf = kf_haproxy.attach(keyfactor.from_env())
--   core.register_task(function() local cert = kf:certificate(42) ... end)
--
-- Once attached, a `kf:` call made in a task, an action or a service waits
-- by sleeping in HAProxy (`core.msleep`, adaptive polling: ~1 ms, longer
-- while nothing completes), so the thread keeps serving meanwhile and, with
-- `lua-load`, the shared Lua lock is released while the call waits.
--
-- HAProxy gives Lua no way to ask whether it may yield, and yielding where
-- it may not (a sample fetch or a converter) aborts the whole Lua execution.
-- So this module wraps `core.register_task`, `_action`, `_service`,
-- `_fetches`, `_converters` and `_init`: a function registered after it is
-- loaded marks its coroutine as it runs.  A call from a marked task, action
-- or service yields; from anywhere else (fetches, converters, init, the file
-- body, a coroutine of the script's own, a function registered before this
-- module was loaded) it blocks the thread, and says so once in HAProxy's log.
-- @module keyfactor.haproxy

local driver = require "keyfactor.driver"

local kf_haproxy = {}

local core = _G.core

-- coroutine -> "yield" | "block": what the function running on it was
-- registered as.  HAProxy reuses a stream's coroutine for each Lua call of
-- that stream, so the mark is set on entry and cleared on return.
local marks = setmetatable({}, { __mode = "k" })

local YIELDING = { register_task = true, register_action = true, register_service = true }
local BLOCKING = { register_fetches = true, register_converters = true, register_init = true }

-- How the first argument that is a function is found: register_task(fn),
-- register_init(fn), register_fetches(name, fn), register_converters(name,
-- fn), register_action(name, actions, fn, nb_args), register_service(name, mode, fn).
local function wrap_registration(name, mark)
  local original = core[name]
  if type(original) ~= "function" then return end
  core[name] = function(...)
    local args = table.pack(...)
    for i = 1, args.n do
      local fn = args[i]
      if type(fn) == "function" then
        args[i] = function(...)
          local co = coroutine.running()
          local previous = marks[co]
          marks[co] = mark
          local results = table.pack(fn(...))
          marks[co] = previous
          return table.unpack(results, 1, results.n)
        end
        break
      end
    end
    return original(table.unpack(args, 1, args.n))
  end
end

--- True when the running coroutine belongs to a task, an action or a
-- service registered after this module was loaded: `core.msleep` yields
-- to HAProxy there.
function kf_haproxy.can_yield()
  local co, main = coroutine.running()
  return not main and marks[co] == "yield"
end

local function describe_context()
  local co, main = coroutine.running()
  if main then return "the Lua file body or an init function" end
  if marks[co] == "block" then return "a sample fetch, a converter or an init function" end
  return "a coroutine HAProxy did not start for a task, action or service registered after "
    .. "require \"keyfactor.haproxy\""
end

--- Makes `kf` yield to HAProxy while it waits.  Returns `kf`.
function kf_haproxy.attach(kf)
  local warned = false
  kf:set_driver(driver.polling {
    name = "haproxy",
    -- core.msleep takes whole milliseconds; 0 would be a busy yield.
    sleep = function(seconds)
      core.msleep(math.max(1, math.floor(seconds * 1000 + 0.5)))
    end,
    active = function()
      if kf_haproxy.can_yield() then return true end
      if not warned then
        warned = true
        core.log(core.warning, "keyfactor: a call made in " .. describe_context()
          .. " blocks this HAProxy thread until it completes (HAProxy cannot yield there);"
          .. " make Keyfactor calls from a task, an action or a service")
      end
      return false
    end,
  })
  return kf
end

if type(core) == "table" then
  for name in pairs(YIELDING) do wrap_registration(name, "yield") end
  for name in pairs(BLOCKING) do wrap_registration(name, "block") end
end

return kf_haproxy
