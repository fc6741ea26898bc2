-- Real HAProxy and nginx for the host specs and bench/hosts.lua: starts one
-- on 127.0.0.1 with the test application of spec/hosts/app/, talks plain
-- HTTP/1.0 to it with LuaSocket, stops it.  The host specs run on Lua 5.4;
-- the hosts run their own Lua (HAProxy 5.3, nginx LuaJIT) with the matching
-- build of the core.  Also loads on 5.3 and LuaJIT (integrations_spec.lua
-- uses host.sh on every runtime).
local socket = require "socket"

local host = {}

local function sh(command)
  local p = assert(io.popen("{ " .. command .. "; } 2>&1; echo \"exit:$?\""))
  local out = p:read("*a")
  p:close()
  local body, code = out:match("^(.-)exit:(%d+)%s*$")
  return body, tonumber(code)
end
host.sh = sh

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
host.quote = quote

host.ROOT = sh("pwd"):match("^(.-)%s*$")
local source = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")
if source then host.ROOT = sh("cd " .. quote(source) .. "/../.. && pwd"):match("^(.-)%s*$") end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end
host.read_file = read_file

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

--- Builds the C core for `lua` (lua5.3, luajit) into build/.
function host.build(lua)
  local out, code = sh(("make -s -C %s build LUA=%s"):format(quote(host.ROOT), lua))
  assert(code == 0, "make build LUA=" .. lua .. " failed:\n" .. out)
end

function host.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return port
end

--- `template` with every @NAME@ replaced by vars.NAME.
local function render(template, vars)
  return (template:gsub("@([%w_]+)@", function(name)
    return assert(vars[name], "no value for @" .. name .. "@") and tostring(vars[name])
  end))
end

-- Starts `command` in the background, its output in `log`; returns its pid.
local function spawn(command, log, env)
  local p = assert(io.popen(("%s exec %s >%s 2>&1 </dev/null & echo $!"):format(env or "", command, quote(log))))
  local pid = tonumber(p:read("*l"))
  p:close()
  return assert(pid, "could not start " .. command)
end

local function alive(pid) return select(2, sh("kill -0 " .. pid .. " 2>/dev/null")) == 0 end
host.alive = alive

--- One HTTP/1.0 exchange (no chunked answers, the host closes); returns status, body.
-- `sock` (from host.begin) is finished instead of sending anew.
function host.request(port, path, timeout)
  return host.finish(host.begin(port, path), timeout)
end

--- Sends GET `path` and returns the socket without reading the answer.
function host.begin(port, path)
  local s = assert(socket.tcp())
  s:settimeout(10)
  assert(s:connect("127.0.0.1", port))
  assert(s:send("GET " .. path .. " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"))
  return s
end

--- True when the answer on `sock` (host.begin) has started to arrive.
function host.answered(sock)
  local readable = socket.select({ sock }, nil, 0)
  return #readable > 0
end

function host.finish(sock, timeout)
  sock:settimeout(timeout or 30)
  local data, err, partial = sock:receive("*a")
  sock:close()
  data = data or partial
  if not data or data == "" then return nil, err end
  local status = tonumber(data:match("^HTTP/1%.%d (%d%d%d)"))
  return status, data:match("\r\n\r\n(.*)$") or ""
end

local Host = {}
Host.__index = Host

-- Waits until `path` answers (at most ~10 s).
function Host:wait_ready(path)
  for _ = 1, 100 do
    if not alive(self.pid) then break end
    local ok, status = pcall(host.request, self.port, path, 2)
    if ok and status then return true end
    socket.sleep(0.1)
  end
  error(self.name .. " did not start:\n" .. self:log())
end

function Host:log() return read_file(self.log_file) end

function Host:get(path, timeout) return host.request(self.port, path, timeout) end

--- Stops the host (TERM, then KILL after 5 s) and removes its directory.
function Host:stop()
  if self.pid then
    sh(("kill -TERM %d 2>/dev/null; for _ in $(seq 50); do kill -0 %d 2>/dev/null || break; sleep 0.1; done;"
      .. " kill -KILL %d 2>/dev/null"):format(self.pid, self.pid, self.pid))
    self.pid = nil
  end
  if self.dir then sh("rm -rf " .. quote(self.dir)) end
  self.dir = nil
end

local function new_host(name, opts)
  local dir = sh("mktemp -d /tmp/kf-" .. name .. ".XXXXXX"):match("^(%S+)")
  local self = setmetatable({ name = name, dir = dir, port = host.free_port(),
                              log_file = dir .. "/host.log" }, Host)
  -- The client's settings, for the application's keyfactor.new.
  self.env = ("KF_URL=%s KF_CA=%s KF_USER=%s KF_PASS=%s KF_MODE=%s "):format(quote(opts.url),
    quote(opts.ca_file), quote(opts.username), quote(opts.password), quote(opts.mode or "attached"))
  if opts.warm_id then self.env = self.env .. "KF_WARM_ID=" .. opts.warm_id .. " " end
  return self
end

--- HAProxy 2.6 with spec/hosts/app/haproxy_app.lua.  opts: url, ca_file,
-- username, password (the sandbox), mode ("attached" or "blocking"),
-- nbthread (1), per_thread (lua-load-per-thread instead of lua-load).
function host.haproxy(opts)
  local self = new_host("haproxy", opts)
  write_file(self.dir .. "/haproxy.cfg", render(read_file(host.ROOT .. "/spec/hosts/app/haproxy.cfg.in"), {
    ROOT = host.ROOT, PORT = self.port, NBTHREAD = opts.nbthread or 1,
    LUA_LOAD = opts.per_thread and "lua-load-per-thread" or "lua-load",
    LATE_LOAD = opts.late and ((opts.per_thread and "lua-load-per-thread" or "lua-load")
      .. ' "' .. host.ROOT .. '/spec/hosts/app/haproxy_late_app.lua"') or "",
  }))
  self.pid = spawn("haproxy -db -f " .. quote(self.dir .. "/haproxy.cfg"), self.log_file, self.env)
  self:wait_ready("/plain")
  return self
end

--- nginx with lua-nginx-module and spec/hosts/app/nginx_app.lua (same
-- opts; `workers` (1), `reuseport` (spread connections over the workers),
-- `warm_id` (a call in init_by_lua, in the master, before the fork).
-- Workers run as nginx's default user (nobody when started as root): the
-- application preloads every module in init_by_lua, and the CA is copied
-- into a readable file.
function host.nginx(opts)
  local self = new_host("nginx", opts)
  sh("chmod 755 " .. quote(self.dir) .. " && mkdir -p " .. quote(self.dir .. "/tmp"))
  local ca = self.dir .. "/ca.pem"
  write_file(ca, read_file(opts.ca_file))
  sh("chmod 644 " .. quote(ca))
  self.env = self.env:gsub("KF_CA=%S+", "KF_CA=" .. quote(ca))
  write_file(self.dir .. "/nginx.conf", render(read_file(host.ROOT .. "/spec/hosts/app/nginx.conf.in"), {
    ROOT = host.ROOT, PORT = self.port, WORKERS = opts.workers or 1,
    REUSEPORT = opts.reuseport and " reuseport" or "",
  }))
  self.pid = spawn(("nginx -p %s -c %s -e %s"):format(quote(self.dir), quote(self.dir .. "/nginx.conf"),
    quote(self.log_file)), self.dir .. "/nginx.out", self.env)
  self:wait_ready("/plain")
  return self
end

--- The pids of a process's children (nginx workers).
function host.children(pid)
  local out = sh("cat /proc/" .. pid .. "/task/*/children 2>/dev/null")
  local pids = {}
  for p in out:gmatch("%d+") do pids[#pids + 1] = tonumber(p) end
  return pids
end

return host
