-- No request holds the sandbox's event loop. A body the client abandoned
-- half way, after an answer made before reading it, is read to its end or
-- hung up (lua-http's clean-up looped on it forever: the CI run of round 2
-- froze there); a handler that never yields is hung up by the watchdog, and
-- the server goes on; a server held up in C is not mistaken for one.
local sandbox = require "keyfactor.sandbox"
local raw_tls = require "support.raw_tls"

local DEPLOY = "/KeyfactorAPI/Enrollment/PFX/Deploy"

describe("sandbox event loop", function()
  local sb, port

  lazy_setup(function()
    sb = sandbox.start{ port = 0, watchdog = 1 }
    port = tonumber(sb.base:match(":(%d+)$"))
  end)
  lazy_teardown(function() if sb then sb:stop() end end)

  local function watchdog_reports()
    local n = 0
    for _ in sb:log():gmatch("watchdog: a coroutine held the event loop") do n = n + 1 end
    return n
  end

  it("reads or hangs up a body abandoned after an early answer, without the watchdog", function()
    local before = watchdog_reports()
    -- the fault answers 503 after 300 ms without reading the body; by then
    -- the client has sent 10 of the 100 bytes it promised and hung up
    sb:fault{ method = "POST", path = DEPLOY, status = 503, delay_ms = 300 }
    local line = raw_tls.status_line(port, "POST " .. DEPLOY .. " HTTP/1.1\r\nHost: x\r\n"
      .. "Authorization: Basic U0FOREJPWFxhZG1pbjpzYW5kYm94LWFkbWlu\r\n"
      .. "x-keyfactor-requested-with: spec\r\nContent-Type: application/json\r\n"
      .. "Content-Length: 100\r\n\r\n0123456789", true)
    assert.matches("^HTTP/1.1 503", line)
    assert.equals(200, (sb:http("GET", "/Status/Endpoints")))
    assert.equals(before, watchdog_reports())
  end)

  it("does not take a server held in C (a slow key generation) for a runaway handler", function()
    local before = watchdog_reports()
    -- 2.5 s in C, over the 1 s limit, then Lua work while the heartbeat is late
    sb:fault{ method = "GET", path = "/KeyfactorAPI/Status/Endpoints", action = "stall", delay_ms = 2500 }
    local status, body = sb:http("GET", "/Status/Endpoints")
    assert.equals(200, status)
    assert.is_table(body)
    assert.equals(before, watchdog_reports())
  end)

  it("hangs up a handler that never yields, logs where it was, and serves on", function()
    local before = watchdog_reports()
    sb:fault{ method = "GET", path = "/KeyfactorAPI/Status/Endpoints", action = "hog" }
    local ok, err = pcall(sb.http, sb, "GET", "/Status/Endpoints")
    assert.is_false(ok)
    assert.matches("curl failed", err)
    assert.equals(200, (sb:http("GET", "/Status/Endpoints")))
    assert.equals(before + 1, watchdog_reports())
    assert.matches("watchdog: a coroutine held the event loop for over 1 s; dropped it\nstack traceback:"
      .. ".-sandbox/faults%.lua", sb:log())
    local hogged = 0
    for _, r in ipairs(sb:requests()) do
      if r.fault == "hog" then hogged = hogged + 1 end
    end
    assert.equals(1, hogged)
  end)
end)
