-- keyfactor.haproxy inside a real HAProxy 2.6 (Debian's haproxy, Lua 5.3),
-- one thread, the client in the shared Lua state (lua-load): calls from a
-- Lua service, a task and kf:parallel yield to HAProxy; a sample fetch
-- blocks and says so once.  The app is spec/hosts/app/haproxy_app.lua.
local host = require "hosts.host"
local behaviours = require "hosts.behaviours"

describe("keyfactor.haproxy in HAProxy (nbthread 1, lua-load)", function()
  behaviours.define(function(sb)
    host.build("lua5.3")
    return host.haproxy { url = sb.url, ca_file = sb.ca_file, username = sb.username,
                          password = sb.password, nbthread = 1 }
  end, {
    handler = "a Lua service", task = "a task", fallback = "a sample fetch",
    log_pattern = "keyfactor: a call made in a sample fetch",
  })
end)

-- A script that registers its task first and requires keyfactor.haproxy
-- inside it (spec/hosts/app/haproxy_late_app.lua): the task's calls yield
-- too, rather than blocking the thread for the whole call with a log line
-- that blames "a coroutine HAProxy did not start".
describe("keyfactor.haproxy required inside a task registered before it", function()
  local fixture = require "support.fixture"
  local socket = require "socket"
  local sb, kf, h, slow

  fixture.live(function(s, k)
    sb, kf = s, k
    slow = fixture.enroll(kf, "late.example.com").CertificateInformation.KeyfactorId
    host.build("lua5.3")
    h = host.haproxy { url = sb.url, ca_file = sb.ca_file, username = sb.username,
                       password = sb.password, nbthread = 1, late = true }
  end)
  lazy_teardown(function() if h then h:stop() end end)

  it("yields while the task's call waits: HAProxy keeps answering", function()
    sb:fault { method = "GET", path = "/KeyfactorAPI/Certificates/" .. slow, times = 1, delay_ms = 2000 }
    local before = #fixture.requests(sb, "GET", "/Certificates/" .. slow)
    assert.equal("spawned", select(2, h:get("/late_spawn?id=" .. slow)))
    assert(fixture.poll(function()
      return #fixture.requests(sb, "GET", "/Certificates/" .. slow) > before
    end, 10, 0.02), "the task's call never reached the sandbox")
    -- the delayed call is in flight in the task: plain and Lua answers go on meanwhile
    for _ = 1, 20 do
      assert.equal(200, (h:get("/plain", 10)))
      assert.equal(200, (h:get("/lua", 10)))
    end
    assert.equal("pending", select(2, h:get("/late_result")), "the thread was blocked by the task's call")
    local body
    for _ = 1, 100 do
      body = select(2, h:get("/late_result"))
      if body ~= "pending" then break end
      socket.sleep(0.05)
    end
    assert.equal(tostring(slow), body:match("^id=(%d+)"), body)
    assert.is_nil(h:log():find("blocks this HAProxy thread", 1, true), h:log())
  end)
end)
