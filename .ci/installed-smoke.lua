-- Run by `make rock-check` as `lua5.4 .ci/installed-smoke.lua TREE`, with no
-- LUA_PATH/LUA_CPATH: the launchers luarocks installed in TREE/bin must find
-- their modules by themselves.  Starts TREE/bin/keyfactor-sandbox, runs
-- TREE/bin/keyfactor against it, stops the sandbox.
local tree = assert(arg[1], "usage: installed-smoke.lua TREE")

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

local ok, out = pcall(function()
  assert(url and ca, "the installed keyfactor-sandbox printed no URL and CA")
  local host = url:match("^https://([^/]+)")
  local p = io.popen(clean .. "KEYFACTOR_HOSTNAME=" .. host .. " KEYFACTOR_USERNAME='SANDBOX\\admin'"
    .. " KEYFACTOR_PASSWORD=sandbox-admin KEYFACTOR_CA_CERT=" .. sh_quote(ca) .. " "
    .. sh_quote(tree .. "/bin/keyfactor") .. " status 2>&1; echo \"rc=$?\"")
  local text = p:read("a")
  p:close()
  assert(text:find("rc=0", 1, true) and text:find("^ok: "), "installed keyfactor status failed:\n" .. text)
  return text:match("^[^\n]*")
end)
if pid then os.execute("kill " .. pid) end
server:close()
assert(ok, out)
print("installed launchers: " .. out)
