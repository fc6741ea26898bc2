-- The sandbox HTTPS server: the TLS listener (lua-http on cqueues) and the
-- dispatch of each request: API requests through auth and header checks to
-- their route (router.lua), with faults applied (faults.lua) and the state
-- persisted (state.persist); /_sandbox/ to hooks.lua. HTTP reading and
-- writing is in http.lua. Every request runs in its own coroutine; no error
-- in one request (Lua error, TLS failure, vanished client) stops it.
local cqueues = require "cqueues"
local signal = require "cqueues.signal"
local http_server = require "http.server"
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
local http = require "keyfactor.sandbox.http"
local hooks = require "keyfactor.sandbox.hooks"
local datadir = require "keyfactor.sandbox.datadir"
local watchdog = require "keyfactor.sandbox.watchdog"

local server = {}

local API = "/keyfactorapi"

-- The Keyfactor Command generations the sandbox emulates (docs/SANDBOX.md):
-- "25" (default; Command 25.1: enrollment patterns, key choices, owner
-- roles) and "2022" (the 2022 API: templates only). A route marked
-- `since = "25"` exists from that generation on.
server.GENERATIONS = { ["2022"] = { product = "10.5.0.0", rank = 1 }, ["25"] = { product = "25.1.1.0", rank = 2 } }
server.DEFAULT_GENERATION = "25"

---------------------------------------------------------------- routing
-- The resource modules, each exporting `routes` (the contract is in router.lua).
local MODULES = {
  require "keyfactor.sandbox.certificates", require "keyfactor.sandbox.enrollment",
  jobs, stores, require "keyfactor.sandbox.workflow", catalog,
  require "keyfactor.sandbox.agents", require "keyfactor.sandbox.metadata",
  require "keyfactor.sandbox.history", require "keyfactor.sandbox.retrieval",
  require "keyfactor.sandbox.store_admin", require "keyfactor.sandbox.patterns",
  -- Command 10+ automation: workflow instances, job control, PAM, security, collections
  require "keyfactor.sandbox.workflow_instances", require "keyfactor.sandbox.scheduled_jobs",
  require "keyfactor.sandbox.pam", require "keyfactor.sandbox.security", require "keyfactor.sandbox.collections",
}

local function status_endpoints(sandbox)
  return router.endpoints(sandbox.routes), 200,
    { ["x-keyfactor-product-version"] = server.GENERATIONS[sandbox.generation].product }
end

local function build_routes(generation)
  local rank = server.GENERATIONS[generation].rank
  local lists = {}
  for i, m in ipairs(MODULES) do
    local list = {}
    for _, r in ipairs(m.routes) do
      if not r.since or server.GENERATIONS[r.since].rank <= rank then list[#list + 1] = r end
    end
    lists[i] = list
  end
  lists[#lists + 1] = { { method = "GET", path = "/Status/Endpoints", handler = status_endpoints,
    summary = "The endpoints this server offers" } }
  return router.new(table.unpack(lists))
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
    if not util.is_failure(err) then return http.failure_answer(err.err, err.trace) end
    return http.failure_answer(err)
  end
  return status, body, headers
end

local function handle_api(sandbox, stream, req)
  local entry = faults.log_start(sandbox, req.method, req.path, req.query)
  local rule = faults.take(sandbox, req.method, req.path)
  local effect = rule and faults.effect(rule)
  if rule then
    entry.fault = rule.action or ("status " .. tostring(rule.status))
    faults.delay(rule)
    if effect == "answer" then return faults.log_finish(entry, faults.answer(stream, rule)) end
    req.inject_exception = effect == "raise"
  end
  local request_body, refusal, message = http.read_body(stream, req.headers)
  if not request_body then
    if refusal then return faults.log_finish(entry, http.reject(stream, refusal, message)) end
    util.log("%s %s: client went away while sending the body (%s)", req.method, req.path, tostring(message))
    http.abort(stream)
    return faults.log_finish(entry, 0)
  end
  req.body = request_body
  local status, body, extra = dispatch(sandbox, req)
  state.persist(sandbox, req)
  if effect == "spoil" then
    return faults.log_finish(entry, faults.spoil(stream, rule, status, body, extra))
  end
  http.send(stream, status, body, nil, extra)
  faults.log_finish(entry, status)
end

---------------------------------------------------------------- streams
function server.onstream(sandbox, stream)
  local headers, err = stream:get_headers(http.IO_TIMEOUT)
  if not headers then
    if err then util.log("no request headers: %s", tostring(err)) end
    if err == "invalid content-length" then return http.reject(stream, 400, "Invalid Content-Length") end
    return http.abort(stream)
  end
  local req = http.request(stream, headers)
  if req.lower_path:sub(1, 10) == "/_sandbox/" then
    return hooks.handle(sandbox, stream, req)
  end
  if req.lower_path:sub(1, #API + 1) == API .. "/" or req.lower_path == "/oauth2/token" then
    return handle_api(sandbox, stream, req)
  end
  http.send(stream, 404, http.error_body(util.codes.not_found, "Not found: " .. req.path))
end

local function guarded_onstream(sandbox)
  return function(_, stream)
    watchdog.serving(stream)
    local ok, err = xpcall(server.onstream, debug.traceback, sandbox, stream)
    if not ok then
      util.log("request failed: %s", tostring(err))
      pcall(http.send, stream, 500, http.error_body(util.codes.internal, "Internal server error"))
    end
    -- finish reads the rest of the body, which can raise (a bad gzip body)
    if not pcall(http.finish, stream) then http.abort(stream) end
  end
end

local function onerror(_, context, op, err, errno)
  util.log("%s error (%s): %s%s", tostring(op), tostring(context), tostring(err),
    errno and (" errno " .. tostring(errno)) or "")
  -- A connection that sent garbage is hung up at once: lua-http's clean
  -- close of such a TLS connection can spin the whole server at 100% CPU
  -- (seen under valgrind after "read_request_line: ... errno 84").
  local sock = type(context) == "table" and context.socket
  if op == "get_next_incoming_stream" and sock then pcall(sock.shutdown, sock) end
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

-- opts: host, port, data (dir), job_delay, token_lifetime, watchdog (seconds),
-- generation ("25" or "2022").
-- Without opts.data the state lives in memory and the CA in a temporary
-- directory, removed on every way out (datadir.discard).
function server.new(opts)
  datadir.clean_abandoned()
  local sandbox = { opts = opts, persistent = opts.data ~= nil, tokens = {}, faults = {}, request_log = {} }
  sandbox.dir = opts.data or datadir.make_temporary()
  local ok, err = pcall(function()
    sandbox.generation = opts.generation or server.DEFAULT_GENERATION
    if not server.GENERATIONS[sandbox.generation] then
      error("unknown generation '" .. tostring(sandbox.generation) .. "' (use 25 or 2022)", 0)
    end
    datadir.prepare(sandbox.dir)
    sandbox.lock = datadir.lock(sandbox.dir)
    sandbox.ca = pki.load_or_create_ca(sandbox.dir)
    sandbox.state = state.load(sandbox.persistent and sandbox.dir or nil)
    sandbox.routes = build_routes(sandbox.generation)
  end)
  if not ok then
    datadir.discard(sandbox)
    error(err, 0)
  end
  return sandbox
end

-- Listens and serves until SIGINT/SIGTERM. `announce(url, sandbox)` is called
-- once the socket accepts connections.
function server.run(opts, announce)
  local sandbox = server.new(opts)
  local ok, err = pcall(server.serve, sandbox, opts, announce)
  datadir.discard(sandbox)
  if not ok then error(err, 0) end
  return sandbox
end

function server.serve(sandbox, opts, announce)
  local key, cert = pki.server_certificate(sandbox.ca, opts.host)
  local cq = cqueues.new()
  local srv
  -- Stopping is wrapped before the watchdog starts: the final save must
  -- not be cut short, however large the state.
  signal.block(signal.SIGTERM, signal.SIGINT)
  local listener = signal.listen(signal.SIGTERM, signal.SIGINT)
  cq:wrap(function()
    local signo = listener:wait()
    util.log("signal %s: stopping", tostring(signo))
    if srv then srv:close() end
    state.persist(sandbox, true)
    datadir.discard(sandbox)
    -- Open keep-alive connections would hold the loop for minutes: leave now.
    os.exit(0, true)
  end)
  watchdog.start(cq, opts.watchdog or 5)
  srv = assert(http_server.listen{
    cq = cq, host = opts.host, port = opts.port, tls = true,
    ctx = tls_context(key, cert, sandbox.ca), version = 1.1, reuseaddr = true,
    onstream = guarded_onstream(sandbox), onerror = onerror,
    intra_stream_timeout = 60, connection_setup_timeout = 10,
  })
  assert(srv:listen())
  local _, host, port = srv:localname()
  if host:find(":", 1, true) then host = "[" .. host .. "]" end
  sandbox.base = string.format("https://%s:%d", host, port)
  local url = sandbox.base .. "/KeyfactorAPI"
  sandbox.env_file = datadir.write_env(sandbox.dir, url, sandbox.ca.file,
    auth.users.admin.name, auth.users.admin.password)
  announce(url, sandbox)
  while true do
    local ok, err = cq:loop()
    if ok then break end
    util.log("event loop error (continuing): %s", tostring(err))
  end
  return sandbox
end

return server
