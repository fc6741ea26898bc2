-- The embedding examples, run end to end: examples/haproxy/demo.sh,
-- examples/openresty/demo.sh, examples/redis/demo.sh and examples/redis/fleet.sh each start the
-- sandbox and their host program on 127.0.0.1, and stop both on exit.
-- A host program that is missing is installed with apt-get when running as
-- root; the spec is pending only when that is impossible.
--
--   make spec SPECS=spec/integrations_spec.lua

local DEMO_TIMEOUT = 60

local sh = require("support.fixture").sh

local ROOT = sh("pwd"):match("^(.-)%s*$")

local function installed(package)
  local out = sh("dpkg-query -W -f='${Status}' " .. package)
  return out:find("install ok installed", 1, true) ~= nil
end

-- Installs what is missing of `packages`; returns nil and a reason when it cannot.
local function ensure(packages)
  local missing = {}
  for _, package in ipairs(packages) do
    if not installed(package) then missing[#missing + 1] = package end
  end
  if #missing == 0 then return true end
  if sh("id -u"):match("^%s*(%d+)") ~= "0" then
    return nil, "not root, cannot install " .. table.concat(missing, " ")
  end
  local out, code = sh("DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
    .. table.concat(missing, " ") .. " || (apt-get update -q && DEBIAN_FRONTEND=noninteractive "
    .. "apt-get install -y -q " .. table.concat(missing, " ") .. ")")
  if code ~= 0 then return nil, "apt-get install " .. table.concat(missing, " ") .. " failed:\n" .. out end
  return true
end

local function run_demo(name, root)
  return sh(("cd %q && timeout %d bash examples/%s/demo.sh"):format(root or ROOT, DEMO_TIMEOUT, name))
end

-- A copy of the checkout (without build/ and .git) inside a fresh
-- `mktemp -d` directory, mode 0700: nobody else may read it.  Returns that
-- directory, the copy's root, and a function that removes both.
local function private_copy()
  local dir = sh("mktemp -d"):match("^(%S+)")
  local copy = dir .. "/checkout"
  local _, code = sh(("mkdir %q && tar -C %q --exclude=./build --exclude=./.git -cf - . | tar -C %q -xf -")
    :format(copy, ROOT, copy))
  assert(code == 0, "could not copy the checkout to " .. copy)
  return dir, copy, function() sh(("rm -rf %q"):format(dir)) end
end

describe("embedding", function()
  it("HAProxy renews its served certificate through the runtime API, without a reload", function()
    local ok, why = ensure { "haproxy", "socat", "lua5.3", "liblua5.3-dev", "lua-luaossl",
                             "lua-socket", "lua-cjson", "curl", "openssl" }
    if not ok then return pending(why) end
    local out, code = run_demo("haproxy")
    assert.equal(0, code, out)
    local before = out:match("== before renewal\nserial=(%x+)")
    local after = out:match("== after renewal\nserial=(%x+)")
    assert.is_truthy(before, out)
    assert.is_truthy(after, out)
    assert.not_equal(before, after, out)
    local pid_before = out:match("== before renewal\n.-haproxy pid: (%d+)")
    local pid_after = out:match("== after renewal\n.-haproxy pid: (%d+)")
    assert.is_truthy(pid_before, out)
    assert.equal(pid_before, pid_after, out)
    -- HAProxy's own view (show ssl cert) has the new serial, and the task said so.
    assert.is_truthy(out:find("Serial: " .. after, 1, true), out)
    assert.is_truthy(out:find("kf%-renew: installed certificate %d+ serial " .. after), out)
  end)

  it("nginx (lua-nginx-module) returns what its timer read from the sandbox, from a private checkout", function()
    -- luajit2 (OpenResty's LuaJIT), not luajit: Debian's libnginx-mod-http-lua
    -- depends on libluajit2-5.1-2, which conflicts with libluajit-5.1-2.
    local ok, why = ensure { "libnginx-mod-http-lua", "luajit2", "libluajit2-5.1-dev",
                             "lua-socket", "lua-cjson", "curl" }
    if not ok then return pending(why) end
    -- From a checkout that is not world-readable: nginx's workers (nobody,
    -- when started as root) cannot read it, so the master must preload.
    local dir, copy, done = private_copy()
    assert.equal("700", (sh(("stat -c %%a %q"):format(dir)):match("%d+")))
    local out, code = run_demo("openresty", copy)
    done()
    assert.equal(0, code, out)
    local enrolled = out:match("enrolled certificate %d+ serial (%x+)")
    assert.is_truthy(enrolled, out)
    local body = out:match("== GET [^\n]*\n([^\n]*)")
    assert.is_truthy(body, out)
    local summary = require("cjson").decode(body)
    assert.equal(enrolled, summary.serial, out)
    assert.is_truthy(summary.not_after:match("^%d%d%d%d%-%d%d%-%d%dT"), out)
    assert.is_nil(summary.error, out)
  end)

  it("Redis: four workers on one renewal queue, one killed with SIGKILL, renew each certificate once", function()
    local ok, why = ensure { "redis-server", "redis-tools", "lua-redis", "lua-socket", "lua-cjson", "curl" }
    if not ok then return pending(why) end
    local out, code = sh(("cd %q && timeout %d bash examples/redis/fleet.sh 40"):format(ROOT, DEMO_TIMEOUT))
    assert.equal(0, code, out)
    assert.is_truthy(out:find("killed w2 (SIGKILL)", 1, true), out)
    assert.is_truthy(out:find("fleet: 40 of 40 renewals deployed everywhere", 1, true), out)
    assert.is_truthy(out:find("fleet: 40 certificates, 40 renewed once, 0 twice, 0 lost%s*$"), out)
  end)

  it("Redis: of two workers started at once, exactly one renews", function()
    local ok, why = ensure { "redis-server", "redis-tools", "lua-redis", "lua5.3", "liblua5.3-dev",
                             "lua-socket", "lua-cjson", "curl" }
    if not ok then return pending(why) end
    local out, code = run_demo("redis")
    assert.equal(0, code, out)
    local concurrent = out:match("== two workers at once\n(.-)== a third worker")
    assert.is_truthy(concurrent, out)
    local renewed, locked = 0, 0
    for _ in concurrent:gmatch(": RENEWED certificate") do renewed = renewed + 1 end
    for _ in concurrent:gmatch("is locked by worker%-") do locked = locked + 1 end
    -- The other one found the lock taken (or, had it started after the first
    -- finished, the renewal recorded on the certificate: nothing to do).
    for _ in concurrent:gmatch(": certificate %d+ [^\n]*: complete, renewal %d+") do locked = locked + 1 end
    assert.equal(1, renewed, out)
    assert.equal(1, locked, out)
    assert.is_truthy(out:find("worker%-c: certificate %d+ [^\n]*: complete, renewal %d+"), out)
    assert.is_truthy(out:find("lock left behind: 0", 1, true), out)
    assert.is_truthy(out:find("require=nil", 1, true), out)
  end)
end)
