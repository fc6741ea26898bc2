-- Run by `make rock-check` as `lua5.4 .ci/installed-smoke.lua TREE [TREE53]`,
-- with no LUA_PATH/LUA_CPATH: the launchers luarocks installed in TREE/bin
-- must find their modules by themselves.  Starts TREE/bin/keyfactor-sandbox,
-- runs TREE/bin/keyfactor status against it, TREE/bin/keyfactor-fleet status
-- against a private redis-server, and TREE53/bin/keyfactor status (the client
-- rock installed for Lua 5.3 from the same checkout), then stops both servers.
local tree = assert(arg[1], "usage: installed-smoke.lua TREE [TREE53]")
local tree53 = arg[2]

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local clean = "env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 "

local server = io.popen("sh -c 'echo $$; exec " .. clean .. sh_quote(tree .. "/bin/keyfactor-sandbox")
  .. " --port 0 2>/dev/null'")
local pid = server:read("l")
local url, ca
for _ = 1, 5 do
  local line = server:read("l")
  if not line then break end
  url = url or line:match("^(https://%S+)$")
  ca = ca or line:match("^ca: (.+)$")
  if url and ca then break end
end

local function run(command)
  local p = io.popen("{ " .. command .. "; } 2>&1; echo \"rc=$?\"")
  local text = p:read("a")
  p:close()
  return text
end

local redis_dir = os.tmpname()
os.remove(redis_dir)

local ok, out = pcall(function()
  assert(url and ca, "the installed keyfactor-sandbox printed no URL and CA")
  local host = url:match("^https://([^/]+)")
  local settings = "KEYFACTOR_HOSTNAME=" .. host .. " KEYFACTOR_USERNAME='SANDBOX\\admin'"
    .. " KEYFACTOR_PASSWORD=sandbox-admin KEYFACTOR_CA_CERT=" .. sh_quote(ca) .. " "
  local env = clean .. settings
  local lines = {}
  local text = run(env .. sh_quote(tree .. "/bin/keyfactor") .. " status")
  assert(text:find("rc=0", 1, true) and text:find("^ok: "), "installed keyfactor status failed:\n" .. text)
  lines[#lines + 1] = "keyfactor status: " .. text:match("^[^\n]*")

  -- one's own script, as the README says: eval "$(luarocks --tree TREE path)" first
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write('local kf = require("keyfactor").from_env()\n',
    'local sb = require "keyfactor.sandbox"\n',
    'print("own script: " .. #assert(kf:status()) .. " endpoints, sandbox module " .. type(sb.start))\n')
  f:close()
  text = run(clean .. "sh -c " .. sh_quote('eval "$(luarocks --lua-version=5.4 --tree ' .. sh_quote(tree)
    .. ' path)" && ' .. settings .. " lua5.4 " .. sh_quote(script)))
  os.remove(script)
  assert(text:find("rc=0", 1, true) and text:find("^own script: %d+ endpoints, sandbox module function"),
    "a script run after luarocks path failed:\n" .. text)
  lines[#lines + 1] = text:match("^[^\n]*")

  -- keyfactor-fleet needs a Redis: a private one on a port of its own
  local port = 20000 + (os.time() % 20000)
  assert(os.execute(("mkdir -m 700 %s && redis-server --bind 127.0.0.1 --port %d --dir %s --save '' "
    .. "--appendonly no --daemonize yes --pidfile %s/redis.pid --logfile %s/redis.log")
    :format(redis_dir, port, redis_dir, redis_dir, redis_dir)), "redis-server did not start")
  for _ = 1, 50 do
    if os.execute("redis-cli -p " .. port .. " ping >/dev/null 2>&1") then break end
    os.execute("sleep 0.1")
  end
  text = run(env .. "KF_REDIS_PORT=" .. port .. " " .. sh_quote(tree .. "/bin/keyfactor-fleet") .. " status")
  assert(text:find("rc=0", 1, true) and text:find("^due %d+"), "installed keyfactor-fleet status failed:\n" .. text)
  lines[#lines + 1] = "keyfactor-fleet status: " .. text:match("^[^\n]*")

  if tree53 then
    text = run(env .. sh_quote(tree53 .. "/bin/keyfactor") .. " --version && "
      .. env .. sh_quote(tree53 .. "/bin/keyfactor") .. " status")
    assert(text:find("Lua 5.3", 1, true) and text:find("rc=0", 1, true) and text:find("\nok: "),
      "keyfactor installed for Lua 5.3 failed:\n" .. text)
    lines[#lines + 1] = "keyfactor (Lua 5.3) status: " .. text:match("\n(ok: [^\n]*)")
  end
  return table.concat(lines, "\n")
end)
os.execute(("test -f %s/redis.pid && kill $(cat %s/redis.pid); rm -rf %s"):format(redis_dir, redis_dir, redis_dir))
if pid then os.execute("kill " .. pid) end
server:close()
assert(ok, out)
print("installed launchers, with no LUA_PATH:\n" .. out)
