-- The fault matrix: every failure the sandbox can inject (and a few it
-- cannot: refused connections, silent servers, wrong CA, wrong host name),
-- for a GET and a POST.  For each: the typed error (kind, status,
-- retryable), retries only where allowed, and the sandbox request log
-- proving that no POST reached the server twice.
local fixture = require "support.fixture"
local errors = require "keyfactor.errors"
local keyfactor = require "keyfactor"

local DEPLOY = "/KeyfactorAPI/Enrollment/PFX/Deploy"

describe("fault matrix", function()
  local sb, kf, cert_id, store
  local lines = {}

  local function cert_path() return "/KeyfactorAPI/Certificates/" .. cert_id end

  local function get() return kf:certificate(cert_id) end
  local function post()
    return kf:deploy { CertificateId = cert_id, Stores = { { StoreId = store } }, Password = "entry-pass" }
  end

  -- Requests the sandbox logged for method + path since the test began.
  local mark
  local function seen(method, path) return fixture.seen_since(sb, mark, method, path) end

  local function retries_logged()
    local n = 0
    for _, line in ipairs(lines) do
      if line:find("; retry ", 1, true) then n = n + 1 end
    end
    return n
  end

  fixture.live(function(s, k)
    sb, kf = s, k
    local c = fixture.enroll(kf, "faults.example.com", { format = "STORE", Password = nil })
    cert_id = c.CertificateInformation.KeyfactorId
    store = fixture.store_ids(kf, fixture.WEB, "PKCS12")[1]
  end, { retries = 2, debug = function(line) lines[#lines + 1] = line end })

  before_each(function()
    sb:clear_faults()
    mark = fixture.log_mark(sb)
    for i = #lines, 1, -1 do lines[i] = nil end
  end)

  describe("connection reset before the request is read", function()
    it("GET: retried, then succeeds", function()
      sb:fault { method = "GET", path = cert_path(), times = 1, action = "reset_before" }
      local cert = assert(get())
      assert.are.equal(cert_id, cert.Id)
      -- resent once: by libcurl itself when the reset hits a reused
      -- keep-alive connection, else by the client's retry
      assert.are.equal(2, seen("GET", cert_path()))
    end)

    it("POST: transport error, not retried, sent once", function()
      sb:fault { method = "POST", path = DEPLOY, times = 1, action = "reset_before" }
      local ok, err = post()
      assert.is_nil(ok)
      assert.are.equal("transport", err.kind)
      assert.is_false(err.retryable)
      assert.are.equal(1, seen("POST", DEPLOY))
      assert.are.equal(0, retries_logged())
    end)
  end)

  describe("connection reset after the request was handled", function()
    it("GET: retried, then succeeds", function()
      sb:fault { method = "GET", path = cert_path(), times = 1, action = "reset_after" }
      local cert = assert(get())
      assert.are.equal(cert_id, cert.Id)
      assert.are.equal(2, seen("GET", cert_path()))
    end)

    it("POST: transport error, never sent twice", function()
      sb:fault { method = "POST", path = DEPLOY, times = 1, action = "reset_after" }
      local ok, err = post()
      assert.is_nil(ok)
      assert.are.equal("transport", err.kind)
      assert.are.equal("POST", err.method)
      assert.are.equal("/Enrollment/PFX/Deploy", err.path)
      assert.is_false(err.retryable)
      assert.are.equal(1, seen("POST", DEPLOY))
    end)
  end)

  for _, status in ipairs { 429, 502, 503, 504 } do
    describe(status .. " answers", function()
      it("GET without Retry-After: retried with backoff, then succeeds", function()
        sb:fault { method = "GET", path = cert_path(), times = 2, status = status }
        local cert = assert(get())
        assert.are.equal(cert_id, cert.Id)
        assert.are.equal(3, seen("GET", cert_path()))
        assert.are.equal(2, retries_logged())
      end)

      it("GET with Retry-After: the server's delay is honoured", function()
        sb:fault { method = "GET", path = cert_path(), times = 1, status = status, retry_after = 1 }
        assert(get())
        assert.are.equal(1, retries_logged())
        assert.matches("in 1%.00s", lines[1])
      end)

      it("GET that keeps failing: the typed error after the last retry", function()
        sb:fault { method = "GET", path = cert_path(), times = 5, status = status }
        local cert, err = get()
        assert.is_nil(cert)
        assert.are.equal("http", err.kind)
        assert.are.equal(status, err.status)
        assert.is_true(err.retryable)
        assert.are.equal(3, seen("GET", cert_path()))
      end)

      it("POST: not retried, sent once", function()
        sb:fault { method = "POST", path = DEPLOY, times = 1, status = status, retry_after = 1 }
        local ok, err = post()
        assert.is_nil(ok)
        assert.are.equal("http", err.kind)
        assert.are.equal(status, err.status)
        assert.is_string(err.code)
        assert.is_false(err.retryable)
        -- what a caller that may resend a POST reads: did the server do nothing?
        assert.are.equal(status == 429 or status == 503, err.unprocessed)
        assert.is_false(err.refused)
        assert.are.equal(1, seen("POST", DEPLOY))
      end)
    end)
  end

  describe("truncated body", function()
    it("GET: transport error on the cut, retried, then succeeds", function()
      sb:fault { method = "GET", path = cert_path(), times = 1, action = "truncate" }
      assert(get())
      assert.are.equal(2, seen("GET", cert_path()))
    end)

    it("POST: transport error, sent once", function()
      sb:fault { method = "POST", path = DEPLOY, times = 1, action = "truncate" }
      local ok, err = post()
      assert.is_nil(ok)
      assert.are.equal("transport", err.kind)
      assert.are.equal(1, seen("POST", DEPLOY))
    end)
  end)

  describe("invalid JSON in a 200 answer", function()
    for _, call in ipairs { { "GET", get, cert_path }, { "POST", post, function() return DEPLOY end } } do
      it(call[1] .. ": decode error, not retried", function()
        sb:fault { method = call[1], path = call[3](), times = 1, action = "invalid_json" }
        local ok, err = call[2]()
        assert.is_nil(ok)
        assert.are.equal("decode", err.kind)
        assert.are.equal(200, err.status)
        assert.is_false(err.retryable)
        assert.are.equal(1, seen(call[1], call[3]()))
      end)
    end
  end)

  describe("a non-JSON error page", function()
    it("GET: kind http with the page's text, retried on 502", function()
      sb:fault { method = "GET", path = cert_path(), times = 3, action = "html", status = 502 }
      local ok, err = get()
      assert.is_nil(ok)
      assert.are.equal("http", err.kind)
      assert.are.equal(502, err.status)
      assert.matches("The gateway could not reach", err.message)
      assert.is_nil(err.message:find("<", 1, true))
      assert.are.equal(3, seen("GET", cert_path()))
    end)

    it("POST: not retried", function()
      sb:fault { method = "POST", path = DEPLOY, times = 1, action = "html", status = 500 }
      local ok, err = post()
      assert.is_nil(ok)
      assert.are.equal(500, err.status)
      assert.are.equal(1, seen("POST", DEPLOY))
    end)
  end)

  describe("an oversized body", function()
    it("is cut at max_body with a clear error, not retried", function()
      local small = fixture.client(sb, { max_body = 1024 * 1024 })
      for _, call in ipairs {
        { "GET", function() return small:certificate(cert_id) end, cert_path() },
        { "POST", function()
          return small:deploy { CertificateId = cert_id, Stores = { { StoreId = store } } }
        end, DEPLOY },
      } do
        sb:fault { method = call[1], path = call[3], times = 1, action = "oversize", bytes = 3 * 1024 * 1024 }
        local ok, err = call[2]()
        assert.is_nil(ok)
        assert.are.equal("transport", err.kind)
        assert.matches("max_body", err.message)
        assert.is_false(err.retryable)
        assert.are.equal(1, seen(call[1], call[3]))
      end
      small:close()
    end)
  end)

  describe("slow server", function()
    it("GET past the total timeout: kind timeout, not repeated", function()
      local impatient = fixture.client(sb, { timeout = 0.5 })
      sb:fault { method = "GET", path = cert_path(), times = 1, delay_ms = 1500 }
      local ok, err = impatient:certificate(cert_id)
      assert.is_nil(ok)
      assert.are.equal("timeout", err.kind)
      assert.are.equal(1, seen("GET", cert_path()))
      impatient:close()
    end)

    it("POST past the total timeout: kind timeout, sent once", function()
      local impatient = fixture.client(sb, { timeout = 0.5 })
      sb:fault { method = "POST", path = DEPLOY, times = 1, delay_ms = 1500 }
      local ok, err = impatient:deploy { CertificateId = cert_id, Stores = { { StoreId = store } } }
      assert.is_nil(ok)
      assert.are.equal("timeout", err.kind)
      assert.is_false(err.retryable)
      assert.are.equal(1, seen("POST", DEPLOY))
      impatient:close()
    end)
  end)

  describe("authentication", function()
    it("401 for a wrong password: kind auth, not retried (GET and POST)", function()
      local wrong = fixture.client(sb, { password = "not-the-password" })
      local a, err_get = wrong:certificate(cert_id)
      local b, err_post = wrong:deploy { CertificateId = cert_id, Stores = { { StoreId = store } } }
      assert.is_nil(a)
      assert.is_nil(b)
      for _, err in ipairs { err_get, err_post } do
        assert.are.equal("auth", err.kind)
        assert.are.equal(401, err.status)
        assert.is_false(err.retryable)
      end
      assert.are.equal(1, seen("GET", cert_path()))
      assert.are.equal(1, seen("POST", DEPLOY))
      wrong:close()
    end)

    it("an OAuth token expired mid-session: one refresh, then success, the POST handled once", function()
      local oauth = fixture.client(sb, { oauth = { token_url = sb.token_url,
        client_id = sb.client_id, client_secret = sb.client_secret } })
      assert(oauth:certificate(cert_id))
      sb:expire_tokens()
      local answer = assert(oauth:deploy { CertificateId = cert_id, Stores = { { StoreId = store } } })
      assert.are.equal(1, #answer.SuccessfulStores)
      assert.are.equal(2, seen("POST", "/oauth2/token"))
      local handled = 0
      for _, r in ipairs(sb:requests()) do
        if r.id > mark and r.method == "POST" and r.path == DEPLOY and r.status == 200 then handled = handled + 1 end
      end
      assert.are.equal(1, handled)
      oauth:close()
    end)

    it("403 for a call the user may not make: kind auth, not retried", function()
      local operator = fixture.operator(sb)
      local ok, err = operator:approve(1)
      assert.is_nil(ok)
      assert.are.equal("auth", err.kind)
      assert.are.equal(403, err.status)
      assert.are.equal(1, seen("POST", "/KeyfactorAPI/Workflow/Certificates/Approve"))
      operator:close()
    end)

    it("404 for an unknown id: kind http, not retried", function()
      local ok, err = kf:certificate(987654)
      assert.is_nil(ok)
      assert.are.equal("http", err.kind)
      assert.are.equal(404, err.status)
      assert.is_false(err.retryable)
      assert.are.equal(1, seen("GET", "/KeyfactorAPI/Certificates/987654"))
    end)
  end)

  describe("no server", function()
    it("connection refused: kind transport, retried for GET and POST (never sent)", function()
      local port = sb.url:match(":(%d+)/")
      local gone = keyfactor.new { url = "https://127.0.0.1:1/KeyfactorAPI", ca_file = sb.ca_file,
        username = "u", password = "p", retries = 2, debug = function(line) lines[#lines + 1] = line end }
      local a, err_get = gone:certificate(1)
      local b, err_post = gone:deploy { CertificateId = 1, StoreIds = { store } }
      assert.is_nil(a)
      assert.is_nil(b)
      for _, err in ipairs { err_get, err_post } do
        assert.are.equal("transport", err.kind)
        assert.is_true(err.retryable)
      end
      assert.are.equal(4, retries_logged())
      assert.is_string(port)
      gone:close()
    end)

    it("connect timeout (a server that never answers the handshake): kind timeout, retried", function()
      local socket = require "cqueues.socket"
      local silent = socket.listen { host = "127.0.0.1", port = 0 }
      assert(silent:listen())
      local _, _, port = silent:localname()
      local stuck = keyfactor.new { url = "https://127.0.0.1:" .. port .. "/KeyfactorAPI",
        ca_file = sb.ca_file, username = "u", password = "p", connect_timeout = 0.3, retries = 1,
        debug = function(line) lines[#lines + 1] = line end }
      local a, err_get = stuck:certificate(1)
      local b, err_post = stuck:deploy { CertificateId = 1, StoreIds = { store } }
      assert.is_nil(a)
      assert.is_nil(b)
      for _, err in ipairs { err_get, err_post } do
        assert.are.equal("timeout", err.kind)
        assert.is_true(err.retryable)
      end
      assert.are.equal(2, retries_logged())
      stuck:close()
      silent:close()
    end)
  end)

  describe("TLS", function()
    local function other_ca_file()
      local pkey = require "openssl.pkey"
      local x509 = require "openssl.x509"
      local name = require "openssl.x509.name"
      local key = pkey.new { type = "EC", curve = "prime256v1" }
      local cert = x509.new()
      local subject = name.new()
      subject:add("CN", "Some Other CA")
      cert:setSubject(subject)
      cert:setIssuer(subject)
      cert:setPublicKey(key)
      cert:setBasicConstraints { CA = true }
      cert:setBasicConstraintsCritical(true)
      cert:setLifetime(os.time() - 60, os.time() + 3600)
      cert:sign(key)
      local path = os.tmpname()
      local f = assert(io.open(path, "w"))
      f:write(cert:tostring("PEM"))
      f:close()
      return path
    end

    it("a server certificate from another CA: kind tls, nothing sent", function()
      local path = other_ca_file()
      local wrong = fixture.client(sb, { ca_file = path })
      local a, err_get = wrong:certificate(cert_id)
      local b, err_post = wrong:deploy { CertificateId = cert_id, Stores = { { StoreId = store } } }
      assert.is_nil(a)
      assert.is_nil(b)
      for _, err in ipairs { err_get, err_post } do
        assert.are.equal("tls", err.kind)
        assert.is_false(err.retryable)
      end
      assert.are.equal(0, seen("GET", cert_path()))
      assert.are.equal(0, seen("POST", DEPLOY))
      wrong:close()
      os.remove(path)
    end)

    it("a host name the certificate does not name: kind tls, nothing sent", function()
      local port = sb.url:match(":(%d+)/")
      local wrong = fixture.client(sb, { url = "https://kf.wrong.example:" .. port .. "/KeyfactorAPI",
        resolve = { "kf.wrong.example:" .. port .. ":127.0.0.1" } })
      local ok, err = wrong:certificate(cert_id)
      assert.is_nil(ok)
      assert.are.equal("tls", err.kind)
      assert.matches("subject name", err.message)
      assert.are.equal(0, seen("GET", cert_path()))
      wrong:close()
    end)

    it("insecure = true skips verification (and warned once)", function()
      local warnings = {}
      local path = other_ca_file()
      local lax = fixture.client(sb, { ca_file = path, insecure = true,
        warn = function(m) warnings[#warnings + 1] = m end })
      assert(lax:certificate(cert_id))
      assert.is_true(#warnings <= 1)
      lax:close()
      os.remove(path)
    end)
  end)

  -- The blocking driver: the only code that runs during a call is the
  -- client's own callbacks; one closes the client before a retry.
  -- (cqueues, kf:parallel, HAProxy and nginx: cqueues_spec, parallel_spec,
  -- spec/hosts.)
  describe("the client closed while a call waits", function()
    it("GET closed between retries (by a debug callback): canceled, not sent again", function()
      sb:fault { method = "GET", path = cert_path(), times = 3, status = 503 }
      local own
      own = fixture.client(sb, { retries = 2, debug = function(line)
        if line:find("; retry ", 1, true) then own:close() end
      end })
      local cert, err = own:certificate(cert_id)
      assert.is_nil(cert)
      assert.are.equal("canceled", err.kind)
      assert.is_false(err.retryable)
      assert.are.equal(1, seen("GET", cert_path()))
    end)
  end)

  -- CR/LF in a header would end it and start another (or a second request
  -- on the API connection): refused whatever the source, before libcurl.
  describe("header injection", function()
    local CRLF = "v\r\nX-Injected: 1"

    it("the headers and user_agent options: a Lua error naming the option, nothing sent", function()
      local before = fixture.request_count(sb)
      fixture.raises(function() fixture.client(sb, { headers = { ["X-Tenant"] = CRLF } }) end,
        "keyfactor.new: options.headers.X-Tenant must not contain control characters")
      fixture.raises(function() fixture.client(sb, { headers = { ["X-Bad\r\nName"] = "v" } }) end,
        "keyfactor.new: options.headers keys must be header names")
      fixture.raises(function() fixture.client(sb, { user_agent = "agent\nX-Injected: 1" }) end,
        "keyfactor.new: options.user_agent must not contain control characters")
      assert.are.equal(before, fixture.request_count(sb))
    end)

    it("the bearer token option: a Lua error that does not quote the token", function()
      local message = fixture.raises(function() fixture.client(sb, { token = "secret-tok\r\nX-Injected: 1" }) end,
        "keyfactor.new: options.token must not contain control characters")
      assert.is_nil(message:find("secret-tok", 1, true))
    end)

    it("kf:request headers (name or value): a Lua error, nothing sent", function()
      local before = fixture.request_count(sb)
      fixture.raises(function() kf:request("GET", "/Status/Endpoints", { headers = { ["X-A"] = CRLF } }) end,
        "kf:request: opts.headers.X-A must not contain control characters")
      fixture.raises(function() kf:request("GET", "/Status/Endpoints", { headers = { ["X-A\nB"] = "v" } }) end,
        "kf:request: opts.headers keys must be header names")
      fixture.raises(function() kf:request("GET\r\nX-Injected: 1", "/Status/Endpoints") end,
        "must be an HTTP token")
      assert.are.equal(before, fixture.request_count(sb))
    end)

    it("an OAuth access_token with CR/LF: nil, err of kind auth; the API never called", function()
      sb:fault { method = "POST", path = "/oauth2/token", times = 1, status = 200,
        body = { access_token = "tok\r\nContent-Length: 0\r\n\r\nDELETE /KeyfactorAPI/Certificates/1 HTTP/1.1",
                 token_type = "Bearer", expires_in = 3600 } }
      local oauth = fixture.client(sb, { oauth = { token_url = sb.token_url,
        client_id = sb.client_id, client_secret = sb.client_secret } })
      local cert, err = oauth:certificate(cert_id)
      oauth:close()
      assert.is_nil(cert)
      assert.are.equal("auth", err.kind)
      assert.matches("access_token", err.message)
      assert.are.equal(0, seen("GET", cert_path()))
      assert.are.equal(0, seen("DELETE", "/KeyfactorAPI/Certificates/1"))
    end)

    it("the C core refuses what reaches it by any other way (one check where it builds the headers)", function()
      local core = require "keyfactor.core"
      local session = core.session { headers = { "X-A: " .. CRLF } }
      fixture.raises(function() session:start { method = "GET", url = sb.url .. "/Status/Endpoints" } end,
        "keyfactor.core: request header 1 is not")
      session:close()
      session = core.session {}
      fixture.raises(function()
        session:start { method = "GET", url = sb.url .. "/Status/Endpoints", headers = { "X-Ok: 1", "X-B:\rv" } }
      end, "keyfactor.core: request header 2 is not")
      fixture.raises(function() session:start { method = "GET", url = sb.url, headers = { "No colon" } } end,
        "keyfactor.core: request header 1 is not")
      session:close()
      session = core.session { user_agent = "ua\r\nX-Injected: 1" }
      fixture.raises(function() session:start { method = "GET", url = sb.url } end,
        "keyfactor.core: user_agent holds a control character")
      session:close()
      -- the client's own session, its bearer token replaced from C's side
      local bearer = fixture.client(sb, { token = "placeholder" })
      bearer.session:set_credentials("bearer", "s3cr3t\nX-Injected: 1")
      local before = fixture.request_count(sb)
      local message = fixture.raises(function() bearer:status() end, "the bearer token holds a control character")
      assert.is_nil(message:find("s3cr3t", 1, true))
      bearer:close()
      assert.are.equal(before, fixture.request_count(sb))
    end)
  end)

  it("every error above is a keyfactor error with a one-line tostring", function()
    sb:fault { method = "GET", path = cert_path(), times = 3, status = 503 }
    local _, err = get()
    assert.is_true(errors.is(err))
    local line = tostring(err)
    assert.is_nil(line:find("\n", 1, true))
    assert.matches("^keyfactor: http 503 %(0x%x+%) GET /Certificates/%d+: ", line)
  end)
end)
