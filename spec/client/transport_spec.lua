-- The transport's contract with libcurl, against real servers: nothing sent
-- twice behind the client's back, failures reported as records, answers that
-- can never succeed not retried, bounded timeouts, the socket-action API,
-- kf:close() inside kf:parallel, and a session used after fork().
local core = require "keyfactor.core"
local keyfactor = require "keyfactor"
local fixture = require "support.fixture"
local raw_http = require "support.raw_http"

local REVOKE = "/KeyfactorAPI/Certificates/Revoke"

describe("transport", function()
  local sb, kf
  local lines = {}
  fixture.live(function(s, k) sb, kf = s, k end,
    { retries = 2, debug = function(line) lines[#lines + 1] = line end })

  local mark
  local function seen(method, path) return fixture.seen_since(sb, mark, method, path) end

  before_each(function()
    sb:clear_faults()
    mark = fixture.log_mark(sb)
    for i = #lines, 1, -1 do lines[i] = nil end
  end)

  describe("a reused connection the server closes after reading the request", function()
    it("a POST without a body reaches the server once and is not retryable", function()
      assert(kf:status())                        -- a kept-alive connection to reuse
      sb:fault { method = "POST", path = REVOKE, times = 1, action = "reset_after" }
      local ok, err = kf:request("POST", "/Certificates/Revoke")
      assert.is_nil(ok)
      assert.are.equal("transport", err.kind)
      assert.is_false(err.retryable)
      assert.is_true(err.sent)
      assert.are.equal(1, seen("POST", REVOKE))
    end)

    it("a POST with an empty body likewise", function()
      assert(kf:status())
      sb:fault { method = "POST", path = REVOKE, times = 1, action = "reset_after" }
      local ok, err = kf:request("POST", "/Certificates/Revoke", { body = "" })
      assert.is_nil(ok)
      assert.is_false(err.retryable)
      assert.are.equal(1, seen("POST", REVOKE))
    end)

    it("a GET is sent again by the client, at once, and succeeds", function()
      assert(kf:status())
      local path = "/KeyfactorAPI/Status/Endpoints"
      sb:fault { method = "GET", path = path, times = 1, action = "reset_after" }
      assert(kf:status())
      assert.are.equal(1 + 2, seen("GET", path))   -- the first call, then the reset one twice
      local retried = table.concat(lines, "\n")
      assert.matches("retry 1/2 in 0%.00s", retried)
    end)
  end)

  describe("answers that can never succeed are not retried", function()
    for _, mode in ipairs { "huge_header_line", "many_headers" } do
      it(mode .. ": one request, a transport error naming the limit", function()
        local server = raw_http.start(mode)
        finally(server.stop)
        local client = keyfactor.new { url = server.url .. "/KeyfactorAPI", allow_http = true, retries = 2 }
        local ok, err = client:status()
        client:close()
        assert.is_nil(ok)
        assert.are.equal("transport", err.kind)
        assert.is_false(err.retryable)
        assert.matches("response headers exceed the limit", err.message)
        assert.are.equal(1, server.requests())
      end)
    end
  end)

  describe("the failure record", function()
    it("carries libcurl's number to the error table", function()
      local unreachable = keyfactor.new { url = "http://127.0.0.1:1/KeyfactorAPI", retries = 0, connect_timeout = 2 }
      local value, err = unreachable:status()
      unreachable:close()
      assert.is_nil(value)
      assert.are.equal("CURLE_COULDNT_CONNECT", err.curl)
      assert.are.equal(7, err.curl_code)
    end)

    it("names curl's code and says nothing was sent for a refused connection", function()
      local s = core.session { connect_timeout = 2 }
      local request = s:start { method = "POST", url = "http://127.0.0.1:1/x", body = "{}" }
      s:wait(request)
      local status, failure = request:result()
      assert.is_nil(status)
      assert.are.equal("CURLE_COULDNT_CONNECT", failure.code)
      assert.are.equal(7, failure.curl_code)   -- libcurl's number beside its name
      assert.is_false(failure.sent)
      assert.is_false(failure.replayed)
      s:close()
    end)

    it("says a canceled request was sent when it was", function()
      local path = "/KeyfactorAPI/Status/Endpoints"
      sb:fault { method = "GET", path = path, times = 1, delay_ms = 3000 }
      local s = core.session { ca_file = sb.ca_file }
      s:set_credentials("basic", sb.username, sb.password)
      local request = s:start { method = "GET", url = sb.url .. "/Status/Endpoints",
        headers = { "x-keyfactor-requested-with: APIClient" } }
      fixture.poll(function()
        s:step(0.05)
        return seen("GET", path) > 0 or nil
      end, 10, 0)
      request:cancel()
      local status, failure = request:result()
      assert.is_nil(status)
      assert.are.equal("canceled", failure.code)
      assert.is_true(failure.sent)
      s:close()
    end)
  end)

  describe("timeouts and sleeps are bounded before they reach C", function()
    for _, bad in ipairs { math.huge, -1, 0 / 0, 1e300 } do
      it("rejects " .. tostring(bad), function()
        assert.has_error(function() core.session { timeout = bad } end)
        assert.has_error(function() core.session { connect_timeout = bad } end)
        assert.has_error(function() core.sleep(bad) end)
        local s = core.session()
        assert.has_error(function() s:step(bad) end)
        assert.has_error(function() s:start { method = "GET", url = "http://127.0.0.1:1/", timeout = bad } end)
        s:close()
      end)
    end
  end)

  describe("the socket-action API", function()
    it("lists the sockets curl watches and keeps one pollfd", function()
      local path = "/KeyfactorAPI/Status/Endpoints"
      sb:fault { method = "GET", path = path, times = 1, delay_ms = 500 }
      local s = core.session { ca_file = sb.ca_file }
      s:set_credentials("basic", sb.username, sb.password)
      local pollfd = s:pollfd()
      local request = s:start { method = "GET", url = sb.url .. "/Status/Endpoints",
        headers = { "x-keyfactor-requested-with: APIClient" } }
      local watched = fixture.poll(function()
        s:step(0.05)
        local socks = s:sockets()
        return #socks > 0 and socks or nil
      end, 10, 0)
      assert.is_number(watched[1][1])
      assert.truthy(({ r = true, w = true, rw = true })[watched[1][2]])
      s:wait(request)
      assert.are.equal(200, (request:result()))
      assert.are.equal(pollfd, s:pollfd())
      s:close()
    end)
  end)

  describe("kf:close() inside kf:parallel", function()
    it("returns what finished and canceled errors for the rest", function()
      local client = fixture.client(sb)
      local path = "/KeyfactorAPI/Status/Endpoints"
      sb:fault { method = "GET", path = path, times = 3, delay_ms = 2000 }
      local fns = {}
      for i = 1, 6 do
        fns[i] = function(k)
          if i == 4 then
            k:close()
            return "closed"
          end
          return k:status()
        end
      end
      local values, errs = client:parallel(fns, { concurrency = 4, progress = false })
      assert.are.equal("closed", values[4])
      for i = 1, 6 do
        if i ~= 4 then
          assert.is_nil(values[i])
          assert.is_not_nil(errs[i])
        end
      end
      for _, i in ipairs { 1, 2, 3, 5, 6 } do assert.are.equal("canceled", errs[i].kind) end
    end)
  end)
end)

describe("a client used in a child process after fork()", function()
  local ok_posix, unistd = pcall(require, "posix.unistd")
  if not ok_posix then
    pending("needs lua-posix (Debian builds it for Lua 5.1-5.3; the 5.3 and LuaJIT runs cover it)")
    return
  end
  local wait = require("posix.sys.wait").wait

  local kf, ids
  fixture.live(function(_, k)
    kf = k
    ids = {}
    for i = 1, 2 do
      ids[i] = fixture.enroll(kf, fixture.unique("fork" .. i) .. ".example.com").CertificateInformation.KeyfactorId
    end
  end)

  it("gets its own answers, never the parent's, on fresh connections", function()
    for round = 1, 10 do
      assert(kf:certificate(ids[1]))             -- a pooled TLS connection now
      local out = os.tmpname()
      local pid = assert(unistd.fork())
      if pid == 0 then
        local ok, cert = pcall(kf.certificate, kf, ids[2])
        local f = io.open(out, "w")
        f:write(ok and cert and tostring(cert.Id) or "error")
        f:close()
        unistd._exit(0)
      end
      local mine = assert(kf:certificate(ids[1]))
      wait(pid)
      local f = io.open(out)
      local theirs = f:read("*a")
      f:close()
      os.remove(out)
      assert.are.equal(ids[1], mine.Id, "round " .. round)
      assert.are.equal(tostring(ids[2]), theirs, "round " .. round)
    end
  end)
end)
