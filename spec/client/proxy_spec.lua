-- Proxies (issue 13.15), curl's convention: unless `proxy` is given, the
-- environment decides (http_proxy, https_proxy, ALL_PROXY, NO_PROXY);
-- `proxy = false` (or "") ignores it; `no_proxy` lists hosts reached
-- directly.  Each case runs a client in a child process with its own
-- environment, against the recording server (spec/support/capture.lua).
local capture = require "support.capture"

local INTERPRETER = rawget(_G, "jit") and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))
local CLOSED = "http://127.0.0.1:9"     -- nothing listens there
local SCRUB = "-u http_proxy -u HTTP_PROXY -u https_proxy -u HTTPS_PROXY -u ALL_PROXY -u all_proxy"
  .. " -u NO_PROXY -u no_proxy"

local CHILD = [[
local keyfactor = require "keyfactor"
local kf = keyfactor.new(assert(load("return " .. arg[1]))())
local value, err = kf:request("GET", "/Status/Endpoints")
io.write(value and "ok" or ("err " .. err.kind .. ": " .. tostring(err.message)))
kf:close()
]]

describe("proxies", function()
  local server, script

  lazy_setup(function()
    server = capture.start()
    script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(CHILD)
    f:close()
  end)
  lazy_teardown(function()
    if server then server:stop() end
    if script then os.remove(script) end
  end)

  -- What the child reports for keyfactor.new(`options`, Lua source) with
  -- the environment variables `env` ("NAME=value ...").
  local function run(env, options)
    local cmd = string.format("env %s LUA_PATH=%q LUA_CPATH=%q %s %s %s %q 2>&1", SCRUB, package.path,
      package.cpath, env, INTERPRETER, script, options)
    local pipe = assert(io.popen(cmd))
    local out = pipe:read("*a")
    pipe:close()
    return out
  end

  local function targets()
    local list = {}
    for _, r in ipairs(server:requests()) do list[r.target] = (list[r.target] or 0) + 1 end
    return list
  end

  local function direct_url() return string.format("{ url = %q }", server.url .. "/KeyfactorAPI") end

  it("honours http_proxy from the environment", function()
    local out = run("http_proxy=" .. server.url, '{ url = "http://upstream.invalid/KeyfactorAPI" }')
    assert.are.equal("ok", out)
    -- a proxied request names the absolute URL
    assert.is_not_nil(targets()["http://upstream.invalid/KeyfactorAPI/Status/Endpoints"])
  end)

  it("honours ALL_PROXY, and fails with a transport error when the proxy is down", function()
    assert.matches("^err transport", run("http_proxy=" .. CLOSED, direct_url()))
    assert.matches("^err transport", run("ALL_PROXY=" .. CLOSED, direct_url()))
  end)

  it("proxy = false and proxy = \"\" ignore the environment", function()
    local before = targets()["/KeyfactorAPI/Status/Endpoints"] or 0
    local opts = string.format("{ url = %q, proxy = false }", server.url .. "/KeyfactorAPI")
    assert.are.equal("ok", run("http_proxy=" .. CLOSED .. " ALL_PROXY=" .. CLOSED, opts))
    opts = string.format("{ url = %q, proxy = '' }", server.url .. "/KeyfactorAPI")
    assert.are.equal("ok", run("http_proxy=" .. CLOSED, opts))
    assert.are.equal(before + 2, targets()["/KeyfactorAPI/Status/Endpoints"])
  end)

  it("NO_PROXY and the no_proxy option reach listed hosts directly", function()
    assert.are.equal("ok", run("http_proxy=" .. CLOSED .. " NO_PROXY=127.0.0.1", direct_url()))
    local opts = string.format("{ url = %q, no_proxy = '127.0.0.1' }", server.url .. "/KeyfactorAPI")
    assert.are.equal("ok", run("http_proxy=" .. CLOSED, opts))
  end)

  it("an explicit proxy option wins over the environment", function()
    local opts = string.format("{ url = 'http://explicit.invalid/KeyfactorAPI', proxy = %q }", server.url)
    assert.are.equal("ok", run("http_proxy=" .. CLOSED, opts))
    assert.is_not_nil(targets()["http://explicit.invalid/KeyfactorAPI/Status/Endpoints"])
  end)

  it("rejects a proxy option that is neither a string nor false", function()
    local keyfactor = require "keyfactor"
    local ok, err = pcall(keyfactor.new, { url = "https://127.0.0.1:9/KeyfactorAPI", proxy = true })
    assert.is_false(ok)
    assert.matches("options.proxy must be a string or false", tostring(err), 1, true)
  end)
end)
