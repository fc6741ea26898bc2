--- The fleet's connection to Redis: where, as whom, which database, over TLS.
--
--   local connection = require "keyfactor.fleet.connection"
--   local db = connection.open { host = "redis.internal", port = 6380, username = "fleet",
--     password = os.getenv("KF_REDIS_PASSWORD"), db = 2,
--     tls = { ca_file = "/etc/ssl/redis-ca.pem" } }
--
-- Settings (all optional): host ("127.0.0.1"), port (6379), username and
-- password (AUTH: a password alone for `requirepass`, both for an ACL user),
-- db (SELECT, 0), timeout (seconds for connecting and for each reply, 30;
-- more than the fleet's longest blocking read), tls (true, or {ca_file,
-- cert_file, key_file, server_name, insecure}: TLS through LuaSec, the
-- server's certificate checked against ca_file (else the system's CAs) and
-- its name against server_name (else host); cert_file and key_file for
-- servers that want client certificates).  `connection.from_env` reads
-- them from KF_REDIS_* variables.  A password never appears in an error.
--
-- Errors raise a message; `connection.lost(err)` tells those that a new
-- connection may cure (the server restarted, was flushed, is unreachable).
-- @module keyfactor.fleet.connection

local socket = require "socket"
local v = require "keyfactor.api.validate"

local connection = {}

-- Debian's lua-redis (redis-lua 2.0.5) installs its one pure-Lua file for Lua
-- 5.1-5.3; it runs unchanged on 5.4 (over LuaSocket, which has a 5.4 build).
local function load_redis()
  local ok, redis = pcall(require, "redis")
  if ok then return redis end
  local file = package.searchpath("redis", "/usr/share/lua/5.3/?.lua;/usr/share/lua/5.1/?.lua")
  if not file then error(redis, 0) end
  redis = dofile(file)
  package.loaded.redis = redis
  return redis
end

local redis = load_redis()
connection.redis = redis
-- Stream commands postdate redis-lua 2.0.5; redis.command is its way to add
-- commands (plain requests, replies as nested arrays).
for _, name in ipairs { "XADD", "XREADGROUP", "XAUTOCLAIM", "XGROUP", "XPENDING", "XLEN" } do
  redis.commands[name:lower()] = redis.commands[name:lower()] or redis.command(name)
end

local function port_number(value, path)
  if type(value) == "string" and value:match("^%d+$") then value = tonumber(value) end   -- as LuaSocket gives it
  value = v.integer(value, path)
  if value < 1 or value > 65535 then v.fail(path, "must be a port number (1-65535)") end
  return value
end

local function database(value, path)
  value = v.integer(value, path)
  if value < 0 then v.fail(path, "must not be negative") end
  return value
end

local function seconds(value, path)
  if type(value) ~= "number" or not (value > 0 and value <= 86400) then
    v.fail(path, "must be a number of seconds from 0 to 86400")
  end
  return value
end

local TLS = v.record { ca_file = v.nonempty, cert_file = v.nonempty, key_file = v.nonempty,
  server_name = v.nonempty, insecure = v.boolean }

local function tls_option(value, path)
  if value == true or value == false then return value end
  return TLS(value, path)
end

local SETTINGS = v.record { host = v.nonempty, port = port_number, username = v.nonempty, password = v.string,
  db = database, timeout = seconds, tls = tls_option }

--- Checks connection settings (raising a Lua error naming the field, and
-- never the password); returns a normalized copy.
function connection.check(where, settings)
  local s = v.check(where, SETTINGS, settings or {}, "opts.redis")
  if s.username and not s.password then v.raise(where, "opts.redis.username needs opts.redis.password") end
  if type(s.tls) == "table" and (s.tls.cert_file == nil) ~= (s.tls.key_file == nil) then
    v.raise(where, "opts.redis.tls.cert_file and opts.redis.tls.key_file go together")
  end
  return s
end

-- The names a certificate is for: subjectAltName DNS names and IP
-- addresses, else its CN.
local function certificate_names(cert)
  local names = {}
  local ext = cert:extensions() or {}
  local alt = ext["2.5.29.17"] or {}
  for _, kind in ipairs { "dNSName", "iPAddress" } do
    for _, name in ipairs(alt[kind] or {}) do names[#names + 1] = name end
  end
  if #names == 0 then
    for _, part in ipairs(cert:subject() or {}) do
      if part.name == "commonName" or part.short_name == "CN" then names[#names + 1] = part.value end
    end
  end
  return names
end

local function name_matches(pattern, name)
  pattern, name = pattern:lower(), name:lower()
  if pattern == name then return true end
  local rest = pattern:match("^%*(%..+)$")      -- "*.example.com": one label
  return rest ~= nil and name:sub(-#rest) == rest and not name:sub(1, -#rest - 1):find(".", 1, true)
end

-- Wraps a connected TCP socket in TLS and checks the server's name.
local function start_tls(sock, s)
  local ok, ssl = pcall(require, "ssl")
  if not ok then error("Redis over TLS needs LuaSec (Debian lua-sec): " .. tostring(ssl), 0) end
  local t = s.tls == true and {} or s.tls
  local params = { mode = "client", protocol = "any", options = { "all", "no_sslv3", "no_tlsv1", "no_tlsv1_1" },
    verify = t.insecure and "none" or "peer", certificate = t.cert_file, key = t.key_file }
  if t.ca_file then params.cafile = t.ca_file else params.capath = "/etc/ssl/certs" end
  local conn, err = ssl.wrap(sock, params)
  if not conn then error("Redis TLS: " .. tostring(err), 0) end
  local server = t.server_name or s.host
  conn:sni(server)
  conn:settimeout(s.timeout)
  local done, why = conn:dohandshake()
  if not done then
    conn:close()
    error("Redis TLS handshake with " .. s.host .. ":" .. s.port .. " failed: " .. tostring(why), 0)
  end
  if not t.insecure then
    local names = certificate_names(conn:getpeercertificate())
    local matched = false
    for _, name in ipairs(names) do matched = matched or name_matches(name, server) end
    if not matched then
      conn:close()
      error(string.format("Redis TLS: the server's certificate is for %s, not %s", table.concat(names, ", "),
        server), 0)
    end
  end
  return conn
end

-- `text` with every occurrence of `secret` replaced by "***".
local function without(text, secret)
  local out, from = {}, 1
  while true do
    local at, last = text:find(secret, from, true)
    if not at then break end
    out[#out + 1] = text:sub(from, at - 1) .. "***"
    from = last + 1
  end
  out[#out + 1] = text:sub(from)
  return table.concat(out)
end

-- AUTH and SELECT; a refusal names the server, never the password.
local function log_in(client, s)
  if s.password and s.password ~= "" then
    local ok, err
    if s.username then ok, err = pcall(client.auth, client, s.username, s.password)
    else ok, err = pcall(client.auth, client, s.password) end
    if not ok then
      pcall(client.quit, client)
      error(string.format("Redis at %s:%d refused the credentials%s: %s", s.host, s.port,
        s.username and (" of user " .. s.username) or "", without(tostring(err), s.password)), 0)
    end
  end
  if s.db and s.db ~= 0 then client:select(s.db) end
end

--- A connected redis-lua client for `settings` (checked with
-- connection.check).  Raises when the server cannot be reached or refuses.
function connection.open(settings)
  local s = connection.check("keyfactor.fleet.connection.open", settings)
  s.host, s.port, s.timeout = s.host or "127.0.0.1", s.port or 6379, s.timeout or 30
  local sock = socket.tcp()
  sock:settimeout(s.timeout)
  local ok, err = sock:connect(s.host, s.port)
  if not ok then
    sock:close()
    error(string.format("could not connect to Redis at %s:%d (%s)", s.host, s.port, tostring(err)), 0)
  end
  sock:setoption("tcp-nodelay", true)
  if s.tls then sock = start_tls(sock, s) end
  local client = redis.connect { socket = sock }
  log_in(client, s)
  return client
end

local function read_file(path, name)
  local f, err = io.open(path, "r")
  if not f then error(name .. ": cannot read " .. tostring(err), 0) end
  local text = f:read("a")
  f:close()
  return (text:gsub("[\r\n]+$", ""))
end

--- Settings from the environment (`getenv`, default os.getenv):
-- KF_REDIS_HOST, KF_REDIS_PORT, KF_REDIS_DB, KF_REDIS_USERNAME,
-- KF_REDIS_PASSWORD or KF_REDIS_PASSWORD_FILE (a file holding it),
-- KF_REDIS_TLS (1/true), KF_REDIS_CA_CERT, KF_REDIS_CERT, KF_REDIS_KEY,
-- KF_REDIS_SERVER_NAME.  Unset ones are left out.
function connection.from_env(getenv)
  getenv = getenv or os.getenv
  local function number(name)
    local text = getenv(name)
    if text == nil or text == "" then return nil end
    local n = math.tointeger(tonumber(text))
    if not n then error(name .. " must be an integer, not " .. text, 0) end
    return n
  end
  local function text(name)
    local value = getenv(name)
    return value ~= "" and value or nil
  end
  local s = { host = text("KF_REDIS_HOST"), port = number("KF_REDIS_PORT"), db = number("KF_REDIS_DB"),
    username = text("KF_REDIS_USERNAME"), password = text("KF_REDIS_PASSWORD") }
  local file = text("KF_REDIS_PASSWORD_FILE")
  if file then
    if s.password then error("give KF_REDIS_PASSWORD or KF_REDIS_PASSWORD_FILE, not both", 0) end
    s.password = read_file(file, "KF_REDIS_PASSWORD_FILE")
  end
  local tls = text("KF_REDIS_TLS")
  local tls_on = tls and ({ ["1"] = true, ["true"] = true, yes = true, on = true })[tls:lower()]
  if tls and not tls_on and not ({ ["0"] = true, ["false"] = true, no = true, off = true })[tls:lower()] then
    error("KF_REDIS_TLS must be 1 or 0, not " .. tls, 0)
  end
  if tls_on then
    s.tls = { ca_file = text("KF_REDIS_CA_CERT"), cert_file = text("KF_REDIS_CERT"), key_file = text("KF_REDIS_KEY"),
      server_name = text("KF_REDIS_SERVER_NAME") }
  end
  return s
end

-- What a new connection may cure: the connection closed or refused (a
-- restart), a server still loading its data, a read that timed out, and
-- NOGROUP or UNBLOCKED (the stream and its group are gone, before or during
-- a blocking read: the server was flushed or restarted without its data;
-- the group is made again).
local LOST = { "connection error", "could not connect", "closed", "timeout", "LOADING", "NOGROUP", "UNBLOCKED",
  "Connection refused", "broken pipe", "Socket is not connected" }

--- True when `err` (a raised value) says the connection or the server's
-- data was lost, rather than a mistake a retry cannot mend.
function connection.lost(err)
  local text = tostring(err)
  for _, sign in ipairs(LOST) do
    if text:find(sign, 1, true) then return true end
  end
  return false
end

return connection
