--- lua-keyfactor: the Keyfactor Command REST API from Lua.
--
--     local keyfactor = require "keyfactor"
--     local kf = keyfactor.new{ url = "https://kf.example.com/KeyfactorAPI",
--                               username = "DOMAIN\\user", password = "..." }
--     local cert, err = kf:certificate(42, {includeLocations = true})
--
--     local kf = keyfactor.from_env()     -- as kfutil connects: its config file, KEYFACTOR_*
--
-- `keyfactor.new` and `keyfactor.from_env` make a client; its `kf:` calls are
-- in the topic "The calls" (generated from the endpoint table, as the REPL's
-- `help`); keyfactor.errors describes failures.
-- @module keyfactor

local core = require "keyfactor.core"
local auth = require "keyfactor.auth.credentials"
local Client = require "keyfactor.api.client"
local errors = require "keyfactor.errors"
local transport = require "keyfactor.http.transport"
local v = require "keyfactor.api.validate"

local keyfactor = {
  VERSION = "0.1.0",
  errors = errors,
  show = require("keyfactor.show").format,          -- readable text of a response
}

--- An interactive Lua prompt with `kf` preloaded (see keyfactor.repl).
-- @param kf a client, global `kf` at the prompt
-- @tparam[opt] table opts as keyfactor.repl.run: `input`, `output`, `prompt`, `env`, `readline`
function keyfactor.repl(kf, opts) return require("keyfactor.repl").run(kf, opts) end

local OAUTH = v.record({
  token_url = v.nonempty, client_id = v.nonempty, client_secret = v.nonempty,
  scopes = v.array(v.string), audience = v.string,
}, { "token_url", "client_id", "client_secret" })

-- Longest timeout accepted: anything longer is a mistake (math.huge, 1e300),
-- and NaN or infinity must never reach the C core's cast to milliseconds.
local MAX_SECONDS = 86400

local function seconds(value, path)
  if type(value) ~= "number" then v.fail(path, "must be a number of seconds, not " .. type(value)) end
  if not (value >= 0 and value <= MAX_SECONDS) then   -- NaN fails both
    v.fail(path, "must be a number of seconds from 0 to " .. MAX_SECONDS .. ", not " .. tostring(value))
  end
  return value
end

-- A proxy URL, or false / "" for none (not even from https_proxy & co.).
local function proxy(value, path)
  if value == false or value == "" then return "" end
  if type(value) ~= "string" then v.fail(path, "must be a string or false, not " .. type(value)) end
  return value
end

local OPTIONS = v.record({
  url = v.nonempty,
  username = v.nonempty, password = v.string, token = v.header_value, oauth = OAUTH,
  ca_file = v.nonempty, insecure = v.boolean, allow_http = v.boolean,
  timeout = seconds, connect_timeout = seconds, retries = v.integer,
  api_version = v.nonempty, proxy = proxy, no_proxy = v.string, user_agent = v.header_value,
  headers = v.headers, debug = v.callable, warn = v.callable,
  max_body = v.integer, http2 = v.boolean, resolve = v.array(v.string),
  driver = v.table,
}, { "url" })

local warned_insecure = false

local function warn(config, message)
  if config.warn then config.warn(message) else io.stderr:write("keyfactor: warning: ", message, "\n") end
end

-- The scheme of a URL option, checked: http(s) only, no user:password@
-- (credentials go in their own options, where the http rule sees them and
-- no URL that gets printed carries them).
local function url_scheme(url, name)
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  scheme = scheme and scheme:lower()
  if scheme ~= "https" and scheme ~= "http" then
    v.raise("keyfactor.new", name .. " must start with https:// or http://")
  end
  if (rest:match("^[^/?#]*") or ""):find("@", 1, true) then
    v.raise("keyfactor.new", name .. " must not contain user:password@ (give username and password)")
  end
  return scheme
end

-- A readable CA file, checked now rather than at the first call's TLS
-- error; `name` is the option or variable that gave it.
local function check_ca_file(where, path, name)
  local f, why = io.open(path, "rb")
  if not f then v.raise(where, name .. ": cannot read the CA file (" .. tostring(why) .. ")") end
  f:close()
end

--- Makes a client.  Every option but `url` may be left out; a wrong option
-- raises a Lua error naming it (`keyfactor.new: options.timout is not a known
-- field (did you mean timeout?)`).
--
--     local kf = keyfactor.new{ url = "https://kf.example.com/KeyfactorAPI",
--                               username = "CORP\\svc-certs", password = os.getenv("KF_PASSWORD"),
--                               ca_file = "/etc/ssl/corp-ca.pem", timeout = 120 }
--     local kf <close> = keyfactor.new{ url = ..., oauth = { token_url = ..., client_id = ...,
--                                                            client_secret = ... } }
--
-- @tparam table opts the options below
-- @tparam string opts.url base URL including the API path (`https://host/KeyfactorAPI`);
-- https, or http with `allow_http` when credentials are given; no `user:password@`
-- @tparam[opt] string opts.username HTTP Basic user, with `password`: `DOMAIN\\user` (doubled in a Lua string literal)
-- @tparam[opt] string opts.password HTTP Basic password (kept in C memory, never printed)
-- @tparam[opt] string opts.token a ready bearer token (instead of username)
-- @tparam[opt] table opts.oauth OAuth2 client credentials (instead of username):
-- `{token_url, client_id, client_secret, scopes = {...}, audience}`; the token is
-- cached, refreshed before it expires and once after a 401
-- @tparam[opt] string opts.ca_file PEM file of CAs to trust (read at once: a missing file raises)
-- @tparam[opt=false] boolean opts.insecure skip TLS verification (warns once per process)
-- @tparam[opt=false] boolean opts.allow_http permit credentials over plain `http://`
-- @tparam[opt=60] number opts.timeout seconds a request may take (0 to 86400)
-- @tparam[opt=10] number opts.connect_timeout seconds to connect (0 to 86400)
-- @tparam[opt=2] integer opts.retries extra attempts for retryable failures
-- @tparam[opt] string|false opts.proxy proxy URL; `false` or `""` for none. Unset, libcurl's
-- environment variables apply (`https_proxy`, `ALL_PROXY`, `NO_PROXY`)
-- @tparam[opt] string opts.no_proxy hosts reached directly (`"localhost,.corp"`; curl's NOPROXY)
-- @tparam[opt="1"] string opts.api_version `x-keyfactor-api-version` sent with each call
-- @tparam[opt] string opts.user_agent User-Agent (`lua-keyfactor/VERSION`)
-- @tparam[opt] table opts.headers extra headers, name -> value
-- @tparam[opt=67108864] integer opts.max_body largest response body accepted, bytes (64 MiB)
-- @tparam[opt] boolean opts.http2 false: HTTP/1.1 only
-- @tparam[opt] table opts.resolve `{"host:port:address", ...}` pins names to addresses (curl's RESOLVE)
-- @tparam[opt] function opts.debug receives one line per request (`POST /Enrollment/PFX 200 123.3ms`),
-- secrets redacted
-- @tparam[opt] table opts.driver how calls wait (keyfactor.driver); the `attach` of
-- keyfactor.cqueues, keyfactor.haproxy and keyfactor.ngx sets it
-- @tparam[opt] function opts.warn receives warnings (default: stderr)
-- @return the client `kf`: every call of "The calls" is a method (`kf:enroll{...}`),
-- `kf:close()` (or `<close>`) frees its connections
function keyfactor.new(opts)
  local config = v.check("keyfactor.new", OPTIONS, opts, "options")
  local scheme = url_scheme(config.url, "options.url")
  local methods = (config.username and 1 or 0) + (config.token and 1 or 0) + (config.oauth and 1 or 0)
  if methods > 1 then
    v.raise("keyfactor.new", "give one of options.username, options.token, options.oauth")
  end
  if config.username and config.password == nil then
    v.raise("keyfactor.new", "options.password is required with options.username")
  end
  -- every URL that carries a credential obeys the same rule
  local plain = scheme == "http" and methods > 0 and "options.url"
  if config.oauth and url_scheme(config.oauth.token_url, "options.oauth.token_url") == "http" then
    plain = "options.oauth.token_url"
  end
  if plain and not config.allow_http then
    v.raise("keyfactor.new", "refusing to send credentials over plain http:// (" .. plain
      .. "; set allow_http = true to permit)")
  end
  if config.ca_file then check_ca_file("keyfactor.new", config.ca_file, "options.ca_file") end
  if config.retries and config.retries < 0 then v.raise("keyfactor.new", "options.retries must not be negative") end
  if config.insecure and not warned_insecure then
    warned_insecure = true
    warn(config, "TLS certificate verification is off (insecure = true)")
  end
  config.retries = config.retries or 2
  config.api_version = config.api_version or "1"
  config.url = config.url:gsub("/+$", "")

  local session = core.session {
    ca_file = config.ca_file, insecure = config.insecure, proxy = config.proxy, no_proxy = config.no_proxy,
    user_agent = config.user_agent or ("lua-keyfactor/" .. keyfactor.VERSION),
    timeout = config.timeout, connect_timeout = config.connect_timeout,
    max_body = config.max_body, http2 = config.http2, resolve = config.resolve,
    headers = transport.default_headers(config),
  }
  local http = transport.new(session, config)
  local self = setmetatable({ url = config.url, session = session, http = http }, Client)
  self.auth = auth.new(config, session, http)
  http.auth = self.auth
  return self
end

local function truthy(value)
  return value ~= nil and ({ ["1"] = true, ["true"] = true, yes = true, on = true })[value:lower()] == true
end

local function split_list(value)
  local items = {}
  for item in (value or ""):gmatch("[^,%s]+") do items[#items + 1] = item end
  return #items > 0 and items or nil
end

-- kfutil's configuration file (Keyfactor's auth client, `Server` of
-- auth_providers/command_config.go): {"servers": {PROFILE: {...}}}.  Each field
-- of a profile and the variable that overrides it.
local FILE_FIELDS = {
  host = "KEYFACTOR_HOSTNAME", port = "KEYFACTOR_PORT", api_path = "KEYFACTOR_API_PATH",
  username = "KEYFACTOR_USERNAME", password = "KEYFACTOR_PASSWORD", domain = "KEYFACTOR_DOMAIN",
  client_id = "KEYFACTOR_AUTH_CLIENT_ID", client_secret = "KEYFACTOR_AUTH_CLIENT_SECRET",
  token_url = "KEYFACTOR_AUTH_TOKEN_URL", scopes = "KEYFACTOR_AUTH_SCOPES",
  audience = "KEYFACTOR_AUTH_AUDIENCE", ca_cert_path = "KEYFACTOR_CA_CERT",
  skip_tls_verify = "KEYFACTOR_SKIP_VERIFY",
}

local warned_file_mode = {}

-- The profile's settings as variable -> string, or {} when there is no file
-- (an absent default file is normal; a file or profile asked for by its
-- variable must exist).  Never quotes the file's text: it holds secrets.
local function config_file(get, warn_to)
  local where = "keyfactor.from_env"
  local named = get "KEYFACTOR_AUTH_CONFIG_FILE"
  local home = get "HOME"
  local path = named or (home and home .. "/.keyfactor/command_config.json")
  if not path then return {} end
  local f, why = io.open(path, "rb")
  if not f then
    if named then v.raise(where, "KEYFACTOR_AUTH_CONFIG_FILE: cannot read " .. path .. " (" .. tostring(why) .. ")") end
    return {}, nil
  end
  local text = f:read("a") or ""
  f:close()
  local mode = core.file_mode(path)
  if mode and mode % 64 ~= 0 and not warned_file_mode[path] then      -- any of 0077: group or others
    warned_file_mode[path] = true
    warn_to(string.format("%s holds credentials and is readable by others (mode %04o): chmod 600 %s",
      path, mode, path))
  end
  local decoded = core.decode_json(text)
  local profile_name = get "KEYFACTOR_AUTH_CONFIG_PROFILE" or "default"
  if type(decoded) ~= "table" or (decoded.servers ~= nil and type(decoded.servers) ~= "table") then
    v.raise(where, path .. " is not a kfutil configuration (JSON with a \"servers\" object)")
  end
  local profile = (decoded.servers or {})[profile_name]
  if profile == nil then
    if get "KEYFACTOR_AUTH_CONFIG_PROFILE" then
      v.raise(where, "KEYFACTOR_AUTH_CONFIG_PROFILE: no profile \"" .. profile_name .. "\" in " .. path)
    end
    return {}, path
  end
  if type(profile) ~= "table" then v.raise(where, path .. ": servers." .. profile_name .. " must be an object") end
  local settings = {}
  for field, variable in pairs(FILE_FIELDS) do
    local value = profile[field]
    if type(value) == "table" then                       -- scopes: an array of strings
      local items = {}
      for i, item in ipairs(value) do items[i] = tostring(item) end
      value = table.concat(items, ",")
    elseif type(value) == "boolean" then
      value = tostring(value)
    elseif type(value) == "number" and value == math.floor(value) then   -- port
      value = string.format("%d", value)
    elseif value ~= nil and type(value) ~= "string" then
      value = nil                                        -- JSON null, or a shape kfutil would refuse
    end
    if value ~= nil and value ~= "" then settings[variable] = value end
  end
  return settings, path
end

--- Makes a client the way kfutil connects: from its configuration file and
-- its environment variables, the variables overriding the file field by field.
--
-- The file is `$HOME/.keyfactor/command_config.json` (or KEYFACTOR_AUTH_CONFIG_FILE),
-- profile "default" (or KEYFACTOR_AUTH_CONFIG_PROFILE) of its `servers` object,
-- with kfutil's fields: host, port, api_path, username, password, domain,
-- client_id, client_secret, token_url, scopes, audience, ca_cert_path,
-- skip_tls_verify.  A file readable by group or others gets one warning.
--
--     { "servers": { "default": { "host": "kf.example.com", "username": "svc-certs",
--                                 "password": "...", "domain": "CORP",
--                                 "ca_cert_path": "/etc/ssl/corp-ca.pem" } } }
--
-- The variables: KEYFACTOR_HOSTNAME (host, or URL: one with a path, such as
-- https://host/KeyfactorAPI, is the whole base URL), KEYFACTOR_PORT (443),
-- KEYFACTOR_API_PATH (default KeyfactorAPI), KEYFACTOR_USERNAME,
-- KEYFACTOR_PASSWORD, KEYFACTOR_DOMAIN, KEYFACTOR_AUTH_CLIENT_ID,
-- KEYFACTOR_AUTH_CLIENT_SECRET, KEYFACTOR_AUTH_TOKEN_URL, KEYFACTOR_AUTH_SCOPES,
-- KEYFACTOR_AUTH_AUDIENCE, KEYFACTOR_AUTH_ACCESS_TOKEN, KEYFACTOR_SKIP_VERIFY,
-- KEYFACTOR_CA_CERT, KEYFACTOR_CLIENT_TIMEOUT (seconds).
-- Credentials: Basic when a username is set, else OAuth client credentials,
-- else an access token.
-- @tparam[opt] table overrides keyfactor.new options applied on top;
-- `overrides.env` (a table) replaces the process environment, for tests
-- @return a client, as keyfactor.new
-- @usage local kf = require("keyfactor").from_env()
-- @usage local kf = require("keyfactor").from_env{ timeout = 300 }
function keyfactor.from_env(overrides)
  overrides = overrides or {}
  local env = overrides.env
  local function from_environment(name)
    local value
    if env then value = env[name] else value = os.getenv(name) end
    if value ~= nil and value ~= "" then return value end
  end
  local file, file_path = config_file(from_environment, function(message)
    warn(overrides, message)
  end)
  local function get(name) return from_environment(name) or file[name] end
  local function source(name)     -- where a setting came from, for an error message
    return from_environment(name) and name or (file_path .. " (profile setting for " .. name .. ")")
  end
  local opts = {}
  local host = get "KEYFACTOR_HOSTNAME"
  if host then
    if not host:find("://", 1, true) then host = "https://" .. host end
    host = host:gsub("/+$", "")
    local port = get "KEYFACTOR_PORT"
    if port then
      local n = tonumber(port)
      if not n or n ~= math.floor(n) or n < 1 or n > 65535 then
        v.raise("keyfactor.from_env", source "KEYFACTOR_PORT" .. " must be a port number, not " .. port)
      end
      -- a port in the host itself wins; 443 is https' own
      local scheme, authority, rest = host:match("^(%a[%w+.-]*://)([^/]*)(.*)$")
      if not authority:find(":%d+$") and not authority:find("^%[.*%]:%d+$") and n ~= 443 then
        host = string.format("%s%s:%d%s", scheme, authority, n, rest)
      end
    end
    local api_path = (get "KEYFACTOR_API_PATH" or "KeyfactorAPI"):gsub("^/+", ""):gsub("/+$", "")
    -- a full URL (https://host/KeyfactorAPI) already names the API path
    local given = host:match("^%a[%w+.-]*://[^/]*(/.*)$")
    local named = given and (not get "KEYFACTOR_API_PATH"
      or given:lower():sub(-#api_path - 1) == "/" .. api_path:lower())
    opts.url = named and host or host .. "/" .. api_path
  end
  local user = get "KEYFACTOR_USERNAME"
  if user then
    local domain = get "KEYFACTOR_DOMAIN"
    if domain and not user:find("[\\@]") then user = domain .. "\\" .. user end
    opts.username, opts.password = user, get "KEYFACTOR_PASSWORD" or ""
  elseif get "KEYFACTOR_AUTH_CLIENT_ID" then
    opts.oauth = {
      client_id = get "KEYFACTOR_AUTH_CLIENT_ID", client_secret = get "KEYFACTOR_AUTH_CLIENT_SECRET",
      token_url = get "KEYFACTOR_AUTH_TOKEN_URL", scopes = split_list(get "KEYFACTOR_AUTH_SCOPES"),
      audience = get "KEYFACTOR_AUTH_AUDIENCE",
    }
  elseif get "KEYFACTOR_AUTH_ACCESS_TOKEN" then
    opts.token = get "KEYFACTOR_AUTH_ACCESS_TOKEN"
  end
  opts.insecure = truthy(get "KEYFACTOR_SKIP_VERIFY") or nil
  local timeout = get "KEYFACTOR_CLIENT_TIMEOUT"
  if timeout then
    opts.timeout = tonumber(timeout)
    if not opts.timeout or not (opts.timeout > 0 and opts.timeout <= MAX_SECONDS) then
      v.raise("keyfactor.from_env", "KEYFACTOR_CLIENT_TIMEOUT must be seconds from 1 to " .. MAX_SECONDS
        .. ", not " .. timeout)
    end
  end
  local ca_variable = get "KEYFACTOR_CA_CERT" and "KEYFACTOR_CA_CERT"
    or get "KEYFACTOR_AUTH_CA_CERT" and "KEYFACTOR_AUTH_CA_CERT"
  opts.ca_file = ca_variable and get(ca_variable)
  for k, value in pairs(overrides) do
    if k ~= "env" then opts[k] = value end
  end
  if ca_variable and overrides.ca_file == nil then
    check_ca_file("keyfactor.from_env", opts.ca_file, source(ca_variable))
  end
  if opts.url == nil then
    error("keyfactor.from_env: KEYFACTOR_HOSTNAME is not set"
      .. (file_path and " (nor host in " .. file_path .. ")" or ""), 2)
  end
  return keyfactor.new(opts)
end

return keyfactor
