-- Fault injection (POST/DELETE /_sandbox/faults) and the request log
-- (GET /_sandbox/requests).
local cqueues = require "cqueues"
local util = require "keyfactor.sandbox.util"
local check = require "keyfactor.sandbox.check"
local http = require "keyfactor.sandbox.http"

local faults = {}

-- "exception" raises a Lua error in place of the handler, to prove that a
-- broken handler is answered with 500 and the server goes on; "hog" loops
-- without yielding, as a runaway handler would, to prove that the watchdog
-- (watchdog.lua) hangs it up and the server goes on; "stall" holds the
-- whole server in C for delay_ms, as a slow key generation would, then
-- answers: the watchdog must not take that for a runaway handler.
-- What each action does to the request: "answer" in place of the handler,
-- before the body is read (faults.answer); "raise" in the handler; "stall"
-- the server, then the handler answers; "spoil" the handler's answer
-- (faults.spoil).
local ACTIONS = { reset_before = "answer", html = "answer", oversize = "answer", hog = "answer",
  exception = "raise", stall = "stall", reset_after = "spoil", truncate = "spoil", invalid_json = "spoil" }

---------------------------------------------------------------- faults
-- Validates and adds one fault rule from a decoded body.
function faults.add(sandbox, body)
  local path = check.string(body, "path", true)
  local rule = {
    method = (check.string(body, "method", false) or "*"):upper(),
    path = path:lower(),
    times = check.int(body, "times", false) or 1,
    status = check.int(body, "status", false),
    retry_after = body.retry_after ~= util.null and body.retry_after or nil,
    delay_ms = check.int(body, "delay_ms", false) or 0,
    action = check.string(body, "action", false),
    body = body.body ~= util.null and body.body or nil,
    bytes = check.int(body, "bytes", false),
  }
  if type(rule.retry_after) == "number" then
    rule.retry_after = string.format("%d", math.floor(rule.retry_after))
  elseif rule.retry_after ~= nil and type(rule.retry_after) ~= "string" then
    util.bad_request("retry_after must be a number or a string")
  end
  if rule.path:sub(-1) == "*" then
    rule.prefix = true
    rule.path = rule.path:sub(1, -2)
  end
  if rule.action and not ACTIONS[rule.action] then
    util.bad_request("unknown fault action '" .. rule.action .. "'")
  end
  if rule.status and (rule.status < 100 or rule.status > 599) then
    util.bad_request("status must be an HTTP status code")
  end
  sandbox.faults[#sandbox.faults + 1] = rule
  return rule
end

local function matches(rule, method, path)
  if rule.method ~= "*" and rule.method ~= method then return false end
  local p = path:lower()
  if rule.prefix then return p:sub(1, #rule.path) == rule.path end
  return p == rule.path
end

-- Takes (consumes one use of) the first rule matching the request, if any.
function faults.take(sandbox, method, path)
  for i, rule in ipairs(sandbox.faults) do
    if matches(rule, method:upper(), path) then
      rule.times = rule.times - 1
      if rule.times <= 0 then table.remove(sandbox.faults, i) end
      return rule
    end
  end
end

--- What `rule` does (see ACTIONS); a status without an action is an
-- "answer", and a rule with neither only delays (nil).
function faults.effect(rule)
  if rule.action then return ACTIONS[rule.action] end
  return rule.status and "answer" or nil
end

-- The "stall" action: `ms` in C (where no Lua hook runs), then some Lua
-- work, so that the watchdog's hook surely runs while the loop is late.
local function stall(ms)
  os.execute(string.format("sleep %.3f", ms / 1000))
  local sum = 0
  for i = 1, 300000 do sum = sum + i end
  return sum
end

--- Waits as `rule` asks before the request is served: delay_ms in the
-- event loop, or, for "stall", with the whole server held.
function faults.delay(rule)
  if rule.action == "stall" then
    stall(rule.delay_ms)
  elseif rule.delay_ms > 0 then
    cqueues.sleep(rule.delay_ms / 1000)
  end
end

function faults.error_body(rule)
  if type(rule.body) == "table" then return util.encode(rule.body) end
  if type(rule.body) == "string" then return rule.body end
  return util.encode{ ErrorCode = util.codes.fault,
    Message = string.format("Injected fault: HTTP %d", rule.status or 500) }
end

function faults.html_page(status)
  return string.format(
    "<!DOCTYPE html>\n<html><head><title>%d Error</title></head>\n" ..
    "<body><h1>%d Error</h1><p>The gateway could not reach the Keyfactor server.</p></body></html>\n",
    status, status)
end

---------------------------------------------------------------- request log
function faults.log_start(sandbox, method, path, query)
  local log = sandbox.request_log
  local entry = { id = #log + 1, method = method, path = path, query = query or "",
    status = 0, time = util.now(), started = util.monotime() }
  log[#log + 1] = entry
  return entry
end

function faults.log_finish(entry, status)
  entry.status = status or 0
  entry.finished = util.monotime()
end

---------------------------------------------------------------- answers
local IO_TIMEOUT = http.IO_TIMEOUT

-- Streams a large JSON body in chunks (fault action "oversize").
local function send_oversize(stream, bytes)
  local prefix, suffix = '{"Data":"', '"}'
  local filler = bytes - #prefix - #suffix
  if filler < 0 then filler, prefix, suffix = 0, "", string.rep(" ", bytes) end
  -- The client gives up part way (that is the point): a failed write hangs
  -- up at once, as in http.send(), or lua-http's clean-up can spin.
  if not stream:write_headers(http.new_headers(200, "application/json; charset=utf-8", bytes), false, IO_TIMEOUT)
      or not stream:write_chunk(prefix, false, IO_TIMEOUT) then
    return http.abort(stream)
  end
  local chunk = string.rep("x", 65536)
  while filler > 0 do
    local n = math.min(filler, #chunk)
    if not stream:write_chunk(n == #chunk and chunk or chunk:sub(1, n), false, IO_TIMEOUT) then
      return http.abort(stream)
    end
    filler = filler - n
  end
  if not stream:write_chunk(suffix, true, IO_TIMEOUT) then http.abort(stream) end
end

-- Answers a fault that replaces the handler. Returns the logged status.
function faults.answer(stream, rule)
  if rule.action == "reset_before" then
    http.abort(stream)
    return 0
  elseif rule.action == "html" then
    local status = rule.status or 502
    http.send(stream, status, faults.html_page(status), "text/html; charset=utf-8")
    return status
  elseif rule.action == "oversize" then
    send_oversize(stream, rule.bytes or 80 * 1024 * 1024)
    return 200
  elseif rule.action == "hog" then
    local spins = 0
    while true do spins = spins + 1 end
  end
  local extra = rule.retry_after and { ["retry-after"] = tostring(rule.retry_after) } or nil
  http.send(stream, rule.status, faults.error_body(rule), nil, extra)
  return rule.status
end

-- Sends the handler's answer, spoiled as the fault asks. Returns the logged status.
function faults.spoil(stream, rule, status, body, extra)
  if rule.action == "reset_after" then
    http.abort(stream)
    return 0
  elseif rule.action == "invalid_json" then
    http.send(stream, 200, "<<not json>> {\"Message\": ", "application/json; charset=utf-8")
    return 200
  end
  -- truncate: promise the full length, send half, hang up
  local h = http.new_headers(status, "application/json; charset=utf-8", #body, extra)
  if stream:write_headers(h, false, IO_TIMEOUT) then
    stream:write_chunk(body:sub(1, #body // 2), false, IO_TIMEOUT)
  end
  http.abort(stream)
  return status
end

return faults
