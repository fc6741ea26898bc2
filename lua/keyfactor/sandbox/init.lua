-- keyfactor.sandbox: start the Keyfactor Command emulator as a child process
-- and drive its test hooks.
--
--   local sandbox = require "keyfactor.sandbox"
--   local sb = sandbox.start{ port = 0, job_delay = 0.2 }
--   -- sb.url, sb.base, sb.ca_file, sb.env_file, sb.username, sb.password, sb.token_url, ...
--   sb:fault{ method = "POST", path = "/KeyfactorAPI/Enrollment/PFX/Deploy", status = 503 }
--   sb:stop()
--
-- The helpers talk to the sandbox with the curl command line, so they work
-- whatever HTTP client the caller is testing.
local sandbox = { _VERSION = "0.1.0" }

local Sandbox = {}
Sandbox.__index = Sandbox
-- A forgotten sandbox must not outlive its owner (nor block it at exit in pclose).
Sandbox.__gc = function(self) self:stop() end

sandbox.USERNAME, sandbox.PASSWORD = "SANDBOX\\admin", "sandbox-admin"
sandbox.OPERATOR_USERNAME, sandbox.OPERATOR_PASSWORD = "SANDBOX\\operator", "sandbox-operator"
sandbox.CLIENT_ID, sandbox.CLIENT_SECRET = "sandbox-client", "sandbox-secret"

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- The interpreter for the sandbox: the one running us when it is Lua 5.4
-- (the lowest negative index of `arg`), else lua5.4 — the sandbox needs
-- lua-http, whose home here is 5.4, whatever runs the client.
local function default_interpreter()
  if _VERSION ~= "Lua 5.4" or type(arg) ~= "table" then return "lua5.4" end
  local i = 0
  while arg[i - 1] ~= nil do i = i - 1 end
  if i < 0 and arg[i] and not arg[i]:match("^%-") then return arg[i] end
  return "lua5.4"
end

-- Commands we run never inherit a preloaded library (e.g. AddressSanitizer's
-- runtime while the client's specs run under it).
local CLEAN_ENV = "env -u LD_PRELOAD"

local function file_exists(path)
  local f = io.open(path, "r")
  if f then f:close() end
  return f ~= nil
end

-- <repo>/bin/keyfactor-sandbox relative to this file, else the command on
-- PATH.  A path is a Lua script run with the interpreter; a bare command
-- name (an installed launcher, maybe a luarocks wrapper) is run as it is.
local function find_launcher()
  local source = debug.getinfo(1, "S").source
  if source:sub(1, 1) == "@" then
    local dir = source:sub(2):match("^(.*)/[^/]*$") or "."
    local candidate = dir .. "/../../../bin/keyfactor-sandbox"
    if file_exists(candidate) then return candidate end
  end
  return "keyfactor-sandbox"
end

local function read_all(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

local function launch_command(opts, launcher, log_file)
  local args = { "--host", opts.host or "127.0.0.1", "--port", opts.port or 0,
    "--job-delay", opts.job_delay or 0.2 }
  if opts.data then args[#args + 1] = "--data"; args[#args + 1] = opts.data end
  if opts.open_hooks then args[#args + 1] = "--open-hooks" end
  for _, name in ipairs { "token_lifetime", "watchdog", "generation" } do
    if opts[name] then
      args[#args + 1] = "--" .. name:gsub("_", "-")
      args[#args + 1] = opts[name]
    end
  end
  local quoted = {}
  for i, a in ipairs(args) do quoted[i] = shell_quote(a) end
  local lua = opts.lua or default_interpreter()
  -- Our module paths suit the child only when it runs the same Lua version.
  local env = "-u LUA_PATH -u LUA_CPATH"
  if _VERSION == "Lua 5.4" then
    env = string.format("LUA_PATH=%s LUA_CPATH=%s",
      shell_quote(package.path .. ";;"), shell_quote(package.cpath .. ";;"))
  end
  if opts.tmpdir then env = env .. " TMPDIR=" .. shell_quote(opts.tmpdir) end
  local inner = string.format("echo $$; exec %s %s %s %s %s 2>>%s",
    CLEAN_ENV, env, launcher:find("/", 1, true) and shell_quote(lua) or "", shell_quote(launcher),
    table.concat(quoted, " "), shell_quote(log_file))
  return "sh -c " .. shell_quote(inner)
end

-- Starts the launcher; returns a sandbox object once it serves.
-- opts: port, host, job_delay, data, token_lifetime, watchdog, generation
-- ("25", the default, or "2022"), lua (interpreter), launcher,
-- tmpdir (its TMPDIR: where a sandbox without data makes its directory), open_hooks
-- (with data: the /_sandbox/ hooks open to all, see --open-hooks).
function sandbox.start(opts)
  opts = opts or {}
  local log_file = opts.log_file or os.tmpname()
  local launcher = opts.launcher or find_launcher()
  local pipe = assert(io.popen(launch_command(opts, launcher, log_file), "r"))
  local pid = tonumber(pipe:read("*l"))
  local url = pipe:read("*l")
  local ca_line = pipe:read("*l")
  local env_line = pipe:read("*l")
  if not pid or not url or not url:match("^https://") then
    local _, how, code = pipe:close()
    error(string.format("keyfactor-sandbox did not start (%s %s): %s", tostring(how), tostring(code),
      read_all(log_file)), 2)
  end
  local base = url:match("^(https://[^/]+)")
  local ca_file = ca_line and ca_line:match("^ca: (.*)$")
  local sb = setmetatable({
    pid = pid, pipe = pipe, url = url, base = base, ca_file = ca_file,
    env_file = env_line and env_line:match("^env: (.*)$"),
    dir = ca_file and ca_file:match("^(.*)/[^/]*$"), log_file = log_file,
    username = sandbox.USERNAME, password = sandbox.PASSWORD,
    operator_username = sandbox.OPERATOR_USERNAME, operator_password = sandbox.OPERATOR_PASSWORD,
    token_url = base .. "/oauth2/token",
    client_id = sandbox.CLIENT_ID, client_secret = sandbox.CLIENT_SECRET,
  }, Sandbox)
  return sb
end

-- Sends SIGTERM and waits for the process to exit. Idempotent.
function Sandbox:stop()
  if not self.pipe then return true end
  -- SIGTERM, and SIGKILL if it has not exited within 5 s: a wedged server
  -- must not hang whoever stops it (a spec run, CI).
  os.execute(string.format("kill -TERM %d 2>/dev/null; for _ in $(seq 50); do "
    .. "kill -0 %d 2>/dev/null || exit 0; sleep 0.1; done; kill -KILL %d 2>/dev/null",
    self.pid, self.pid, self.pid))
  local ok, how, code = self.pipe:close()
  self.pipe = nil
  self.exit = { ok = ok, how = how, code = code }
  return ok, how, code
end

---------------------------------------------------------------- hooks
local cjson_ok, cjson = pcall(require, "cjson")

local function decode(s)
  if not cjson_ok then error("keyfactor.sandbox: lua-cjson is required for the hooks") end
  return cjson.new().decode(s)
end

-- Calls a /_sandbox/ hook with curl; returns the decoded JSON answer.  As
-- the admin: a --data sandbox wants its credentials for the hooks.
function Sandbox:hook(method, path, body)
  -- bounded: a wedged sandbox fails the caller instead of hanging it
  local cmd = { CLEAN_ENV, "curl", "-sS", "--max-time", "30", "--fail-with-body", "--cacert", shell_quote(self.ca_file),
    "-u", shell_quote(self.username .. ":" .. self.password), "-X", method, shell_quote(self.base .. path) }
  if body then
    cmd[#cmd + 1] = "-H 'Content-Type: application/json' --data-binary " .. shell_quote(body)
  end
  local p = assert(io.popen(table.concat(cmd, " ") .. " 2>&1", "r"))
  local out = p:read("*a")
  local ok = p:close()
  if not ok then error("keyfactor.sandbox: " .. method .. " " .. path .. " failed: " .. out, 2) end
  return decode(out)
end

-- A raw request with curl, for tests of the wire format.
-- path: relative to sb.url (e.g. "/Certificates/1"), or absolute ("/oauth2/token").
-- opts: query (string), body (string or table -> JSON), headers ({name = value}),
--   auth: "admin" (default), "operator", "none", {user, password} or {token = ...};
--   requested_with (default "APIClient"; false to leave the header out).
-- Returns status, decoded JSON body (nil when not JSON), headers (lower-case), raw body.
function Sandbox:http(method, path, opts)
  opts = opts or {}
  local lower = path:lower()
  local absolute = lower:match("^/keyfactorapi") or lower:match("^/oauth2") or lower:match("^/_sandbox")
  local url = absolute and self.base .. path or self.url .. path
  if opts.query then url = url .. "?" .. opts.query end
  local header_file, body_file = os.tmpname(), os.tmpname()
  local cmd = { CLEAN_ENV, "curl", "-sS", "--max-time", "60", "--cacert", shell_quote(self.ca_file), "-X", method,
    "-D", shell_quote(header_file), "-o", shell_quote(body_file), "-w", "'%{http_code}'" }
  local function header(k, v) cmd[#cmd + 1] = "-H " .. shell_quote(k .. ": " .. v) end
  local a = opts.auth or "admin"
  if a == "admin" then a = { self.username, self.password }
  elseif a == "operator" then a = { self.operator_username, self.operator_password } end
  if type(a) == "table" and a.token then header("Authorization", "Bearer " .. a.token)
  elseif type(a) == "table" then cmd[#cmd + 1] = "-u " .. shell_quote(a[1] .. ":" .. a[2]) end
  if opts.requested_with ~= false then header("x-keyfactor-requested-with", opts.requested_with or "APIClient") end
  for k, v in pairs(opts.headers or {}) do header(k, v) end
  local body = opts.body
  if type(body) == "table" then body = cjson.encode(body) end
  if body then
    if not (opts.headers and (opts.headers["Content-Type"] or opts.headers["content-type"])) then
      header("Content-Type", "application/json")
    end
    cmd[#cmd + 1] = "--data-binary " .. shell_quote(body)
  end
  cmd[#cmd + 1] = shell_quote(url)
  local p = assert(io.popen(table.concat(cmd, " ") .. " 2>&1", "r"))
  local out = p:read("*a")
  p:close()
  local raw, head = read_all(body_file), read_all(header_file)
  os.remove(header_file)
  os.remove(body_file)
  local status = tonumber(out:match("(%d%d%d)$"))
  if not status or status == 0 then error("keyfactor.sandbox: curl failed: " .. out, 2) end
  local headers = {}
  for line in head:gmatch("[^\r\n]+") do
    local k, v = line:match("^([^:]+):%s*(.*)$")
    if k then headers[k:lower()] = v end
  end
  local ok, decoded = pcall(decode, raw)
  return status, ok and decoded or nil, headers, raw
end

--- The sandbox's log (its stderr) so far.
function Sandbox:log() return read_all(self.log_file) end

function Sandbox:reset() return self:hook("POST", "/_sandbox/reset") end
function Sandbox:requests() return self:hook("GET", "/_sandbox/requests") end
function Sandbox:state() return self:hook("GET", "/_sandbox/state") end
function Sandbox:clear_faults() return self:hook("DELETE", "/_sandbox/faults") end
function Sandbox:expire_tokens() return self:hook("POST", "/_sandbox/expire-tokens") end

--- Plants an inventory entry ({StoreId, CertificateId, Alias}), as if an
-- inventory had found it (e.g. in the store on broken.sandbox.local).
function Sandbox:plant(entry)
  if not cjson_ok then error("keyfactor.sandbox: lua-cjson is required for the hooks") end
  return self:hook("POST", "/_sandbox/inventory", cjson.encode(entry))
end

-- fault: {method, path, times, status, retry_after, delay_ms, action, body, bytes}
function Sandbox:fault(fault)
  if not cjson_ok then error("keyfactor.sandbox: lua-cjson is required for the hooks") end
  return self:hook("POST", "/_sandbox/faults", cjson.encode(fault))
end

return sandbox
