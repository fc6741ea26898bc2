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

local read = require("support.files").read

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
    code, out = run("lua5.4 " .. LAUNCHER .. " --watchdog 0")
    assert.equals(2, code)
    assert.matches("%-%-watchdog must be more than 0 seconds", out)
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
  local function mode_of(path)
    return (io.popen("stat -c %a '" .. path .. "'"):read("l"))
  end

  it("keeps --data DIR 0700 with every file 0600, tightening an existing one", function()
    local dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -m 755 '" .. dir .. "' && umask 022 && echo '{}' > '" .. dir .. "/state.json'")
    local sb = sandbox.start{ port = 0, data = dir, job_delay = 0 }
    sb:http("POST", "/Enrollment/PFX", { headers = { ["x-certificateformat"] = "STORE" },
      body = { Template = "WebServer", Subject = "CN=private.example.com" } })
    assert.equals("700", mode_of(dir))
    local files = 0
    for name in io.popen("ls -A '" .. dir .. "'"):lines() do
      assert.equals("600", mode_of(dir .. "/" .. name), name)
      files = files + 1
    end
    assert.is_true(files >= 5, "ca.pem, ca-key.pem, state.json, keyfactor.env, sandbox.lock")
    sb:stop()
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("refuses a second sandbox on the same --data DIR, naming the first one's pid", function()
    local dir = os.tmpname()
    os.remove(dir)
    local sb = sandbox.start{ port = 0, data = dir }
    local code, out = run("lua5.4 " .. LAUNCHER .. " --port 0 --data '" .. dir .. "'")
    assert.equals(1, code)
    assert.matches("another sandbox %(pid " .. sb.pid .. "%) is using " .. dir:gsub("%p", "%%%0"), out)
    assert.not_matches("traceback", out)
    sb:stop()
    -- the lock dies with its holder: the directory is free again
    local sb2 = sandbox.start{ port = 0, data = dir }
    assert.equals(200, (sb2:http("GET", "/Status/Endpoints")))
    sb2:stop()
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("persists after each request, not only at a clean stop (SIGKILL loses nothing)", function()
    local dir = os.tmpname()
    os.remove(dir)
    local sb = sandbox.start{ port = 0, data = dir, job_delay = 0 }
    local ids = {}
    for i = 1, 3 do
      local _, body = sb:http("POST", "/Enrollment/PFX", { headers = { ["x-certificateformat"] = "STORE" },
        body = { Template = "WebServer", Subject = "CN=kill" .. i .. ".example.com" } })
      ids[i] = math.tointeger(body.CertificateInformation.KeyfactorId)
    end
    local store = "5a4db0c5-0104-4e5a-9d00-000000000004"
    assert.equals(200, (sb:http("POST", "/Certificates/Revoke", { body = { CertificateIds = { ids[1] },
      Reason = 1, Comment = "spec", EffectiveDate = "2020-01-01T00:00:00Z" } })))
    sb:http("POST", "/Enrollment/PFX/Deploy", { body = { CertificateId = ids[2], Password = "",
      Stores = { { StoreId = store } } } })
    os.execute("sleep 0.1")
    sb:http("GET", "/Certificates/" .. ids[3]) -- the job sweep completes the deployment here
    os.execute("kill -KILL " .. sb.pid)
    sb:stop()
    local sb2 = sandbox.start{ port = 0, data = dir }
    for i = 1, 3 do assert.equals(200, (sb2:http("GET", "/Certificates/" .. ids[i]))) end
    local _, revoked = sb2:http("GET", "/Certificates/" .. ids[1])
    assert.equals(2, revoked.CertState)
    local _, deployed = sb2:http("GET", "/Certificates/" .. ids[2], { query = "includeLocations=true" })
    assert.equals(store, deployed.Locations[1].CertStoreId)
    sb2:stop()
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("writes DIR/keyfactor.env (0600) that a client reads in one step", function()
    local sb = sandbox.start{ port = 0 }
    assert.equals(sb.dir .. "/keyfactor.env", sb.env_file)
    assert.equals("600", mode_of(sb.env_file))
    -- sandbox.start took it from the launcher's third stdout line, "env: PATH"
    -- (after the URL, first, and "ca: PATH")
    local cmd = ". '" .. sb.env_file .. "' && env -u LD_PRELOAD lua5.4 bin/keyfactor status"
    local code, out = run("env -u KEYFACTOR_HOSTNAME -u KEYFACTOR_USERNAME sh -c " .. "\"" .. cmd .. "\"")
    assert.equals(0, code, out)
    assert.matches("ok: " .. sb.url:gsub("%p", "%%%0"), out)
    sb:stop()
  end)

  -- Without --data: $TMPDIR/keyfactor-sandbox.XXXXXX holds the CA key and
  -- keyfactor.env (the admin password); it used to stay behind after every
  -- stop.  Each case runs with a TMPDIR of its own.
  describe("the temporary data directory", function()
    local tmpdir
    before_each(function()
      local p = io.popen("mktemp -d")
      tmpdir = p:read("l")
      p:close()
    end)
    after_each(function() os.execute("rm -rf '" .. tmpdir .. "'") end)

    local function entries()
      local names = {}
      local p = io.popen("ls -A '" .. tmpdir .. "'")
      for name in p:lines() do names[#names + 1] = name end
      p:close()
      return names
    end

    local function exists(path) return os.execute("test -e '" .. path .. "'") == true end

    for _, signal in ipairs { "TERM", "INT" } do
      it("is removed on SIG" .. signal, function()
        local sb = sandbox.start{ port = 0, tmpdir = tmpdir }
        assert.is_true(exists(sb.env_file))
        os.execute("kill -" .. signal .. " " .. sb.pid)
        local ok = sb.pipe:close()
        sb.pipe = nil
        assert.is_true(ok)
        assert.is_false(exists(sb.dir))
        assert.matches("^" .. tmpdir:gsub("%p", "%%%0") .. "/keyfactor%-sandbox%.", sb.dir)
        assert.are.same({}, entries())
      end)
    end

    it("is removed when the sandbox cannot start (an error after it was made)", function()
      local sb = sandbox.start{ port = 0 }
      local port = tonumber(sb.base:match(":(%d+)$"))
      local ok = pcall(sandbox.start, { port = port, tmpdir = tmpdir })   -- the port is taken
      sb:stop()
      assert.is_false(ok)
      assert.are.same({}, entries())
    end)

    it("left by a killed sandbox is removed by the next one; a live one's is kept", function()
      local killed = sandbox.start{ port = 0, tmpdir = tmpdir }
      local left = killed.dir
      os.execute("kill -KILL " .. killed.pid)
      killed:stop()
      assert.is_true(exists(left .. "/keyfactor.env"))
      local live = sandbox.start{ port = 0, tmpdir = tmpdir }
      -- both look old enough to be abandoned; only the lock and pid tell
      os.execute("touch -d '1 hour ago' '" .. left .. "/sandbox.lock' '" .. live.dir .. "/sandbox.lock'")
      local next = sandbox.start{ port = 0, tmpdir = tmpdir }
      assert.is_false(exists(left))
      assert.is_true(exists(live.dir .. "/keyfactor.env"))
      assert.equals(200, (live:http("GET", "/Status/Endpoints")))
      next:stop()
      live:stop()
      assert.are.same({}, entries())
    end)
  end)
end)
