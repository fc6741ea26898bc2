-- Every workflow in examples/ runs to completion against its own sandbox
-- and prints its report.
local function interpreter()
  local i = -1
  while arg and arg[i - 1] do i = i - 1 end
  return arg and arg[i] or "lua5.4"
end

-- Runs examples/<script> with `args`; `env` is a "NAME=value " prefix.
local function run(script, args, env)
  local cmd = (env or "") .. interpreter() .. " examples/" .. script .. " " .. table.concat(args or {}, " ")
  -- the exit status is echoed: LuaJIT's pipe:close() does not return it
  local pipe = assert(io.popen(cmd .. " 2>&1; echo \"exit:$?\""))
  local out = pipe:read("*a")
  pipe:close()
  local code = tonumber(out:match("exit:(%d+)%s*$"))
  return out:gsub("exit:%d+%s*$", ""), code
end

describe("examples", function()
  it("renew_to_pem.lua renews, recovers the PFX and writes PEM files whose key matches the certificate", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -m 0700 " .. dir))
    local out, code = run("renew_to_pem.lua", { dir })
    assert.are.equal(0, code, out)
    assert.matches("certificate %d+ renewed as %d+: CN=pem%.example%.com", out)
    local x509, pkey = require "openssl.x509", require "openssl.pkey"
    local function read(name)
      local f = assert(io.open(dir .. "/" .. name, "rb"))
      local text = f:read("*a")
      f:close()
      return text
    end
    local cert, key = x509.new(read("cert.pem"), "PEM"), pkey.new(read("key.pem"), "PEM")
    assert.are.equal(cert:getPublicKey():toPEM("public"), key:toPEM("public"))
    assert.matches("BEGIN CERTIFICATE", read("chain.pem"))
    os.execute("rm -rf " .. dir)
  end)

  it("deploy_to_stores.lua enrolls, deploys to a PEM and a PKCS12 store and reports both", function()
    local out, code = run("deploy_to_stores.lua", { "report.example.com" })
    assert.are.equal(0, code, out)
    assert.matches("certificate %d+  CN=report%.example%.com", out)
    assert.matches("deployed to 2 stores", out)
    assert.matches("PEM%s+web%d+%.sandbox%.local", out)
    assert.matches("PKCS12%s+app%d+%.sandbox%.local", out)
  end)

  it("fleet_deploy.lua deploys to every store of the Web container but the broken one, whose job failed", function()
    local out, code = run("fleet_deploy.lua", { "fleet.example.com", "Web" })
    assert.are.equal(1, code, out)
    local stores = 0
    for _ in out:gmatch("sandbox%.local%s+%S+%s+ok") do stores = stores + 1 end
    assert.is_true(stores >= 4, out)
    assert.matches("broken%.sandbox%.local%s+%S+%s+FAILED  job: Unable to reach", out)
    assert.matches(stores .. " deployed, 1 failed", out)
  end)

  it("fleet_deploy.lua reports per-store failures (the operator may not deploy to Restricted)", function()
    local out, code = run("fleet_deploy.lua", { "vault.example.com", "Restricted" }, "KF_SANDBOX_USER=operator ")
    assert.are.equal(1, code, out)
    local failed = 0
    for _ in out:gmatch("FAILED") do failed = failed + 1 end
    assert.is_true(failed >= 2, out)
    assert.matches("0 deployed, " .. failed .. " failed", out)
  end)

  it("bulk_renew.lua renews the certificates that expire soon and redeploys them", function()
    local out, code = run("bulk_renew.lua", { "30" })
    assert.are.equal(0, code, out)
    assert.matches("3 certificates expire within 30 days", out)
    assert.matches("3 complete, 0 incomplete", out)
    for i = 1, 3 do
      assert.matches("certificate %d+ CN=legacy" .. i .. "%.example%.com: complete, renewed as %d+, in 1 of 1 store",
        out)
    end
  end)
end)
