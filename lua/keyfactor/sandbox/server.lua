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
local router = require "keyfactor.sandbox.router"

local server = {}

local API = "/keyfactorapi"
local PRODUCT_VERSION = "10.5.0.0"
local IO_TIMEOUT = 30
local MAX_BODY = 16 * 1024 * 1024

---------------------------------------------------------------- routing
-- The resource modules, each exporting `routes` (the contract is in router.lua).
local MODULES = {
  require "keyfactor.sandbox.certificates", require "keyfactor.sandbox.enrollment",
  jobs, stores, require "keyfactor.sandbox.workflow", catalog,
  require "keyfactor.sandbox.agents", require "keyfactor.sandbox.metadata",
  require "keyfactor.sandbox.history", require "keyfactor.sandbox.retrieval",
  require "keyfactor.sandbox.store_admin",
}

local function status_endpoints(sandbox)
  return router.endpoints(sandbox.routes), 200, { ["x-keyfactor-product-version"] = PRODUCT_VERSION }
end

local function build_routes()
  local lists = {}
  for i, m in ipairs(MODULES) do lists[i] = m.routes end
  lists[#lists + 1] = { { method = "GET", path = "/Status/Endpoints", handler = status_endpoints,
    summary = "The endpoints this server offers" } }
  return router.new(table.unpack(lists))
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

-- The next chunk's declared size, read ahead (and put back) so a huge chunk
-- is refused before lua-http buffers it whole (it fills a chunk at once).
local function next_chunk_size(stream, timeout)
  local sock = stream.connection and stream.connection.socket
  if not sock or stream.body_read_left == 0 then return 0 end
  local line = sock:xread("*L", timeout)
  if not line then return 0 end
  sock:unget(line)
  return tonumber(line:match("^(%x+)") or "0", 16) or 0
end

-- Reads the request body with the 16 MiB limit enforced while reading.
-- Returns the body; or nil, status, message for a request to refuse (the
-- caller answers and hangs up); or nil, nil, err when the client went away.
local function read_body(stream, headers)
  local cl = headers:get("content-length")
  if cl and not cl:match("^%d+$") then return nil, 400, "Invalid Content-Length" end
  local length = cl and tonumber(cl)
  if length and length > MAX_BODY then return nil, 413, "The request body is too large" end
  local chunked = stream.body_read_type == "chunked"
  local parts, size, deadline = {}, 0, util.monotime() + IO_TIMEOUT
  while true do
    local left = deadline - util.monotime()
    if left <= 0 then return nil, nil, "timed out reading the body" end
    if chunked and size + next_chunk_size(stream, left) > MAX_BODY then
      return nil, 413, "The request body is too large"
    end
    local chunk, err = stream:get_next_chunk(left)
    if not chunk then
      if err then return nil, nil, err end
      break
    end
    size = size + #chunk
    if size > MAX_BODY then return nil, 413, "The request body is too large" end
    parts[#parts + 1] = chunk
  end
  -- lua-http may end a length-delimited body early when the client hangs up
  if length and size < length then return nil, nil, "body shorter than Content-Length" end
  return table.concat(parts)
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

-- Answers a request whose body we will not read (malformed, too large) and
-- hangs up: lua-http would otherwise try to read or drain that body to reuse
-- the connection, and on a bad Content-Length it retries forever (100% CPU).
-- A declared length up to DRAIN_BODY is read and dropped first, so the client
-- (still sending) gets the answer instead of a reset.
local DRAIN_BODY = 64 * 1024 * 1024
local function reject(stream, status, message)
  pcall(send, stream, status, error_body(util.codes.bad_request, message), nil, { connection = "close" })
  local length = tonumber(stream.body_read_type == "length" and stream.body_read_left or nil)
  if length and length <= DRAIN_BODY then
    local deadline = util.monotime() + 10
    while util.monotime() < deadline and stream.body_read_left > 0 do
      if not stream:get_next_chunk(deadline - util.monotime()) then break end
    end
  end
  abort(stream)
  return status
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
    if jobs.process(sandbox) > 0 then req.changed = true end
    if req.lower_path == "/oauth2/token" then
      if req.method ~= "POST" then util.fail(405, "bad_request", "Use POST for /oauth2/token") end
      local answer, code = auth.token(sandbox, req)
      return code or 200, util.encode(answer)
    end
    local route, captures = router.match(sandbox.routes, req.method, req.path:sub(#API + 1))
    req.user = auth.authenticate(sandbox, req.headers)
    if not req.headers:get("x-keyfactor-requested-with") then
      util.bad_request("The x-keyfactor-requested-with header is required")
    end
    local version = req.headers:get("x-keyfactor-api-version")
    if version and not ({ ["1"] = true, ["1.0"] = true, ["2"] = true })[version] then
      util.bad_request("Unsupported x-keyfactor-api-version '" .. version .. "'")
    end
    if req.inject_exception then error("injected handler exception") end
    req.routed = true
    local answer, code, extra = route.handler(sandbox, req, table.unpack(captures))
    if answer == nil and code == 204 then return 204, "", extra end   -- no body, as the contract says
    return code or 200, util.encode(answer), extra
  end, traceback)
  if not ok then
    local err = status
    if not util.is_failure(err) then return failure_answer(err.err, err.trace) end
    return failure_answer(err)
  end
  return status, body, headers
end

-- Persistence by construction: saves (with --data) after a request that may
-- have changed the state: any non-GET request that reached a handler, or one
-- during which the job sweep completed a job. Handlers do nothing for it.
local function persist(sandbox, req)
  if sandbox.persistent and (req == true or req.changed or (req.routed and req.method ~= "GET")) then
    state.save(sandbox.state, sandbox.dir)
  end
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
  local request_body, refusal, message = read_body(stream, req.headers)
  if not request_body then
    if refusal then return faults.log_finish(entry, reject(stream, refusal, message)) end
    util.log("%s %s: client went away while sending the body (%s)", req.method, req.path, tostring(message))
    abort(stream)
    return faults.log_finish(entry, 0)
  end
  req.body = request_body
  local status, body, extra = dispatch(sandbox, req)
  persist(sandbox, req)
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
  persist(sandbox, true)
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
  ["GET /_sandbox/state"] = function(sandbox, req)
    if jobs.process(sandbox) > 0 then req.changed = true end
    return state_summary(sandbox)
  end,
}

local function handle_hook(sandbox, stream, req)
  local hook = hooks[req.method .. " " .. req.lower_path:gsub("/$", "")]
  local b, refusal, message = read_body(stream, req.headers)
  if not b then
    if refusal then return reject(stream, refusal, message) end
    return abort(stream)
  end
  req.body = b
  local ok, status, body = pcall(function()
    if not hook then util.not_found("No sandbox hook " .. req.method .. " " .. req.path) end
    return 200, util.encode(hook(sandbox, req))
  end)
  if not ok then status, body = failure_answer(status) end
  persist(sandbox, req)
  send(stream, status, body)
end

---------------------------------------------------------------- streams
function server.onstream(sandbox, stream)
  local headers, err = stream:get_headers(IO_TIMEOUT)
  if not headers then
    if err then util.log("no request headers: %s", tostring(err)) end
    if err == "invalid content-length" then return reject(stream, 400, "Invalid Content-Length") end
    return abort(stream)
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
    tokens = {}, faults = {}, request_log = {},
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
    persist(sandbox, true)
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
