-- What attach(kf) must give in every host, as busted cases shared by
-- haproxy_spec.lua and nginx_spec.lua.  The host runs one thread / one
-- worker, so anything it answers while a Keyfactor call is in flight was
-- answered by the very event loop that is waiting for that call.
--
-- Nothing here is timed: a slow call is a sandbox fault (delay_ms), and the
-- proof is an order of events ("20 plain answers came back, and the call
-- had not answered yet").
local fixture = require "support.fixture"
local host = require "hosts.host"
local socket = require "socket"
local busted = require "busted"
local assert = require "luassert"
local it, lazy_teardown = busted.it, busted.lazy_teardown

local behaviours = {}

local DELAY_MS = 2000
local PLAIN = 20

-- Waits until the sandbox has received `n` GETs of certificate `id` (the
-- delayed call is then in flight in the host).
local function until_received(sb, id, n)
  for _ = 1, 200 do
    if #fixture.requests(sb, "GET", "/Certificates/" .. id) >= n then return end
    socket.sleep(0.02)
  end
  error("the sandbox never saw GET /Certificates/" .. id)
end

-- `PLAIN` requests to each of `paths`, one after the other; returns how
-- many were answered 200.
local function plain_requests(h, paths)
  local answered = 0
  for _ = 1, PLAIN do
    for _, path in ipairs(paths) do
      local status = h:get(path, 10)
      if status == 200 then answered = answered + 1 end
    end
  end
  return answered
end

--- Registers the cases.  `start(sb, opts)` starts the host on sandbox `sb`
-- (one thread or worker); `names` = { handler = "a Lua service", task = "a task",
-- fallback = "a sample fetch", log_pattern = the warning's text }.
function behaviours.define(start, names)
  local sb, kf, h, fast, slow
  fixture.live(function(s, k)
    sb, kf = s, k
    fast = fixture.enroll(kf, "fast.example.com").CertificateInformation.KeyfactorId
    slow = fixture.enroll(kf, "slow.example.com").CertificateInformation.KeyfactorId
    h = start(sb)
  end)
  lazy_teardown(function() if h then h:stop() end end)

  local function delay_next(times)
    sb:fault { method = "GET", path = "/KeyfactorAPI/Certificates/" .. slow, times = times or 1,
               delay_ms = DELAY_MS }
  end

  it("keeps answering while a call made in " .. names.handler .. " waits, and shares the client", function()
    delay_next()
    local before = #fixture.requests(sb, "GET", "/Certificates/" .. slow)
    local call = host.begin(h.port, "/call?id=" .. slow)
    until_received(sb, slow, before + 1)
    -- Plain requests, requests answered by Lua, and other calls on the same
    -- client from other host coroutines: all answered meanwhile.
    assert.equal(PLAIN * 2, plain_requests(h, { "/plain", "/lua" }))
    for _ = 1, 5 do
      local status, body = h:get("/call?id=" .. fast, 10)
      assert.equal(200, status)
      assert.equal(tostring(fast), body:match("^id=(%d+)"), body)
    end
    assert.is_false(host.answered(call), "the delayed call answered before the plain requests")
    local status, body = host.finish(call)
    assert.equal(200, status)
    assert.equal(tostring(slow), body:match("^id=(%d+)"), body)
    assert.is_true(tonumber(body:match("ms=([%d.]+)")) >= DELAY_MS * 0.9, body)
  end)

  it("keeps answering while a call made in " .. names.task .. " waits", function()
    delay_next()
    local before = #fixture.requests(sb, "GET", "/Certificates/" .. slow)
    assert.equal(202, (h:get("/spawn?id=" .. slow)))
    until_received(sb, slow, before + 1)
    assert.equal(PLAIN * 2, plain_requests(h, { "/plain", "/lua" }))
    assert.equal("pending", select(2, h:get("/result")))
    local body
    for _ = 1, 100 do
      body = select(2, h:get("/result"))
      if body ~= "pending" then break end
      socket.sleep(0.05)
    end
    assert.equal(tostring(slow), body:match("^id=(%d+)"), body)
  end)

  it("runs kf:parallel inside the host, waiting through it", function()
    local status, body = h:get("/parallel?n=50&c=8&id=" .. fast)
    assert.equal(200, status)
    assert.equal("ok=50 of=50", body:match("^ok=%d+ of=%d+"), body)
    -- One of the functions is slow: the host keeps answering meanwhile.
    delay_next()
    local before = #fixture.requests(sb, "GET", "/Certificates/" .. slow)
    local batch = host.begin(h.port, ("/parallel?n=20&c=4&id=%d&slow=%d"):format(fast, slow))
    until_received(sb, slow, before + 1)
    assert.equal(PLAIN, plain_requests(h, { "/plain" }))
    assert.is_false(host.answered(batch), "the batch answered before the plain requests")
    status, body = host.finish(batch)
    assert.equal(200, status)
    assert.equal("ok=20 of=20", body:match("^ok=%d+ of=%d+"), body)
  end)

  it("yields in paged iterators and in Retry-After sleeps too", function()
    -- A page the sandbox is slow to send.
    sb:fault { method = "GET", path = "/KeyfactorAPI/Certificates", times = 1, delay_ms = DELAY_MS }
    local before = #fixture.requests(sb, "GET", "/Certificates")
    local pages = host.begin(h.port, "/pages?n=2")
    for _ = 1, 200 do
      if #fixture.requests(sb, "GET", "/Certificates") > before then break end
      socket.sleep(0.02)
    end
    assert.equal(PLAIN, plain_requests(h, { "/plain" }))
    assert.is_false(host.answered(pages), "the pages came before the plain requests")
    local status, body = host.finish(pages)
    assert.equal(200, status)
    assert.equal("items=2", body:match("^items=%d+"), body)
    -- A 503 with Retry-After: the client sleeps in the host, then retries.
    sb:fault { method = "GET", path = "/KeyfactorAPI/Certificates/" .. slow, times = 1, status = 503,
               retry_after = DELAY_MS / 1000 }
    before = #fixture.requests(sb, "GET", "/Certificates/" .. slow)
    local call = host.begin(h.port, "/call?id=" .. slow)
    until_received(sb, slow, before + 1)
    assert.equal(PLAIN, plain_requests(h, { "/plain" }))
    assert.is_false(host.answered(call), "the retried call answered before the plain requests")
    status, body = host.finish(call)
    assert.equal(200, status)
    assert.equal(tostring(slow), body:match("^id=(%d+)"), body)
    assert.equal(before + 2, #fixture.requests(sb, "GET", "/Certificates/" .. slow))
  end)

  -- kf:close() by another host task while a call of that client waits: the
  -- call ends with kind "canceled" (it used to raise "session is closed"),
  -- and the host goes on answering, the shared client too.
  it("ends a waiting call with kind canceled when " .. names.task .. " closes its client", function()
    delay_next()
    local status, body = h:get("/close?id=" .. slow, 10)
    assert.equal(200, status)
    assert.equal("canceled", body:match("^kind=(%w+)"), body)
    assert.is_true(tonumber(body:match("ms=([%d.]+)")) < DELAY_MS * 0.75, body)
    assert.equal(PLAIN * 2, plain_requests(h, { "/plain", "/lua" }))
    status, body = h:get("/call?id=" .. fast, 10)
    assert.equal(200, status)
    assert.equal(tostring(fast), body:match("^id=(%d+)"), body)
  end)

  it("blocks in " .. names.fallback .. ", where the host cannot yield, and says so once", function()
    delay_next()
    local before = #fixture.requests(sb, "GET", "/Certificates/" .. slow)
    local call = host.begin(h.port, "/fetch?id=" .. slow)
    until_received(sb, slow, before + 1)
    -- The thread is blocked: a plain request sent now is answered only
    -- after the call.
    local plain = host.begin(h.port, "/plain")
    assert.equal(200, (host.finish(plain)))
    assert.is_true(host.answered(call), "a plain request was answered while the host was blocked")
    local status, body = host.finish(call)
    assert.equal(200, status)
    assert.equal(tostring(slow), body:match("^fetch=id=(%d+)"), body)
    -- A second one works too, and is not logged again.
    status, body = h:get("/fetch?id=" .. fast)
    assert.equal(200, status)
    assert.equal(tostring(fast), body:match("^fetch=id=(%d+)"), body)
    local _, warnings = h:log():gsub(names.log_pattern, "")
    assert.equal(1, warnings, h:log())
  end)
end

return behaviours
