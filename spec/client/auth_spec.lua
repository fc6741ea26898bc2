-- Credentials against a live sandbox: Basic, bearer tokens, OAuth client
-- credentials (cached, refreshed, re-fetched once after a 401), from_env,
-- TLS trust and the http:// guard.
local fixture = require "support.fixture"
local keyfactor = require "keyfactor"

describe("auth", function()
  local sb

  lazy_setup(function() sb = fixture.sandbox() end)
  lazy_teardown(function() if sb then sb:stop() end end)

  local function token_posts()
    return #fixture.requests(sb, "POST", "/oauth2/token")
  end

  local function oauth_client(target, overrides)
    local o = { token_url = target.token_url, client_id = target.client_id, client_secret = target.client_secret }
    for k, v in pairs(overrides or {}) do o[k] = v end
    return fixture.client(target, { oauth = o })
  end

  -- A token straight from the sandbox's token endpoint (curl).
  local function fetch_token()
    local status, body = sb:http("POST", "/oauth2/token", {
      body = "grant_type=client_credentials", auth = { sb.client_id, sb.client_secret },
      headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
    })
    assert.are.equal(200, status)
    return body.access_token
  end

  describe("Basic", function()
    it("works for the admin", function()
      local kf = fixture.client(sb)
      local endpoints = assert(kf:status())
      assert.is_true(#endpoints > 0)
      assert.matches("basic", tostring(kf))
      kf:close()
    end)

    it("works for the operator, whose permissions differ", function()
      local kf = fixture.operator(sb)
      assert(kf:status())
      local _, err = kf:approve(1)
      assert.are.equal(403, err.status)
      kf:close()
    end)

    it("answers nil, err kind auth status 401 for a wrong password", function()
      local kf = fixture.client(sb, { password = "wrong-password" })
      local result, err = kf:status()
      assert.is_nil(result)
      assert.are.equal("auth", err.kind)
      assert.are.equal(401, err.status)
      assert.is_false(err.retryable)
      kf:close()
    end)
  end)

  describe("bearer token", function()
    it("uses a given token", function()
      local token = fetch_token()
      local kf = fixture.client(sb, { token = token })
      assert(kf:status())
      assert.matches("bearer", tostring(kf))
      kf:close()
    end)

    it("answers kind auth 401 for an unknown token, without fetching one", function()
      local before = token_posts()
      local kf = fixture.client(sb, { token = "not-a-real-token-123" })
      local result, err = kf:status()
      assert.is_nil(result)
      assert.are.equal("auth", err.kind)
      assert.are.equal(401, err.status)
      assert.are.equal(before, token_posts())
      kf:close()
    end)
  end)

  describe("OAuth client credentials", function()
    it("fetches one token and reuses it for several calls", function()
      local before = token_posts()
      local kf = oauth_client(sb)
      for _ = 1, 4 do assert(kf:status()) end
      assert(kf:store_types())
      assert.are.equal(before + 1, token_posts())
      assert.matches("oauth", tostring(kf))
      kf:close()
    end)

    it("sends scopes and audience to the token endpoint and still works", function()
      local kf = oauth_client(sb, { scopes = { "read", "write" }, audience = "keyfactor" })
      assert(kf:status())
      kf:close()
    end)

    it("after the server expires the token: one 401, one refresh, the POST handled once", function()
      local kf = oauth_client(sb)
      assert(kf:status())
      local tokens = token_posts()
      sb:expire_tokens()
      local cn = fixture.unique("after-expiry")
      local from = #sb:requests()
      local answer = assert(kf:enroll { Template = "WebServer", Subject = "CN=" .. cn, Password = "pw-9876" })
      assert.are.equal(tokens + 1, token_posts())
      local enrolls = {}
      for i, r in ipairs(sb:requests()) do
        if i > from and r.path:lower() == "/keyfactorapi/enrollment/pfx" then enrolls[#enrolls + 1] = r.status end
      end
      assert.are.same({ 401, 200 }, enrolls)
      -- exactly one certificate was issued for the CN
      local found = fixture.collect(kf:certificates { query = 'IssuedCN -eq "' .. cn .. '"' })
      assert.are.equal(1, #found)
      assert.are.equal(answer.CertificateInformation.KeyfactorId, found[1].Id)
      kf:close()
    end)

    it("refreshes before the token expires (short token lifetime)", function()
      local short = fixture.sandbox { token_lifetime = 2 }
      local ok, err = pcall(function()
        local kf = oauth_client(short)
        assert(kf:status())
        -- keep calling for longer than one token lifetime
        local posts = fixture.poll(function()
          assert(kf:status())
          local n = #fixture.requests(short, "POST", "/oauth2/token")
          return n >= 3 and n or nil
        end, 10, 0.1)
        assert.is_true(posts >= 3)
        for _, r in ipairs(short:requests()) do
          assert.are_not.equal(401, r.status, "a call was refused: " .. r.path)
        end
        kf:close()
      end)
      short:stop()
      assert(ok, err)
    end)

    it("answers kind auth for a wrong client secret, without calling the API", function()
      local from = #sb:requests()
      local kf = oauth_client(sb, { client_secret = "wrong-secret" })
      local result, err = kf:status()
      assert.is_nil(result)
      assert.are.equal("auth", err.kind)
      assert.are.equal(401, err.status)
      for i, r in ipairs(sb:requests()) do
        if i > from then assert.are.equal("/oauth2/token", r.path) end
      end
      kf:close()
    end)
  end)

  describe("a token fetch that fails or raises releases the other callers (issue 13.7)", function()
    -- Each case used to leave `fetching` set: every later call slept 5 ms
    -- in a loop forever.  Here the next call must go through.
    it("a token endpoint answering 200 false: nil, err kind auth, then the next call works", function()
      local kf = oauth_client(sb)
      sb:fault { method = "POST", path = "/oauth2/token", status = 200, body = "false", times = 1 }
      local result, err = kf:status()
      assert.is_nil(result)
      assert.are.equal("auth", err.kind)
      assert.matches("access_token", err.message, 1, true)
      assert(kf:status())
      kf:close()
    end)

    it("a debug callback that raises during the fetch: the error propagates, the next call works", function()
      local angry = true
      local kf = fixture.client(sb, {
        oauth = { token_url = sb.token_url, client_id = sb.client_id, client_secret = sb.client_secret },
        debug = function() if angry then error("debug callback failed", 0) end end,
      })
      fixture.raises(function() kf:status() end, "debug callback failed")
      angry = false
      assert(kf:status())
      kf:close()
    end)

    it("a kf:parallel aborted by its progress callback mid-fetch: the next call fetches again", function()
      local kf = oauth_client(sb)
      sb:fault { method = "POST", path = "/oauth2/token", delay_ms = 200, times = 1 }
      fixture.raises(function()
        kf:parallel({ function(c) return c:status() end, function() return 1 end },
          { progress = function() error("progress aborted", 0) end })
      end, "progress aborted")
      assert(kf:status())
      kf:close()
    end)

    it("callers of one parallel run share one fetch, and its failure", function()
      local kf = oauth_client(sb, { client_secret = "wrong-secret" })
      local before = token_posts()
      local fns = {}
      for i = 1, 4 do fns[i] = function(c) return c:status() end end
      local values, errs = kf:parallel(fns, { progress = false })
      assert.are.equal(0, #values)
      for i = 1, 4 do assert.are.equal("auth", errs[i].kind) end
      assert.are.equal(before + 1, token_posts())
      kf:close()
    end)
  end)

  describe("credentials never ride plain http or a URL (issue 13.3, 13.4)", function()
    it("refuses an http:// oauth.token_url although url is https", function()
      local function new(extra)
        local o = { url = sb.url, ca_file = sb.ca_file,
          oauth = { token_url = "http://127.0.0.1:9/oauth2/token", client_id = "c", client_secret = "s" } }
        for k, v in pairs(extra or {}) do o[k] = v end
        return keyfactor.new(o)
      end
      fixture.raises(new, "keyfactor.new", "options.oauth.token_url", "allow_http")
      new({ allow_http = true }):close()
      fixture.raises(function()
        keyfactor.from_env { env = { KEYFACTOR_HOSTNAME = sb.base, KEYFACTOR_AUTH_CLIENT_ID = "c",
          KEYFACTOR_AUTH_CLIENT_SECRET = "s", KEYFACTOR_AUTH_TOKEN_URL = "http://127.0.0.1:9/token",
          KEYFACTOR_CA_CERT = sb.ca_file } }
      end, "token_url", "allow_http")
    end)

    it("refuses user:password@ in url and token_url, without echoing the password", function()
      for _, url in ipairs { "http://admin:hunter2pw@127.0.0.1:9/KeyfactorAPI",
                             "https://admin:hunter2pw@127.0.0.1:9/KeyfactorAPI" } do
        local message = fixture.raises(function() keyfactor.new { url = url, allow_http = true } end,
          "options.url", "user:password@")
        assert.is_nil(message:find("hunter2pw", 1, true))
      end
      fixture.raises(function()
        keyfactor.new { url = sb.url, oauth = { token_url = "https://c:hunter2pw@127.0.0.1:9/t",
          client_id = "c", client_secret = "s" } }
      end, "options.oauth.token_url", "user:password@")
      -- an @ in the path or query is no userinfo
      keyfactor.new { url = sb.url .. "/x@y" }:close()
    end)

    it("bin/keyfactor status never prints the password", function()
      -- as spec/cli_spec.lua runs it: the tool's own module paths
      local host = "https://admin:hunter2pw@" .. sb.base:match("^https://(.*)$")
      local cmd = string.format("env -u LUA_PATH -u LUA_CPATH KEYFACTOR_HOSTNAME=%q KEYFACTOR_USERNAME=admin "
        .. "KEYFACTOR_PASSWORD=hunter2pw bin/keyfactor status 2>&1", host)
      local pipe = assert(io.popen(cmd))
      local out = pipe:read("a")
      pipe:close()
      assert.is_nil(out:find("hunter2pw", 1, true), out)
      assert.matches("user:password@", out, 1, true)
    end)
  end)

  describe("keyfactor.from_env", function()
    local host

    lazy_setup(function() host = sb.base:match("^https://(.*)$") end)

    local function env_client(env, overrides)
      local o = { env = env }
      for k, v in pairs(overrides or {}) do o[k] = v end
      return keyfactor.from_env(o)
    end

    it("takes KEYFACTOR_HOSTNAME as host:port, with Basic credentials and a CA file", function()
      local kf = env_client {
        KEYFACTOR_HOSTNAME = host, KEYFACTOR_USERNAME = "SANDBOX\\admin", KEYFACTOR_PASSWORD = "sandbox-admin",
        KEYFACTOR_CA_CERT = sb.ca_file,
      }
      assert.are.equal(sb.url, kf.url)
      assert(kf:status())
      kf:close()
    end)

    it("takes KEYFACTOR_HOSTNAME as a full URL and KEYFACTOR_API_PATH", function()
      local kf = env_client {
        KEYFACTOR_HOSTNAME = sb.base .. "/", KEYFACTOR_API_PATH = "/KeyfactorAPI/",
        KEYFACTOR_USERNAME = "SANDBOX\\admin", KEYFACTOR_PASSWORD = "sandbox-admin", KEYFACTOR_CA_CERT = sb.ca_file,
      }
      assert.are.equal(sb.url, kf.url)
      assert(kf:status())
      kf:close()
    end)

    it("puts KEYFACTOR_DOMAIN in front of a bare username", function()
      local good = env_client {
        KEYFACTOR_HOSTNAME = host, KEYFACTOR_USERNAME = "admin", KEYFACTOR_DOMAIN = "SANDBOX",
        KEYFACTOR_PASSWORD = "sandbox-admin", KEYFACTOR_CA_CERT = sb.ca_file,
      }
      assert(good:status())
      -- a foreign domain is refused by the sandbox: proves the prefix is sent
      local foreign = env_client {
        KEYFACTOR_HOSTNAME = host, KEYFACTOR_USERNAME = "admin", KEYFACTOR_DOMAIN = "OTHERDOMAIN",
        KEYFACTOR_PASSWORD = "sandbox-admin", KEYFACTOR_CA_CERT = sb.ca_file,
      }
      local _, err = foreign:status()
      assert.are.equal(401, err.status)
      -- a username that already names its domain is left alone
      local qualified = env_client {
        KEYFACTOR_HOSTNAME = host, KEYFACTOR_USERNAME = "admin@SANDBOX", KEYFACTOR_DOMAIN = "OTHERDOMAIN",
        KEYFACTOR_PASSWORD = "sandbox-admin", KEYFACTOR_CA_CERT = sb.ca_file,
      }
      assert(qualified:status())
      good:close(); foreign:close(); qualified:close()
    end)

    it("uses the OAuth variables", function()
      local before = token_posts()
      local kf = env_client {
        KEYFACTOR_HOSTNAME = host, KEYFACTOR_AUTH_CLIENT_ID = sb.client_id,
        KEYFACTOR_AUTH_CLIENT_SECRET = sb.client_secret, KEYFACTOR_AUTH_TOKEN_URL = sb.token_url,
        KEYFACTOR_CA_CERT = sb.ca_file,
      }
      assert(kf:status())
      assert.are.equal(before + 1, token_posts())
      assert.matches("oauth", tostring(kf))
      kf:close()
    end)

    it("uses KEYFACTOR_AUTH_ACCESS_TOKEN", function()
      local kf = env_client {
        KEYFACTOR_HOSTNAME = host, KEYFACTOR_AUTH_ACCESS_TOKEN = fetch_token(), KEYFACTOR_CA_CERT = sb.ca_file,
      }
      assert(kf:status())
      assert.matches("bearer", tostring(kf))
      kf:close()
    end)

    it("skips verification with KEYFACTOR_SKIP_VERIFY", function()
      local kf = env_client({
        KEYFACTOR_HOSTNAME = host, KEYFACTOR_USERNAME = "SANDBOX\\admin", KEYFACTOR_PASSWORD = "sandbox-admin",
        KEYFACTOR_SKIP_VERIFY = "true",
      }, { warn = function() end })
      assert(kf:status())
      kf:close()
    end)

    it("takes KEYFACTOR_HOSTNAME as a full URL with the API path, without doubling it", function()
      local kf = env_client {
        KEYFACTOR_HOSTNAME = sb.url, KEYFACTOR_USERNAME = "SANDBOX\\admin", KEYFACTOR_PASSWORD = "sandbox-admin",
        KEYFACTOR_CA_CERT = sb.ca_file,
      }
      assert.are.equal(sb.url, kf.url)
      assert(kf:status())
      kf:close()
    end)

    it("names KEYFACTOR_CA_CERT (or ca_file) when the CA file cannot be read", function()
      fixture.raises(function()
        env_client { KEYFACTOR_HOSTNAME = host, KEYFACTOR_CA_CERT = "/nonexistent/ca.pem" }
      end, "keyfactor.from_env", "KEYFACTOR_CA_CERT", "/nonexistent/ca.pem")
      fixture.raises(function()
        keyfactor.new { url = sb.url, ca_file = "/nonexistent/ca.pem" }
      end, "keyfactor.new", "options.ca_file", "/nonexistent/ca.pem")
    end)

    it("raises when KEYFACTOR_HOSTNAME is missing", function()
      fixture.raises(function()
        keyfactor.from_env { env = { KEYFACTOR_USERNAME = "admin", KEYFACTOR_PASSWORD = "x" } }
      end, "KEYFACTOR_HOSTNAME")
    end)
  end)

  describe("TLS and transport guards", function()
    it("fails with kind tls when the sandbox CA is not trusted", function()
      local untrusted = keyfactor.new { url = sb.url, username = sb.username, password = sb.password }
      local result, err = untrusted:status()
      assert.is_nil(result)
      assert.are.equal("tls", err.kind)
      assert.is_false(err.retryable)
      untrusted:close()
    end)

    it("insecure = true connects without the CA and warns once per process", function()
      -- a fresh module, so the once-per-process flag starts clear
      package.loaded.keyfactor = nil
      local fresh = require "keyfactor"
      package.loaded.keyfactor = keyfactor
      local warnings = {}
      local function warn(message) warnings[#warnings + 1] = message end
      local a = fresh.new { url = sb.url, username = sb.username, password = sb.password, insecure = true, warn = warn }
      local b = fresh.new { url = sb.url, username = sb.username, password = sb.password, insecure = true, warn = warn }
      assert(a:status())
      assert(b:status())
      assert.are.equal(1, #warnings)
      assert.matches("insecure", warnings[1])
      a:close(); b:close()
    end)

    it("rejects non-finite, absurd and negative timeouts before they reach C (issue 13.14)", function()
      for _, bad in ipairs { math.huge, -math.huge, 0 / 0, 1e300, -1, 86401 } do
        for _, field in ipairs { "timeout", "connect_timeout" } do
          fixture.raises(function() keyfactor.new { url = sb.url, [field] = bad } end,
            "keyfactor.new", "options." .. field, "seconds")
        end
      end
      keyfactor.new({ url = sb.url, timeout = 86400, connect_timeout = 0 }):close()
      -- the C core checks too, and clamps what it converts
      local core = require "keyfactor.core"
      for _, bad in ipairs { math.huge, 0 / 0, 1e300, -1 } do
        fixture.raises(function() core.session { timeout = bad } end, "option 'timeout' must be a number from")
        fixture.raises(function() core.session { max_body = bad } end, "option 'max_body' must be a number from")
      end
      local session = core.session()
      fixture.raises(function() session:step(math.huge) end, "bad argument #1 to 'step'")
      session:close()
      fixture.raises(function() core.sleep(math.huge) end, "bad argument #1")
      local kf = fixture.client(sb)
      fixture.raises(function() kf.http.session:start { method = "GET", url = sb.url, timeout = 0 / 0 } end,
        "option 'timeout'")
      kf:close()
    end)

    it("refuses credentials over http:// unless allow_http", function()
      local url = "http://127.0.0.1:9/KeyfactorAPI"
      fixture.raises(function()
        keyfactor.new { url = url, username = "u", password = "p" }
      end, "keyfactor.new", "http://", "allow_http")
      fixture.raises(function() keyfactor.new { url = url, token = "t" } end, "allow_http")
      local kf = keyfactor.new { url = url, username = "u", password = "p", allow_http = true }
      kf:close()
      -- without credentials plain http is no secret leak
      keyfactor.new { url = url }:close()
    end)
  end)
end)
