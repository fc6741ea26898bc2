-- Test hooks: fault injection, the request log, reset.
local sandbox = require "keyfactor.sandbox"

describe("sandbox hooks", function()
  local sb

  lazy_setup(function() sb = sandbox.start{ port = 0 } end)
  lazy_teardown(function() if sb then sb:stop() end end)
  before_each(function() sb:reset() end)

  local ENROLL = "/KeyfactorAPI/Enrollment/PFX"
  local enroll_body = '{"Template":"WebServer","Subject":"CN=fault.example.com","Password":"p"}'

  -- curl exit code, http code, body (raw, to see what a client really gets)
  local function curl(method, path, body, extra)
    local out_file = os.tmpname()
    local cmd = "curl -sS -o " .. out_file .. " -w '%{http_code}' --cacert " .. sb.ca_file ..
      " -u 'SANDBOX\\admin:sandbox-admin' -H 'x-keyfactor-requested-with: x' -H 'x-certificateformat: PFX'" ..
      " -H 'Content-Type: application/json' -X " .. method .. " " .. (extra or "") ..
      (body and (" --data-binary '" .. body .. "'") or "") .. " " .. sb.base .. path .. " 2>/dev/null"
    local p = io.popen(cmd)
    local code = p:read("a")
    local _, _, exit = p:close()
    local f = io.open(out_file, "rb")
    local data = f and f:read("a") or ""
    if f then f:close() end
    os.remove(out_file)
    return exit, tonumber(code), data
  end

  local function certificate_count()
    return #sb:state().certificates
  end

  it("answers a status with Retry-After for the next `times` matching requests", function()
    sb:fault{ method = "get", path = "/KeyfactorAPI/Status/Endpoints", times = 2, status = 503, retry_after = 7 }
    local s1, b1, h1 = sb:http("GET", "/Status/Endpoints")
    assert.equals(503, s1)
    assert.equals("7", h1["retry-after"])
    assert.matches("^0x", b1.ErrorCode)
    assert.equals(405, (sb:http("POST", "/Status/Endpoints"))) -- another method: not consumed
    assert.equals(503, (sb:http("GET", "/Status/Endpoints")))
    assert.equals(200, (sb:http("GET", "/Status/Endpoints")))
  end)

  it("matches paths case-insensitively and with a trailing * wildcard", function()
    sb:fault{ method = "*", path = "/keyfactorapi/certificatestores*", status = 429, times = 2 }
    assert.equals(429, (sb:http("GET", "/CertificateStores")))
    assert.equals(429, (sb:http("GET", "/CertificateStores/5a4db0c5-0101-4e5a-9d00-000000000001")))
    assert.equals(200, (sb:http("GET", "/CertificateStores")))
  end)

  it("answers the fault body when given", function()
    sb:fault{ method = "GET", path = "/KeyfactorAPI/Templates", status = 400,
      body = { ErrorCode = "0xA0110000", Message = "custom" } }
    local status, body = sb:http("GET", "/Templates")
    assert.equals(400, status)
    assert.equals("custom", body.Message)
  end)

  it("reset_before closes the connection and never runs the handler", function()
    sb:fault{ method = "POST", path = ENROLL, action = "reset_before" }
    local exit, code = curl("POST", ENROLL, enroll_body)
    assert.are_not.equal(0, exit)
    assert.equals(0, code)
    assert.equals(0, certificate_count())
    local log = sb:requests()
    assert.equals(ENROLL, log[#log].path)
    assert.equals(0, log[#log].status)
  end)

  it("reset_after runs the handler, then closes without answering", function()
    sb:fault{ method = "POST", path = ENROLL, action = "reset_after" }
    local exit, code = curl("POST", ENROLL, enroll_body)
    assert.are_not.equal(0, exit)
    assert.equals(0, code)
    assert.equals(1, certificate_count())
  end)

  it("truncate sends part of the body", function()
    sb:fault{ method = "POST", path = ENROLL, action = "truncate" }
    local exit, code, data = curl("POST", ENROLL, enroll_body)
    assert.equals(18, exit) -- CURLE_PARTIAL_FILE
    assert.equals(200, code)
    assert.is_true(#data > 0)
    assert.equals(1, certificate_count())
  end)

  it("invalid_json answers 200 with a body that is not JSON", function()
    sb:fault{ method = "POST", path = ENROLL, action = "invalid_json" }
    local exit, code, data = curl("POST", ENROLL, enroll_body)
    assert.equals(0, exit)
    assert.equals(200, code)
    assert.is_false(pcall(require("cjson").decode, data))
    assert.equals(1, certificate_count())
  end)

  it("html answers an HTML error page", function()
    sb:fault{ method = "GET", path = "/KeyfactorAPI/Certificates", action = "html" }
    local status, body, headers, raw = sb:http("GET", "/Certificates")
    assert.equals(502, status)
    assert.is_nil(body)
    assert.matches("^text/html", headers["content-type"])
    assert.matches("<html>", raw)
    sb:fault{ method = "GET", path = "/KeyfactorAPI/Certificates", action = "html", status = 504 }
    assert.equals(504, (sb:http("GET", "/Certificates")))
  end)

  it("oversize streams a huge body (default 80 MiB)", function()
    sb:fault{ method = "GET", path = "/KeyfactorAPI/Certificates", action = "oversize" }
    local p = io.popen("curl -sS -o /dev/null -w '%{size_download}' --cacert " .. sb.ca_file ..
      " -H 'x-keyfactor-requested-with: x' " .. sb.url .. "/Certificates")
    local size = tonumber(p:read("a"))
    p:close()
    assert.equals(80 * 1024 * 1024, size)
    sb:fault{ method = "GET", path = "/KeyfactorAPI/Certificates", action = "oversize", bytes = 1000 }
    local _, body, _, raw = sb:http("GET", "/Certificates")
    assert.equals(1000, #raw)
    assert.equals("table", type(body))
  end)

  it("delays without blocking other requests", function()
    sb:fault{ method = "GET", path = "/KeyfactorAPI/Templates", delay_ms = 1000 }
    local p = io.popen("curl -sS -o /dev/null --cacert " .. sb.ca_file .. " -u 'SANDBOX\\admin:sandbox-admin'" ..
      " -H 'x-keyfactor-requested-with: x' " .. sb.url .. "/Templates & sleep 0.3; curl -sS -o /dev/null --cacert " ..
      sb.ca_file .. " -u 'SANDBOX\\admin:sandbox-admin' -H 'x-keyfactor-requested-with: x' " ..
      sb.url .. "/CertificateStores; wait")
    p:read("a")
    p:close()
    local log = sb:requests()
    local slow, fast
    for _, r in ipairs(log) do
      if r.path == "/KeyfactorAPI/Templates" then slow = r end
      if r.path == "/KeyfactorAPI/CertificateStores" then fast = r end
    end
    assert.is_true(slow.finished - slow.started >= 0.99)
    assert.is_true(fast.started > slow.started and fast.finished < slow.finished)
    assert.equals(200, slow.status)
  end)

  it("clears faults with DELETE", function()
    sb:fault{ method = "GET", path = "/KeyfactorAPI/Templates", status = 500, times = 5 }
    sb:clear_faults()
    assert.equals(200, (sb:http("GET", "/Templates")))
  end)

  it("rejects unknown fault actions", function()
    assert.has_error(function() sb:fault{ method = "GET", path = "/x", action = "explode" } end)
  end)

  it("logs every API request, oldest first, with the fields tests need", function()
    sb:http("GET", "/Templates", { query = "sq.returnLimit=5" })
    sb:http("POST", "/oauth2/token", { auth = "none", body = "grant_type=client_credentials",
      headers = { ["Content-Type"] = "application/x-www-form-urlencoded" } })
    sb:http("GET", "/Certificates/424242")
    local log = sb:requests()
    assert.equals(3, #log)
    assert.equals("GET", log[1].method)
    assert.equals("/KeyfactorAPI/Templates", log[1].path)
    assert.equals("sq.returnLimit=5", log[1].query)
    assert.equals(200, log[1].status)
    assert.equals("/oauth2/token", log[2].path)
    assert.equals(401, log[2].status)
    assert.equals(404, log[3].status)
    assert.is_true(log[1].id < log[2].id)
    assert.is_true(math.abs(log[1].time - os.time()) < 5)
    assert.is_true(log[1].finished >= log[1].started)
  end)

  it("resets to the seed state, keeping the CA", function()
    local ca = assert(io.open(sb.ca_file)):read("a")
    assert.equals(0, (curl("POST", ENROLL, enroll_body)))
    sb:fault{ method = "GET", path = "/KeyfactorAPI/Templates", status = 500 }
    assert.equals(1, certificate_count())
    sb:reset()
    assert.equals(0, certificate_count())
    assert.equals(200, (sb:http("GET", "/Templates")))
    assert.equals(1, #sb:requests())
    assert.equals(ca, assert(io.open(sb.ca_file)):read("a"))
    local _, stores = sb:http("GET", "/CertificateStores")
    assert.equals("5a4db0c5-0101-4e5a-9d00-000000000001", stores[1].Id)
  end)
end)

-- Who may use the hooks (issue 25 item 7): any local user could reset a
-- --data sandbox.  Open without --data (throwaway, for tests); with --data
-- the admin's credentials, or --open-hooks.
describe("sandbox hooks access", function()
  -- The hook's HTTP status for a curl with `user` ("name:password", or nil).
  local function status(sb, method, path, user)
    local p = io.popen(string.format("env -u LD_PRELOAD curl -s -m 30 -o /dev/null -w '%%{http_code}' --cacert '%s' %s"
      .. " -X %s '%s%s'", sb.ca_file, user and ("-u '" .. user .. "'") or "", method, sb.base, path))
    local code = tonumber(p:read("a"))
    p:close()
    return code
  end
  local ADMIN, OPERATOR = "SANDBOX\\admin:sandbox-admin", "SANDBOX\\operator:sandbox-operator"
  local ENROLL_BODY = { Template = "WebServer", Subject = "CN=hooks.example.com", Password = "p" }

  local function with_data(opts, use)
    local dir = os.tmpname()
    os.remove(dir)
    opts.port, opts.data = 0, dir
    local sb = sandbox.start(opts)
    local ok, err = pcall(use, sb)
    sb:stop()
    os.execute("rm -rf '" .. dir .. "'")
    assert(ok, err)
  end

  it("stay open without --data", function()
    local sb = sandbox.start{ port = 0 }
    local code = status(sb, "GET", "/_sandbox/requests")
    sb:stop()
    assert.equals(200, code)
  end)

  it("with --data want the admin: 401 without credentials, 403 for the operator, nothing reset", function()
    with_data({}, function(sb)
      assert.equals(200, (sb:http("POST", "/Enrollment/PFX", { headers = { ["x-certificateformat"] = "PFX" },
        body = ENROLL_BODY })))
      for _, case in ipairs {
        { "POST", "/_sandbox/reset" }, { "POST", "/_sandbox/faults" }, { "DELETE", "/_sandbox/faults" },
        { "GET", "/_sandbox/requests" }, { "GET", "/_sandbox/state" }, { "POST", "/_sandbox/expire-tokens" },
      } do
        assert.equals(401, status(sb, case[1], case[2]), case[1] .. " " .. case[2])
        assert.equals(403, status(sb, case[1], case[2], OPERATOR), case[1] .. " " .. case[2])
      end
      assert.equals(401, status(sb, "POST", "/_sandbox/reset", "SANDBOX\\admin:wrong"))
      -- the certificate is still there; the admin (as sandbox.lua's helpers) may use them
      assert.equals(1, #sb:state().certificates)
      assert.equals(200, status(sb, "POST", "/_sandbox/reset", ADMIN))
      assert.equals(0, #sb:state().certificates)
    end)
  end)

  it("with --data and --open-hooks are open", function()
    with_data({ open_hooks = true }, function(sb)
      assert.equals(200, status(sb, "POST", "/_sandbox/reset"))
      assert.equals(200, status(sb, "GET", "/_sandbox/state"))
    end)
  end)

  it("--open-hooks is a flag: a value is refused", function()
    local p = io.popen("lua5.4 bin/keyfactor-sandbox --open-hooks=yes 2>&1; echo EXIT=$?")
    local out = p:read("a")
    p:close()
    assert.matches("%-%-open%-hooks takes no value", out)
    assert.matches("EXIT=2", out)
  end)
end)
