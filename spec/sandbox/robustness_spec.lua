-- The server survives broken clients and broken handlers: failed TLS
-- handshakes, plain HTTP and garbage on the TLS port, clients that hang up
-- mid-request or mid-response, and Lua errors inside a handler.
local sandbox = require "keyfactor.sandbox"
local socket = require "cqueues.socket"
local ssl_context = require "openssl.ssl.context"

describe("sandbox robustness", function()
  local sb, port

  lazy_setup(function()
    sb = sandbox.start{ port = 0 }
    port = tonumber(sb.base:match(":(%d+)$"))
  end)
  lazy_teardown(function() if sb then sb:stop() end end)

  local function still_serving()
    local status = sb:http("GET", "/Status/Endpoints")
    assert.equals(200, status)
  end

  local function raw_connect()
    local s = assert(socket.connect{ host = "127.0.0.1", port = port })
    s:setmode("b", "b")
    assert(s:connect(5))
    return s
  end

  local function tls_connect()
    local s = raw_connect()
    local ctx = ssl_context.new("TLS", false)
    ctx:setVerify(ssl_context.VERIFY_NONE)
    assert(s:starttls(ctx, 5))
    return s
  end

  it("serves a certificate with an IP SAN 127.0.0.1 and DNS SAN localhost", function()
    local s = tls_connect()
    local cert = s:checktls():getPeerCertificate()
    local sans = {}
    for kind, v in pairs(cert:getSubjectAlt()) do sans[kind .. ":" .. v] = true end
    assert.is_true(sans["IP:127.0.0.1"])
    assert.is_true(sans["DNS:localhost"])
    s:close()
  end)

  it("survives plain HTTP on the TLS port", function()
    local s = raw_connect()
    s:write("GET /KeyfactorAPI/Status/Endpoints HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    s:flush()
    pcall(s.read, s, "*a", 3)
    s:close()
    still_serving()
  end)

  it("survives garbage bytes and a connection closed during the handshake", function()
    local s = raw_connect()
    s:write(string.rep("\22\3\1\0\255garbage", 50))
    s:flush()
    s:close()
    local s2 = raw_connect()
    s2:write("\22\3\1")
    s2:close()
    still_serving()
  end)

  it("survives a failed TLS handshake (client rejects the certificate)", function()
    -- curl without the CA aborts the handshake after the server hello
    local ok = os.execute("curl -sS -o /dev/null " .. sb.url .. "/Status/Endpoints 2>/dev/null")
    assert.is_falsy(ok)
    still_serving()
  end)

  it("survives malformed HTTP inside TLS", function()
    local s = tls_connect()
    s:write("THIS IS NOT HTTP\r\n\r\n")
    s:flush()
    pcall(s.read, s, "*a", 3)
    s:close()
    still_serving()
  end)

  it("survives a client that disconnects mid-request", function()
    local s = tls_connect()
    s:write("POST /KeyfactorAPI/Enrollment/PFX HTTP/1.1\r\nHost: 127.0.0.1\r\n" ..
      "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"Template\":")
    s:flush()
    s:close()
    os.execute("sleep 0.2")
    still_serving()
    local log = sb:requests()
    local seen = false
    for _, r in ipairs(log) do
      if r.path == "/KeyfactorAPI/Enrollment/PFX" and r.status == 0 then seen = true end
    end
    assert.is_true(seen)
  end)

  it("survives a client that disconnects mid-response", function()
    sb:fault{ method = "GET", path = "/KeyfactorAPI/Status/Endpoints", action = "oversize", bytes = 20 * 1024 * 1024 }
    os.execute("curl -sS --cacert " .. sb.ca_file .. " -H 'x-keyfactor-requested-with: x' " .. sb.url ..
      "/Status/Endpoints 2>/dev/null | head -c 1000 > /dev/null")
    still_serving()
  end)

  it("answers a Lua error in a handler with 500 and a Keyfactor error body", function()
    sb:fault{ method = "GET", path = "/KeyfactorAPI/Templates", action = "exception" }
    local status, body = sb:http("GET", "/Templates")
    assert.equals(500, status)
    assert.equals("0xA0000000", body.ErrorCode)
    assert.matches("injected", body.Message)
    still_serving()
    assert.equals(200, (sb:http("GET", "/Templates")))
  end)

  it("answers unknown API paths and methods with Keyfactor errors", function()
    local status, body = sb:http("GET", "/NoSuchThing")
    assert.equals(404, status)
    assert.matches("^0x", body.ErrorCode)
    assert.equals(405, (sb:http("DELETE", "/Certificates")))
    assert.equals(404, (sb:http("GET", "/somewhere/else")))
  end)

  it("handles many concurrent connections", function()
    local cmd = {}
    for i = 1, 20 do
      cmd[i] = "curl -sS -o /dev/null -w '%{http_code}\\n' --cacert " .. sb.ca_file ..
        " -u 'SANDBOX\\admin:sandbox-admin' -H 'x-keyfactor-requested-with: x' " .. sb.url .. "/CertificateStores &"
    end
    local p = io.popen("(" .. table.concat(cmd, "\n") .. "\nwait)")
    local out = p:read("a")
    p:close()
    local ok = 0
    for code in out:gmatch("%d+") do if code == "200" then ok = ok + 1 end end
    assert.equals(20, ok)
  end)
end)
