--- HTTP for the client: URLs, headers, JSON, retries, errors, debug lines.
--
-- One `transport` per client, over one `keyfactor.core` session.  Every API
-- call goes through `transport:call`.  Every wait goes through its driver
-- (keyfactor.driver: block, or yield to cqueues, HAProxy, nginx);
-- `kf:parallel` installs its run's driver over the client's own for its
-- length, so that its workers yield to the run (keyfactor.parallel.scheduler) while
-- other calls proceed.  What a failure means, and whether to retry, is
-- keyfactor.outcome's.
-- @module keyfactor.http.transport

local core = require "keyfactor.core"
local driver = require "keyfactor.driver"
local errors = require "keyfactor.errors"
local outcome = require "keyfactor.outcome"
local scheduler = require "keyfactor.parallel.scheduler"
local secrets = require "keyfactor.auth.secrets"

local transport = {}
local Transport = {}
Transport.__index = Transport



--- Percent-encodes a query component; spaces become %20 (the Keyfactor
-- client's habit; `+` would be read as a literal plus by some servers).
function transport.escape(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end
local escape = transport.escape

local function format_value(v)
  if type(v) == "number" and math.tointeger and math.tointeger(v) then
    return tostring(math.tointeger(v))
  end
  return tostring(v)
end

--- `{a = 1, b = "x y", c = true}` -> "a=1&b=x%20y&c=true", keys sorted so
-- URLs are stable; integral numbers without a fraction, booleans as
-- true/false.
function transport.query_string(query)
  if type(query) == "string" then return query end
  local keys = {}
  for k, v in pairs(query) do
    if v ~= nil then keys[#keys + 1] = k end
  end
  table.sort(keys)
  for i, k in ipairs(keys) do
    keys[i] = escape(k) .. "=" .. escape(format_value(query[k]))
  end
  return table.concat(keys, "&")
end

--- The headers every request sends (`config` as `keyfactor.new` completes
-- it); given to the core session once.
function transport.default_headers(config)
  local headers = {
    "Accept: application/json",
    "Content-Type: application/json",
    "x-keyfactor-requested-with: APIClient",
    "x-keyfactor-api-version: " .. config.api_version,
    "Expect:",                        -- no 100-continue round trip on POSTs
  }
  for name, value in pairs(config.headers or {}) do
    headers[#headers + 1] = name .. ": " .. value
  end
  return headers
end

function transport.new(session, config)
  local self = setmetatable({
    session = session,
    base = config.url:gsub("/+$", ""),
    retries = config.retries,
    debug = config.debug,
    secrets = secrets.new(),          -- kept in C, out of reach of table walkers
    auth = nil,                       -- set by the client (keyfactor.auth.credentials)
    driver = driver.block,
  }, Transport)
  if config.driver then self:set_driver(config.driver) end
  return self
end

-- The drivers installed form a chain: the transport's `driver`, then each
-- `kf:parallel` run's `wrapped`, down to the client's own.  The table and
-- field that hold `target` (nil: the client's own driver).
local function chain_slot(self, target)
  local holder, field = self, "driver"
  while holder[field] ~= target and scheduler.wrapped(holder[field]) do
    holder, field = holder[field], "wrapped"
  end
  return holder, field
end

--- Sets how this client waits (see keyfactor.driver).  During a
-- `kf:parallel` run this replaces the client's own driver under the run's.
function Transport:set_driver(d)
  d = driver.check(d, "set_driver")
  local holder, field = chain_slot(self, nil)
  holder[field] = d
end

-- The driver for a wait now: the installed one, or blocking where it
-- cannot yield (a host phase that forbids it).
local block = driver.block
function Transport:waiter()
  local d = self.driver
  if d ~= block and not d:active() then return block end
  return d
end

--- The `kf:parallel` run whose worker is running now, or nil.
function Transport:current_run()
  local d = self.driver
  return d.current ~= nil and d:current() or nil
end

--- Registers a secret under `name` (replacing any earlier one of that
-- name) to be redacted, in all its encoded forms and those of the related
-- strings `...`, from every message and debug line (keyfactor.auth.secrets).
function Transport:set_secret(name, secret, ...)
  self.secrets:add(name, secret, ...)
end

--- The secret registered under `name`, for the code that must send it.
function Transport:secret(name)
  return self.secrets:get(name)
end

-- Text from the server or libcurl: every secret out, however short.
function Transport:redact(text, extra)
  return self.secrets:redact(text, extra)
end

-- Waits for a started request, through the driver (blocking directly when
-- it is the default or cannot yield here).
function Transport:await(request)
  local d, session = self.driver, self.session
  if d == block or not d:active() then return session:wait(request) end
  if d.wait then return d:wait(session, request) end
  driver.wait(d, session, request)
end

--- Sleeps `seconds` through the driver.
function Transport:sleep(seconds)
  self:waiter():sleep(seconds)
end

-- The first readable line of a non-JSON error page (HTML tags stripped;
-- the body was redacted before, so stripping cannot break a secret apart).
local function page_summary(body)
  local text = body:gsub("<[^>]*>", " "):gsub("%s+", " "):gsub("^ ", "")
  if #text > 200 then text = text:sub(1, 200) .. "..." end
  return text ~= "" and text or "(empty body)"
end

-- Keyfactor's error body: {ErrorCode, Message, FailedOperations = [{Reason}]}
local function error_details(body)
  local decoded = core.decode_json(body)
  if type(decoded) ~= "table" then return nil, page_summary(body) end
  local message = decoded.Message or decoded.message or decoded.error_description or decoded.error
  if type(decoded.FailedOperations) == "table" then
    local reasons = {}
    for _, op in ipairs(decoded.FailedOperations) do
      if type(op) == "table" and op.Reason then reasons[#reasons + 1] = tostring(op.Reason) end
    end
    if #reasons > 0 then
      message = (message and message .. ": " or "") .. table.concat(reasons, "; ")
    end
  end
  local code = decoded.ErrorCode
  return code ~= nil and tostring(code) or nil, message and tostring(message) or page_summary(body)
end

--- The error for a transfer that got no answer (`record` as
-- `request:result()` gives it).
function Transport:transport_failure(method, path, record, extra)
  local fields = outcome.failure(method, record)
  fields.method, fields.path = method, path
  fields.message = self:redact(fields.message, extra)
  return errors.new(fields)
end

--- The error for an answer, or nil for a 2xx.
function Transport:http_failure(method, path, status, body, headers, extra)
  local kind, retryable, unprocessed, refused = outcome.status(method, status)
  if not kind then return nil end
  -- redacted before anything is decoded, stripped or cut, and after
  local code, text = error_details(self:redact(body, extra))
  return errors.new {
    kind = kind, status = status, code = code, message = self:redact(text, extra),
    method = method, path = path, retryable = retryable, unprocessed = unprocessed, refused = refused,
    retry_after = outcome.retry_after(headers and headers["retry-after"]),
  }
end

function Transport:log(line)
  if self.debug then self.debug(self.secrets:redact(line, nil, secrets.OWN_TEXT_MIN)) end
end

--- Prepares an API call and, with `start`, sends its first attempt now
-- without waiting (for prefetching); `finish` completes it.
-- `opts`: query (table or string), body (table -> JSON, or string), headers
-- (array of "Name: value", replacing the session's of the same name), secrets (strings to redact), url (absolute,
-- instead of base .. path), raw (return the body undecoded), headers_wanted
-- (return the response headers too), userpwd, auth.
local NO_OPTS = {}
function Transport:begin(method, path, opts, start)
  opts = opts or NO_OPTS
  local url = opts.url or self.base .. path
  if opts.query then
    local qs = transport.query_string(opts.query)
    if qs ~= "" then url = url .. "?" .. qs end
  end
  local body = opts.body
  if type(body) == "table" then body = core.encode_json(body) end
  -- The call is also the core's request spec (session:start reads method,
  -- url, headers, body, userpwd, auth, timeout): one table per call.
  local call = { method = method, url = url, path = path, opts = opts, body = body }
  if opts ~= NO_OPTS then   -- the rest only when given: a small table for the common call
    call.headers, call.userpwd, call.auth, call.timeout = opts.headers, opts.userpwd, opts.auth, opts.timeout
  end
  -- not inside a kf:parallel worker: each holds one transfer at most
  if start and not self:current_run()
      and (not self.auth or opts.auth == false or self.auth:ready()) then
    call.started = self.session:start(call)
  end
  return call
end

-- The URL as debug lines show it: relative to the base URL.
local function shown(self, call)
  return call.url:sub(#self.base + 1)
end

-- One attempt, to the finished request (the prefetched one if there is
-- one); nil, err when no token could be had or the client was closed
-- meanwhile (by another coroutine, a callback, ...).
function Transport:attempt(call)
  local session = self.session
  if session:closed() then
    return nil, errors.canceled { method = call.method, path = call.path,
      message = "the client was closed before the call could be sent" }
  end
  local request = call.started
  if request then
    call.started = nil
  else
    local auth = self.auth
    if auth and auth.oauth and call.opts.auth ~= false then   -- only OAuth has anything to prepare
      local ok, err = auth:prepare()
      if not ok then return nil, err end
    end
    request = session:start(call)
  end
  self:await(request)
  return request
end

--- Runs a prepared call to its end, with retries.
-- Returns decoded body, status, headers (only with opts.headers_wanted or
-- opts.raw); or nil, err.
function Transport:finish(call)
  local method, path, opts = call.method, call.path, call.opts
  local refreshed = false
  local attempt = 0
  while true do
    attempt = attempt + 1
    local request, auth_err = self:attempt(call)
    if not request then return nil, auth_err end
    -- a 2xx answer comes decoded straight from the received bytes (unless raw)
    local status, body, seconds, why = request:result(not opts.raw)
    local err, headers
    if status == nil then        -- body: the failure record
      err = self:transport_failure(method, path, body, opts.secrets)
    elseif status < 200 or status >= 300 or opts.raw or opts.headers_wanted then
      headers = request:headers()
      err = self:http_failure(method, path, status, body, headers, opts.secrets)
    end
    if not err then
      if self.debug then
        self:log(string.format("%s %s %d %.1fms", method, shown(self, call), status, seconds * 1000))
      end
      if opts.raw then return body, status, headers end
      if body == "" then return true, status, headers end
      local value = body
      if value == nil then
        return nil, errors.decode {
          status = status, method = method, path = path,
          message = "response is not valid JSON: " .. self:redact(tostring(why), opts.secrets),
        }
      end
      return value, status, headers
    end
    -- An expired OAuth token: the server refused before doing anything, so
    -- one fresh token and one resend are safe even for a POST.
    if status == 401 and not refreshed and self.auth and self.auth:can_refresh() and opts.auth ~= false then
      refreshed = true
      self.auth:invalidate()
      self:log(string.format("%s %s 401, refreshing the OAuth token", method, shown(self, call)))
      attempt = attempt - 1
    elseif err.retryable and attempt <= self.retries then
      local delay = outcome.delay(attempt, err)
      self:log(string.format("%s %s failed: %s; retry %d/%d in %.2fs",
        method, shown(self, call), tostring(err), attempt, self.retries, delay))
      if delay > 0 then self:sleep(delay) end
    else
      self:log(string.format("%s %s failed: %s", method, shown(self, call), tostring(err)))
      return nil, err
    end
  end
end

--- Performs an API call (see `begin` for `opts`).
-- Returns decoded body, status, headers; or nil, err.
function Transport:call(method, path, opts)
  return self:finish(self:begin(method, path, opts))
end

--- Closes the session: its requests are canceled, and every call waiting
-- on them (in any coroutine) ends with `nil, err` of kind "canceled".  The
-- driver lets go of the session's descriptor first.
function Transport:close()
  if self.session:closed() then return end
  if self.driver.release then self.driver:release(self.session) end
  self.session:close()
end

--- Lets a prefetched request progress without blocking.
function Transport:poke()
  self.session:step(0)
end

--- Runs `fns` concurrently (kf:parallel): installs the run's driver over
-- the client's own for the length of the run, which waits for the network
-- through the client's.
function Transport:parallel(fns, opts, args_for)
  local run = scheduler.new(self.session, fns, opts, args_for, self:waiter(), self.driver)
  self.driver = run.driver
  local ok, values, errs = pcall(run.run, run)
  -- out of the chain, wherever it is now (runs of one client may overlap)
  local holder, field = chain_slot(self, run.driver)
  if holder[field] == run.driver then holder[field] = run.driver.wrapped end
  if not ok then error(values, 0) end
  return values, errs
end

return transport
