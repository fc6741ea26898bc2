-- The sandbox HTTPS server: TLS listener (lua-http on cqueues), routing,
-- auth and header checks, error answers, fault injection, request log, and
-- the /_sandbox/ test hooks. Every request runs in its own coroutine; no
-- error in one request (Lua error, TLS failure, vanished client) stops it.
local cqueues = require "cqueues"
local signal = require "cqueues.signal"
local http_server = require "http.server"
local http_headers = require "http.headers"
local ssl_context = require "openssl.ssl.context"

local util = require "keyfactor.sandbox.util"
local pki = require "keyfactor.sandbox.pki"
local state = require "keyfactor.sandbox.state"
local auth = require "keyfactor.sandbox.auth"
local faults = require "keyfactor.sandbox.faults"
local jobs = require "keyfactor.sandbox.jobs"
local stores = require "keyfactor.sandbox.stores"
local catalog = require "keyfactor.sandbox.catalog"

local server = {}

local API = "/keyfactorapi"
local PRODUCT_VERSION = "10.5.0.0"
local IO_TIMEOUT = 30
local MAX_BODY = 16 * 1024 * 1024

---------------------------------------------------------------- routing
local function status_endpoints(sandbox)
  return catalog.endpoint_list(sandbox.routes), 200, { ["x-keyfactor-product-version"] = PRODUCT_VERSION }
end

local function build_routes()
  local routes = {}
  local modules = {
    require "keyfactor.sandbox.certificates", require "keyfactor.sandbox.enrollment",
    jobs, stores, require "keyfactor.sandbox.workflow", catalog,
  }
  for _, name in ipairs{ "agents", "metadata", "history", "retrieval", "store_admin" } do
    modules[#modules + 1] = require("keyfactor.sandbox." .. name)
  end
  for _, m in ipairs(modules) do
    for _, r in ipairs(m.routes) do
      -- named-field routes ({method=, path=, handler=}) until the router takes them
      if r.method then
        r = { r.method, (r.path:gsub("{[%w_]+:int}", "(%%d+)"):gsub("{[%w_]+}", "([^/]+)")), r.handler }
      end
      routes[#routes + 1] = r
    end
  end
  routes[#routes + 1] = { "GET", "/Status/Endpoints", status_endpoints }
  -- Literal routes first, so /certificates/revoke never matches /certificates/(id).
  local function literal(r) return r[2]:find("(", 1, true) == nil end
  table.sort(routes, function(a, b)
    if literal(a) ~= literal(b) then return literal(a) end
    return #a[2] > #b[2]
  end)
  for _, r in ipairs(routes) do
    r.pattern = "^" .. r[2]:lower() .. "/?$"
    r.display = r[2]:gsub("%(%[%^/%]%+%)", "{id}"):gsub("%(%%d%+%)", "{id}")
  end
  return routes
end

local function find_route(routes, method, lower_path)
  local sub = lower_path:sub(#API + 1)
  local path_known = false
  for _, r in ipairs(routes) do
    local captures = { sub:match(r.pattern) }
    if captures[1] then
      if r[1] == method then
        -- a pattern without captures yields the whole match, which is no argument
        if not r[2]:find("(", 1, true) then captures = {} end
        return r, captures
      end
      path_known = true
    end
  end
  if path_known then util.fail(405, "bad_request",
    "The requested resource does not support http method '" .. method .. "'") end
  util.not_found("No HTTP resource was found that matches the request URI '" .. lower_path .. "'")
end

---------------------------------------------------------------- requests
local function url_decode(s)
  return (s:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function parse_query(qs)
  local params = {}
  for pair in (qs or ""):gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    params[url_decode(k):lower()] = url_decode(v)
  end
  return params
end

local Request = {}
Request.__index = Request

function Request:json()
  if self.decoded == nil then
    if self.body == "" then util.fail(400, "bad_json", "A JSON request body is required") end
    local v, err = util.decode(self.body)
    if v == nil then util.fail(400, "bad_json", "The request body is not valid JSON: " .. tostring(err)) end
    self.decoded = v
  end
  return self.decoded
end

local function read_body(stream, headers)
  local length = tonumber(headers:get("content-length") or "")
  if length and length > MAX_BODY then util.fail(413, "bad_request", "The request body is too large") end
  local body, err = stream:get_body_as_string(IO_TIMEOUT)
  if not body then return nil, err end
  -- lua-http may hand over a partial body when the client hangs up early
  if length and #body < length then return nil, "body shorter than Content-Length" end
  if #body > MAX_BODY then util.fail(413, "bad_request", "The request body is too large") end
  return body
end

---------------------------------------------------------------- answers
local function new_headers(status, content_type, length, extra)
  local h = http_headers.new()
  h:append(":status", tostring(status))
  h:append("content-type", content_type)
  if length then h:append("content-length", tostring(length)) end
  for k, v in pairs(extra or {}) do h:append(k, tostring(v)) end
  return h
end

-- Closes the connection without (finishing) an answer. The stream is marked
-- closed so lua-http neither writes an automatic answer on the dead socket nor
-- reads on to drain it: with cqueues + OpenSSL 3 that drain can spin forever.
local function abort(stream)
  local conn = stream.connection
  if conn and conn.socket then conn.socket:shutdown() end
  if stream.state ~= "closed" then pcall(stream.set_state, stream, "closed") end
end

local function send(stream, status, body, content_type, extra)
  local h = new_headers(status, content_type or "application/json; charset=utf-8", #body, extra)
  local ok, err = stream:write_headers(h, body == "", IO_TIMEOUT)
  if ok and body ~= "" then ok, err = stream:write_chunk(body, true, IO_TIMEOUT) end
  if not ok then
    util.log("could not answer: %s", tostring(err))
    -- Hang up at once: lua-http's clean-up read on such a TLS stream can spin.
    abort(stream)
  end
  return ok
end

local function error_body(code, message)
  return util.encode{ ErrorCode = code, Message = message }
end

-- Turns a raised value into (status, body, headers); logs internal errors.
local function failure_answer(err, trace)
  if util.is_failure(err) then
    return err.status, error_body(err.code, err.message), err.headers
  end
  util.log("internal error: %s", trace or tostring(err))
  return 500, error_body(util.codes.internal, "Internal server error: " .. tostring(err))
end

---------------------------------------------------------------- API dispatch
local function traceback(e)
  if util.is_failure(e) then return e end
  return { err = e, trace = debug.traceback(tostring(e), 2) }
end

-- Runs the API request; returns status, encoded body, extra headers.
local function dispatch(sandbox, req)
  local ok, status, body, headers = xpcall(function()
    jobs.process(sandbox)
    if req.lower_path == "/oauth2/token" then
      if req.method ~= "POST" then util.fail(405, "bad_request", "Use POST for /oauth2/token") end
      local answer, code = auth.token(sandbox, req)
      return code or 200, util.encode(answer)
    end
    local route, captures = find_route(sandbox.routes, req.method, req.lower_path)
    req.user = auth.authenticate(sandbox, req.headers)
    if not req.headers:get("x-keyfactor-requested-with") then
      util.bad_request("The x-keyfactor-requested-with header is required")
    end
    local version = req.headers:get("x-keyfactor-api-version")
    if version and not ({ ["1"] = true, ["1.0"] = true, ["2"] = true })[version] then
      util.bad_request("Unsupported x-keyfactor-api-version '" .. version .. "'")
    end
    if req.inject_exception then error("injected handler exception") end
    local answer, code, extra = route[3](sandbox, req, table.unpack(captures))
    if answer == nil and code == 204 then return 204, "", extra end
    return code or 200, util.encode(answer), extra
  end, traceback)
  if not ok then
    local err = status
    if not util.is_failure(err) then return failure_answer(err.err, err.trace) end
    return failure_answer(err)
  end
  return status, body, headers
end

local function persist(sandbox)
  if sandbox.dirty and sandbox.persistent then
    state.save(sandbox.state, sandbox.dir)
  end
  sandbox.dirty = false
end

-- Streams a large JSON body in chunks (fault action "oversize").
local function send_oversize(stream, bytes)
  local prefix, suffix = '{"Data":"', '"}'
  local filler = bytes - #prefix - #suffix
  if filler < 0 then filler, prefix, suffix = 0, "", string.rep(" ", bytes) end
  -- The client gives up part way (that is the point): a failed write hangs
  -- up at once, as in send(), or lua-http's clean-up can spin.
  if not stream:write_headers(new_headers(200, "application/json; charset=utf-8", bytes), false, IO_TIMEOUT)
      or not stream:write_chunk(prefix, false, IO_TIMEOUT) then
    return abort(stream)
  end
  local chunk = string.rep("x", 65536)
  while filler > 0 do
    local n = math.min(filler, #chunk)
    if not stream:write_chunk(n == #chunk and chunk or chunk:sub(1, n), false, IO_TIMEOUT) then
      return abort(stream)
    end
    filler = filler - n
  end
  if not stream:write_chunk(suffix, true, IO_TIMEOUT) then abort(stream) end
end

-- Answers a fault that replaces the handler. Returns the logged status.
local function answer_fault(stream, rule)
  if rule.action == "html" then
    local status = rule.status or 502
    send(stream, status, faults.html_page(status), "text/html; charset=utf-8")
    return status
  elseif rule.action == "oversize" then
    send_oversize(stream, rule.bytes or 80 * 1024 * 1024)
    return 200
  end
  local extra = rule.retry_after and { ["retry-after"] = tostring(rule.retry_after) } or nil
  send(stream, rule.status, faults.error_body(rule), nil, extra)
  return rule.status
end

-- Sends the handler's answer, spoiled as the fault asks. Returns the logged status.
local function answer_spoiled(stream, rule, status, body, extra)
  if rule.action == "reset_after" then
    abort(stream)
    return 0
  elseif rule.action == "invalid_json" then
    send(stream, 200, "<<not json>> {\"Message\": ", "application/json; charset=utf-8")
    return 200
  end
  -- truncate: promise the full length, send half, hang up
  local h = new_headers(status, "application/json; charset=utf-8", #body, extra)
  if stream:write_headers(h, false, IO_TIMEOUT) then
    stream:write_chunk(body:sub(1, #body // 2), false, IO_TIMEOUT)
  end
  abort(stream)
  return status
end

local function handle_api(sandbox, stream, req)
  local entry = faults.log_start(sandbox, req.method, req.path, req.query)
  local rule = faults.take(sandbox, req.method, req.path)
  if rule then
    entry.fault = rule.action or ("status " .. tostring(rule.status))
    if rule.delay_ms > 0 then cqueues.sleep(rule.delay_ms / 1000) end
    if rule.action == "reset_before" then
      abort(stream)
      return faults.log_finish(entry, 0)
    end
    if rule.action == "html" or rule.action == "oversize" or (rule.status and not rule.action) then
      return faults.log_finish(entry, answer_fault(stream, rule))
    end
    req.inject_exception = rule.action == "exception"
  end
  local ok, body_or_err = pcall(read_body, stream, req.headers)
  if ok and not body_or_err then
    util.log("%s %s: client went away while sending the body", req.method, req.path)
    abort(stream)
    return faults.log_finish(entry, 0)
  end
  local status, body, extra
  if ok then
    req.body = body_or_err
    status, body, extra = dispatch(sandbox, req)
  else
    status, body, extra = failure_answer(body_or_err)
  end
  persist(sandbox)
  if rule and rule.action and rule.action ~= "exception" then
    return faults.log_finish(entry, answer_spoiled(stream, rule, status, body, extra))
  end
  send(stream, status, body, nil, extra)
  faults.log_finish(entry, status)
end

---------------------------------------------------------------- test hooks
local function state_summary(sandbox)
  local certs = util.array()
  for _, c in ipairs(sandbox.state.certificates) do
    certs[#certs + 1] = { Id = c.id, Thumbprint = c.thumbprint, IssuedDN = c.issued_dn,
      CertRequestId = c.request_id, HasPrivateKey = c.key_pem ~= nil, CertState = c.state }
  end
  local store_list = util.array()
  for _, st in ipairs(sandbox.state.stores) do
    local inv = util.array()
    for _, item in ipairs(st.inventory) do inv[#inv + 1] = { Alias = item.alias, CertificateId = item.cert_id } end
    store_list[#store_list + 1] = { Id = st.Id, ContainerName = st.ContainerName, Inventory = inv }
  end
  local job_list = util.array()
  for _, j in ipairs(sandbox.state.jobs) do
    job_list[#job_list + 1] = { Id = j.id, Kind = j.kind, CertificateId = j.cert_id, StoreId = j.store_id,
      Alias = j.alias, Status = j.status, Due = j.due, Message = j.message }
  end
  return { certificates = certs, stores = store_list, jobs = job_list,
    requests = #sandbox.state.requests, faults = #sandbox.faults }
end

function server.reset(sandbox)
  sandbox.state = state.fresh()
  sandbox.tokens, sandbox.faults, sandbox.request_log = {}, {}, {}
  sandbox.dirty = true
  persist(sandbox)
end

local hooks = {
  ["POST /_sandbox/reset"] = function(sandbox)
    server.reset(sandbox)
    return { reset = true }
  end,
  ["GET /_sandbox/requests"] = function(sandbox)
    return util.array(sandbox.request_log)
  end,
  ["POST /_sandbox/faults"] = function(sandbox, req)
    local body = req:json()
    if type(body) ~= "table" then util.bad_request("fault must be a JSON object or array") end
    if body[1] then
      for _, f in ipairs(body) do faults.add(sandbox, f) end
    else
      faults.add(sandbox, body)
    end
    return { faults = util.array(sandbox.faults) }
  end,
  ["GET /_sandbox/faults"] = function(sandbox) return util.array(sandbox.faults) end,
  ["DELETE /_sandbox/faults"] = function(sandbox)
    sandbox.faults = {}
    return { faults = util.array() }
  end,
  ["POST /_sandbox/expire-tokens"] = function(sandbox)
    auth.expire_tokens(sandbox)
    return { expired = true }
  end,
  ["GET /_sandbox/state"] = function(sandbox)
    jobs.process(sandbox)
    return state_summary(sandbox)
  end,
}

local function handle_hook(sandbox, stream, req)
  local hook = hooks[req.method .. " " .. req.lower_path:gsub("/$", "")]
  local ok, status, body = pcall(function()
    if not hook then util.not_found("No sandbox hook " .. req.method .. " " .. req.path) end
    local b, err = read_body(stream, req.headers)
    if not b then error("client went away: " .. tostring(err)) end
    req.body = b
    return 200, util.encode(hook(sandbox, req))
  end)
  if not ok then status, body = failure_answer(status) end
  persist(sandbox)
  send(stream, status, body)
end

---------------------------------------------------------------- streams
function server.onstream(sandbox, stream)
  local headers, err = stream:get_headers(IO_TIMEOUT)
  if not headers then
    if err then util.log("no request headers: %s", tostring(err)) end
    return
  end
  local method = headers:get(":method")
  local target = headers:get(":path") or "/"
  local raw_path, qs = target:match("^([^?]*)%??(.*)$")
  local path = url_decode((raw_path:gsub("+", "%%2B")))
  local req = setmetatable({ method = method, path = path, lower_path = path:lower(), query = qs,
    params = parse_query(qs), headers = headers, stream = stream, body = "" }, Request)
  if req.lower_path:sub(1, 10) == "/_sandbox/" then
    return handle_hook(sandbox, stream, req)
  end
  if req.lower_path:sub(1, #API + 1) == API .. "/" or req.lower_path == "/oauth2/token" then
    return handle_api(sandbox, stream, req)
  end
  send(stream, 404, error_body(util.codes.not_found, "Not found: " .. path))
end

local function guarded_onstream(sandbox)
  return function(_, stream)
    local ok, err = xpcall(server.onstream, debug.traceback, sandbox, stream)
    if not ok then
      util.log("request failed: %s", tostring(err))
      pcall(send, stream, 500, error_body(util.codes.internal, "Internal server error"))
    end
  end
end

local function onerror(_, context, op, err, errno)
  util.log("%s error (%s): %s%s", tostring(op), tostring(context), tostring(err),
    errno and (" errno " .. tostring(errno)) or "")
end

---------------------------------------------------------------- start-up
-- SSL_OP_IGNORE_UNEXPECTED_EOF (OpenSSL 3; luaossl has no name for it): without
-- it a client that hangs up without close_notify makes SSL_read report an error
-- that cqueues retries forever, spinning the whole server at 100% CPU.
local OP_IGNORE_UNEXPECTED_EOF = 1 << 7

local function tls_context(key, cert, ca)
  local ctx = ssl_context.new("TLS", true)
  ctx:setOptions(ssl_context.OP_NO_SSLv2 | ssl_context.OP_NO_SSLv3 | ssl_context.OP_NO_TLSv1
    | ssl_context.OP_NO_TLSv1_1 | OP_IGNORE_UNEXPECTED_EOF)
  ctx:setCertificate(cert)
  ctx:setPrivateKey(key)
  ctx:setCertificateChain(require("openssl.x509.chain").new():add(ca.cert))
  return ctx
end

local function make_temp_dir()
  local name = os.tmpname()
  os.remove(name)
  assert(os.execute("mkdir -m 700 '" .. name:gsub("'", "") .. "'"), "cannot create " .. name)
  return name
end

-- opts: host, port, data (dir), job_delay, token_lifetime.
function server.new(opts)
  local dir = opts.data
  if dir then
    os.execute("mkdir -p '" .. dir:gsub("'", "") .. "'")
  else
    dir = make_temp_dir()
  end
  local sandbox = {
    opts = opts, dir = dir, persistent = opts.data ~= nil,
    tokens = {}, faults = {}, request_log = {}, dirty = false,
    store_type_name = stores.type_name,
  }
  sandbox.ca = pki.load_or_create_ca(dir)
  sandbox.state = state.load(sandbox.persistent and dir or nil)
  sandbox.routes = build_routes()
  return sandbox
end

-- Listens and serves until SIGINT/SIGTERM. `announce(url, sandbox)` is called
-- once the socket accepts connections.
function server.run(opts, announce)
  local sandbox = server.new(opts)
  local key, cert = pki.server_certificate(sandbox.ca, opts.host)
  local cq = cqueues.new()
  local srv = assert(http_server.listen{
    cq = cq, host = opts.host, port = opts.port, tls = true,
    ctx = tls_context(key, cert, sandbox.ca), version = 1.1, reuseaddr = true,
    onstream = guarded_onstream(sandbox), onerror = onerror,
    intra_stream_timeout = 60, connection_setup_timeout = 10,
  })
  assert(srv:listen())
  local _, host, port = srv:localname()
  if host:find(":", 1, true) then host = "[" .. host .. "]" end
  sandbox.base = string.format("https://%s:%d", host, port)
  signal.block(signal.SIGTERM, signal.SIGINT)
  local listener = signal.listen(signal.SIGTERM, signal.SIGINT)
  cq:wrap(function()
    local signo = listener:wait()
    util.log("signal %s: stopping", tostring(signo))
    srv:close()
    sandbox.dirty = true
    persist(sandbox)
    -- Open keep-alive connections would hold the loop for minutes: leave now.
    os.exit(0, true)
  end)
  announce(sandbox.base .. "/KeyfactorAPI", sandbox)
  while true do
    local ok, err = cq:loop()
    if ok then break end
    util.log("event loop error (continuing): %s", tostring(err))
  end
  return sandbox
end

return server
