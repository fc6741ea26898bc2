-- Fault injection (POST/DELETE /_sandbox/faults) and the request log
-- (GET /_sandbox/requests).
local util = require "keyfactor.sandbox.util"
local check = require "keyfactor.sandbox.check"

local faults = {}

-- "exception" raises a Lua error in place of the handler, to prove that a
-- broken handler is answered with 500 and the server goes on.
local ACTIONS = { reset_before = true, reset_after = true, truncate = true,
  invalid_json = true, html = true, oversize = true, exception = true }

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

return faults
