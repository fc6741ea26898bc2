-- Structured errors, kf:request, retries of idempotent calls, and secrets
-- kept out of every error, tostring and debug line.
local fixture = require "support.fixture"
local keyfactor = require "keyfactor"

describe("errors", function()
  local sb, kf

  fixture.live(function(s, k) sb, kf = s, k end)

  local API = "/KeyfactorAPI"

  describe("structured errors", function()
    it("a 404 carries kind, status, code, message, method, path, retryable; tostring is one line", function()
      local cert, err = kf:certificate(31337)
      assert.is_nil(cert)
      assert.is_true(keyfactor.errors.is(err))
      assert.are.equal("http", err.kind)
      assert.are.equal(404, err.status)
      assert.are.equal("0xA0200001", err.code)
      assert.are.equal("Certificate with ID 31337 was not found", err.message)
      assert.are.equal("GET", err.method)
      assert.are.equal("/Certificates/31337", err.path)
      assert.is_false(err.retryable)
      assert.is_true(err.refused)         -- the same request is refused again
      assert.is_false(err.unprocessed)
      local line = tostring(err)
      assert.is_nil(line:find("\n", 1, true))
      local parts = { "404", "0xA0200001", "GET", "/Certificates/31337", "Certificate with ID 31337 was not found" }
      for _, part in ipairs(parts) do
        assert.matches(part, line, 1, true)
      end
    end)

    it("a 400 for bad input carries the server's Message and ErrorCode", function()
      local answer, err = kf:enroll { Template = "NoSuchTemplate", Subject = "CN=a.example.com", Password = "pw-1234" }
      assert.is_nil(answer)
      assert.are.equal("http", err.kind)
      assert.are.equal(400, err.status)
      assert.are.equal("0xA0100001", err.code)
      assert.are.equal("Template 'NoSuchTemplate' was not found or is not available for enrollment", err.message)
      assert.are.equal("POST", err.method)
      assert.are.equal("/Enrollment/PFX", err.path)
    end)

    it("a 401 is kind auth and carries the server's message", function()
      local bad = fixture.client(sb, { password = "nope-nope" })
      local _, err = bad:status()
      assert.are.equal("auth", err.kind)
      assert.are.equal(401, err.status)
      assert.are.equal("0xA0300001", err.code)
      assert.are.equal("Invalid username or password", err.message)
      bad:close()
    end)

    it("an HTML error page becomes a readable one-line message", function()
      sb:fault { method = "GET", path = API .. "/Certificates/1", action = "html", status = 500, times = 1 }
      local _, err = kf:certificate(1)
      assert.are.equal(500, err.status)
      assert.is_nil(err.code)
      assert.matches("500 Error", err.message, 1, true)
      assert.is_nil(err.message:find("<", 1, true))
      assert.is_nil(tostring(err):find("\n", 1, true))
    end)

    it("a body that is not JSON is kind decode", function()
      sb:fault { method = "GET", path = API .. "/Status/Endpoints", action = "invalid_json", times = 1 }
      local result, err = kf:status()
      assert.is_nil(result)
      assert.are.equal("decode", err.kind)
      assert.are.equal(200, err.status)
    end)

    it("a refused connection is kind transport", function()
      local dead = keyfactor.new { url = "https://127.0.0.1:1/KeyfactorAPI", retries = 0, ca_file = sb.ca_file }
      local result, err = dead:status()
      assert.is_nil(result)
      assert.are.equal("transport", err.kind)
      assert.is_nil(err.status)
      assert.are.equal("/Status/Endpoints", err.path)
      dead:close()
    end)
  end)

  describe("retries", function()
    it("a GET answered 503 is retried (honouring Retry-After) and succeeds", function()
      sb:fault { method = "GET", path = API .. "/CertificateStoreTypes", status = 503, retry_after = 0, times = 1 }
      local from = #sb:requests()
      assert(kf:store_types())
      local statuses = {}
      for i, r in ipairs(sb:requests()) do
        if i > from then statuses[#statuses + 1] = r.status end
      end
      assert.are.same({ 503, 200 }, statuses)
    end)

    it("gives up after `retries` extra attempts with a retryable error", function()
      local once = fixture.client(sb, { retries = 1 })
      sb:fault { method = "GET", path = API .. "/Status/Endpoints", status = 503, retry_after = 0, times = 5 }
      local from = #sb:requests()
      local result, err = once:status()
      assert.is_nil(result)
      assert.are.equal(503, err.status)
      assert.is_true(err.retryable)
      assert.are.equal(from + 2, #sb:requests())
      sb:clear_faults()
      once:close()
    end)

    it("a 404 is not retried", function()
      local from = #sb:requests()
      kf:certificate(9090)
      assert.are.equal(from + 1, #sb:requests())
    end)
  end)

  describe("kf:request", function()
    it("GET /Status/Endpoints returns the array, the status and the headers", function()
      local body, status, headers = kf:request("GET", "/Status/Endpoints")
      assert.are.equal("table", type(body))
      assert.is_true(#body > 0)
      assert.are.equal("string", type(body[1]))
      assert.are.equal(200, status)
      assert.are.equal("25.1.1.0", headers["x-keyfactor-product-version"])
    end)

    it("POSTs a body table as JSON, with extra headers", function()
      local cn = fixture.unique("request")
      local body, status = kf:request("POST", "/Enrollment/PFX", {
        headers = { ["x-certificateformat"] = "PFX" },
        body = { Template = "WebServer", Subject = "CN=" .. cn, Password = "pw-5555",
          Timestamp = os.date("!%Y-%m-%dT%H:%M:%SZ") },
      })
      assert.are.equal(200, status)
      local _, cert = fixture.open_pkcs12(body.CertificateInformation.Pkcs12Blob, "pw-5555")
      assert.are.equal(cn, fixture.cn(cert))
    end)

    it("encodes a query table (spaces and quotes) so the server parses it", function()
      local cn = fixture.unique("query")
      fixture.enroll(kf, cn)
      local query = { ["pq.queryString"] = 'IssuedCN -eq "' .. cn .. '"' }
      local found = assert(kf:request("GET", "/Certificates", { query = query }))
      assert.are.equal(1, #found)
      assert.are.equal(cn, found[1].IssuedCN)
      local log = sb:requests()
      assert.matches("%20", log[#log].query, 1, true)
    end)

    it("returns the raw body with raw = true", function()
      local body, status = kf:request("GET", "/Status/Endpoints", { raw = true })
      assert.are.equal(200, status)
      assert.are.equal("string", type(body))
      assert.matches("^%[", body)
    end)

    it("answers nil, err 404 for an unknown path", function()
      local body, err = kf:request("GET", "/NoSuchResource/1")
      assert.is_nil(body)
      assert.are.equal("http", err.kind)
      assert.are.equal(404, err.status)
      assert.are.equal("/NoSuchResource/1", err.path)
    end)
  end)

  describe("secrets", function()
    local CANARY = {
      password = "canary-password-7f3a",
      token = "canary-token-91bc",
      secret = "canary-secret-44de",
      pfx = "canary-pfx-0a1b",
    }

    local function assert_clean(text, where)
      for name, secret in pairs(CANARY) do
        assert.is_nil(tostring(text):find(secret, 1, true), name .. " leaked into " .. where .. ": " .. tostring(text))
      end
    end

    -- A fault whose error body echoes `secret` back, as a careless server might.
    local function echo(method, path, secret, status)
      sb:fault { method = method, path = path, status = status or 500, times = 1,
        body = { ErrorCode = "0xA0000000", Message = "echo " .. secret .. " echo" } }
    end

    it("never appear in errors, tostring(kf) or debug lines", function()
      local lines = {}
      local function debug(line) lines[#lines + 1] = line end
      local checked = 0
      local function check_err(err, where)
        assert.is_not_nil(err, where .. ": expected an error")
        assert_clean(tostring(err), where)
        assert_clean(err.message, where)
        checked = checked + 1
      end

      -- Basic: wrong (canary) password, then the server echoing it
      local basic = fixture.client(sb, { password = CANARY.password, debug = debug })
      assert_clean(tostring(basic), "tostring(kf)")
      check_err(select(2, basic:status()), "basic 401")
      echo("GET", API .. "/Status/Endpoints", CANARY.password)
      local _, echoed = basic:status()
      assert.matches("echo *** echo", echoed.message, 1, true)
      check_err(echoed, "basic echo")
      basic:close()

      -- bearer token
      local bearer = fixture.client(sb, { token = CANARY.token, debug = debug })
      assert_clean(tostring(bearer), "tostring(kf)")
      check_err(select(2, bearer:status()), "bearer 401")
      echo("GET", API .. "/Status/Endpoints", CANARY.token)
      check_err(select(2, bearer:status()), "bearer echo")
      bearer:close()

      -- OAuth client secret
      local oauth = fixture.client(sb, { debug = debug,
        oauth = { token_url = sb.token_url, client_id = sb.client_id, client_secret = CANARY.secret } })
      assert_clean(tostring(oauth), "tostring(kf)")
      check_err(select(2, oauth:status()), "oauth 401")
      echo("POST", "/oauth2/token", CANARY.secret, 400)
      check_err(select(2, oauth:status()), "oauth echo")
      oauth:close()

      -- PFX password, with good credentials
      local admin = fixture.client(sb, { debug = debug })
      echo("POST", API .. "/Enrollment/PFX", CANARY.pfx, 400)
      check_err(select(2, admin:enroll { Template = "WebServer", Subject = "CN=pfx.example.com",
        Password = CANARY.pfx }),
        "pfx echo")
      check_err(select(2, admin:enroll { Template = "Nope", Subject = "CN=pfx.example.com", Password = CANARY.pfx }),
        "pfx 400")
      -- and a deploy Password
      echo("POST", API .. "/Enrollment/PFX/Deploy", CANARY.pfx, 400)
      check_err(select(2, admin:deploy { CertificateId = 1, Password = CANARY.pfx,
        Stores = { { StoreId = "00000000-1111-2222-3333-444444444444" } } }), "deploy echo")
      admin:close()

      assert.are.equal(9, checked)
      assert.is_true(#lines >= 9)
      for _, line in ipairs(lines) do
        assert_clean(line, "debug line")
        assert.is_nil(line:find("\n", 1, true))
      end
    end)

    it("debug receives one line per request with method, path, status", function()
      local lines = {}
      local c = fixture.client(sb, { debug = function(line) lines[#lines + 1] = line end })
      assert(c:status())
      assert(c:store_types())
      assert.are.equal(2, #lines)
      assert.matches("GET /Status/Endpoints 200", lines[1], 1, true)
      assert.matches("GET /CertificateStoreTypes", lines[2], 1, true)
      c:close()
    end)
  end)
end)
