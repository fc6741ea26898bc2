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
-- or service yields, and so does one from a task registered before the
-- module was loaded (a script that requires it inside its task): HAProxy
-- started that coroutine and called its function with no argument, which
-- no stream function is.  From anywhere else (fetches, converters, init,
-- the file body, a coroutine of the script's own, an action or service
-- registered before this module was loaded) a call blocks the thread, and
-- says so once in HAProxy's log, with what to change.
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

-- Whether HAProxy made coroutine `co` itself (for a task or a stream): it
-- keeps a reference to each of its Lua threads in the registry; a coroutine
-- of the script's own is not there (and yielding in it would return to the
-- script's coroutine.resume, not to HAProxy).
local function started_by_haproxy(co)
  local ok, registry = pcall(debug.getregistry)
  if not ok or type(registry) ~= "table" then return false end
  for _, value in pairs(registry) do
    if value == co then return true end
  end
  return false
end

-- The arguments of the outermost function running on the current
-- coroutine, as a count of the non-nil ones: HAProxy calls a task's
-- function with none (2.6), and every stream function (action, service,
-- fetch, converter) with its txn, applet or sample.
local function outermost_arguments()
  local level = 2
  while debug.getinfo(level + 1, "f") do level = level + 1 end
  local given = 0
  local info = debug.getinfo(level, "u")
  for i = 1, (info and info.nparams or 0) do
    if select(2, debug.getlocal(level, i)) ~= nil then given = given + 1 end
  end
  local i = -1
  while debug.getlocal(level, i) do                   -- varargs
    if select(2, debug.getlocal(level, i)) ~= nil then given = given + 1 end
    i = i - 1
  end
  return given
end

-- A coroutine no wrapped registration marked: a task registered before this
-- module was loaded (the module required inside the task) yields like any
-- task; a stream function registered before it cannot be told from a
-- sample fetch, so it blocks (and the log says why).
local function classify(co)
  if started_by_haproxy(co) and outermost_arguments() == 0 then return "yield" end
  return "early"
end

--- True when the running coroutine belongs to a task (whenever it was
-- registered), or to an action or a service registered after this module
-- was loaded: `core.msleep` yields to HAProxy there.
function kf_haproxy.can_yield()
  local co, main = coroutine.running()
  if main then return false end
  if marks[co] == nil then marks[co] = classify(co) end
  return marks[co] == "yield"
end

local function describe_context()
  local co, main = coroutine.running()
  if main then return "the Lua file body or an init function" end
  if marks[co] == "block" then return "a sample fetch, a converter or an init function" end
  if marks[co] == "early" and started_by_haproxy(co) then
    return "an action, service, fetch or converter registered before require \"keyfactor.haproxy\""
      .. " (require it at the top of the script, before any core.register_*, so their calls yield)"
  end
  return "a coroutine of the script's own, not one HAProxy started (HAProxy can only resume its own)"
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
