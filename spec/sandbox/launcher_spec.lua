-- The launcher and sandbox.start: output lines, flags, clean stop,
-- start-up failures, and persistence with --data.
local sandbox = require "keyfactor.sandbox"

-- "CN=x, O=y" (tostring of a luaossl name may use the "/CN=x/O=y" form)
local function dn(name)
  local parts = {}
  for k, v in pairs(name) do parts[#parts + 1] = k .. "=" .. v end
  return table.concat(parts, ", ")
end
local x509 = require "openssl.x509"

local LAUNCHER = "bin/keyfactor-sandbox"

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function run(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("a")
  local _, _, code = p:close()
  return code, out
end

describe("sandbox launcher", function()
  it("prints --help and rejects unknown options", function()
    local code, out = run("lua5.4 " .. LAUNCHER .. " --help")
    assert.equals(0, code)
    assert.matches("%-%-job%-delay", out)
    code, out = run("lua5.4 " .. LAUNCHER .. " --bogus 1")
    assert.equals(2, code)
    assert.matches("unknown option", out)
    code = run("lua5.4 " .. LAUNCHER .. " --port abc")
    assert.equals(2, code)
  end)

  it("starts quickly, prints URL and CA, stops cleanly with exit code 0", function()
    local sb = sandbox.start{ port = 0 }
    assert.matches("^https://127%.0%.0%.1:%d+/KeyfactorAPI$", sb.url)
    local ca = x509.new(read(sb.ca_file))
    assert.equals("CN=SandboxCA, O=Keyfactor Sandbox", dn(ca:getSubject()))
    assert.is_true(sb.pid > 0)
    assert.is_true(sb:stop())
    assert.equals(0, sb.exit.code)
    assert.is_true(sb:stop()) -- idempotent
  end)

  it("stops on SIGINT too", function()
    local sb = sandbox.start{ port = 0 }
    os.execute("kill -INT " .. sb.pid)
    local ok, _, code = sb.pipe:close()
    sb.pipe = nil
    assert.is_true(ok)
    assert.equals(0, code)
  end)

  it("raises with the child's stderr when it cannot start", function()
    local sb = sandbox.start{ port = 0 }
    local port = sb.base:match(":(%d+)$")
    local ok, err = pcall(sandbox.start, { port = tonumber(port) })
    sb:stop()
    assert.is_false(ok)
    assert.matches("did not start", err)
    assert.matches("in use", err)
  end)

  it("keeps the CA and the whole state in --data DIR across restarts", function()
    local dir = os.tmpname()
    os.remove(dir)
    local sb = sandbox.start{ port = 0, data = dir, job_delay = 0 }
    assert.equals(dir .. "/ca.pem", sb.ca_file)
    local ca = read(sb.ca_file)
    local _, body = sb:http("POST", "/Enrollment/PFX", { headers = { ["x-certificateformat"] = "STORE" },
      body = { Template = "WebServer", Subject = "CN=persist.example.com" } })
    local id = math.tointeger(body.CertificateInformation.KeyfactorId)
    local store = "5a4db0c5-0104-4e5a-9d00-000000000004"
    sb:http("POST", "/Enrollment/PFX/Deploy", { body = { CertificateId = id, Password = "",
      Stores = { { StoreId = store } } } })
    local _, pending = sb:http("POST", "/Enrollment/PFX", { headers = { ["x-certificateformat"] = "PFX" },
      body = { Template = "WebServerApproval", Subject = "CN=later.example.com", Password = "p" } })
    os.execute("sleep 0.1")
    sb:http("GET", "/Certificates/" .. id)
    sb:stop()

    local sb2 = sandbox.start{ port = 0, data = dir }
    assert.equals(ca, read(sb2.ca_file))
    local status, cert = sb2:http("GET", "/Certificates/" .. id, { query = "includeLocations=true" })
    assert.equals(200, status)
    assert.equals("persist.example.com", cert.IssuedCN)
    assert.is_true(cert.HasPrivateKey)
    assert.equals(store, cert.Locations[1].CertStoreId)
    local _, list = sb2:http("GET", "/Workflow/Certificates/Pending")
    assert.equals(pending.CertificateInformation.KeyfactorRequestId, list[1].Id)
    -- new ids continue after the persisted ones
    local _, next_body = sb2:http("POST", "/Enrollment/PFX", { headers = { ["x-certificateformat"] = "STORE" },
      body = { Template = "WebServer", Subject = "CN=next.example.com" } })
    assert.is_true(next_body.CertificateInformation.KeyfactorId > id)
    sb2:stop()
    os.execute("rm -rf '" .. dir .. "'")
  end)
end)
