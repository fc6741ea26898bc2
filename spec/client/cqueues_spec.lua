-- keyfactor.cqueues on the paths where curl closes sockets: a server
-- hang-up, retries, refused connections, timeouts, fan-out.  The host's
-- loop must keep running and end cleanly (it used to stop with "unable to
-- update event disposition: Bad file descriptor", and with retries the call
-- never completed).
local cqueues = require "cqueues"
local fixture = require "support.fixture"
local kf_cqueues = require "keyfactor.cqueues"

local STATUS = "/KeyfactorAPI/Status/Endpoints"

describe("keyfactor.cqueues when curl closes sockets", function()
  local sb, kf
  fixture.live(function(s, k)
    sb, kf = s, k
    kf_cqueues.attach(kf)
  end, { retries = 2 })

  before_each(function() sb:clear_faults() end)

  -- Runs `call` in a cqueues loop beside a ticking coroutine; returns what
  -- the call returned, the ticks seen while it ran, and the loop's result.
  local function in_loop(call)
    local loop = cqueues.new()
    local done, results, ticks = false, nil, 0
    loop:wrap(function()
      results = { call() }
      done = true
    end)
    loop:wrap(function()
      while not done do
        ticks = ticks + 1
        cqueues.sleep(0.01)
      end
    end)
    local ok, err = loop:loop()
    return results, ticks, ok, err
  end

  it("a server hang-up after the answer was read: retried, the loop goes on", function()
    assert(kf:status())            -- a pooled connection the hang-up will close
    sb:fault { method = "GET", path = STATUS, times = 1, action = "reset_after" }
    local results, _, ok, err = in_loop(function() return kf:status() end)
    assert.is_true(ok, tostring(err))
    assert.is_table(results[1])
  end)

  it("retries with backoff on 503, sleeping in the loop", function()
    sb:fault { method = "GET", path = STATUS, times = 2, status = 503 }
    local results, ticks, ok, err = in_loop(function() return kf:status() end)
    assert.is_true(ok, tostring(err))
    assert.is_table(results[1])
    assert.is_true(ticks >= 5, "host ticks during the backoff: " .. ticks)
  end)

  it("a refused connection, retried: the typed error, the loop goes on", function()
    local dead = fixture.client(sb, { url = "https://127.0.0.1:1/KeyfactorAPI", retries = 2 })
    kf_cqueues.attach(dead)
    local results, _, ok, err = in_loop(function() return dead:status() end)
    dead:close()
    assert.is_true(ok, tostring(err))
    assert.is_nil(results[1])
    assert.are.equal("transport", results[2].kind)
  end)

  it("a timeout: the typed error, the loop goes on", function()
    sb:fault { method = "GET", path = STATUS, times = 1, delay_ms = 2000 }
    local quick = kf_cqueues.attach(fixture.client(sb, { timeout = 0.3, retries = 0 }))
    local results, _, ok, err = in_loop(function() return quick:status() end)
    quick:close()
    assert.is_true(ok, tostring(err))
    assert.are.equal("timeout", results[2].kind)
  end)

  it("kf:parallel with hang-ups among the calls", function()
    assert(kf:status())
    sb:fault { method = "GET", path = STATUS, times = 3, action = "reset_after" }
    local results, _, ok, err = in_loop(function()
      local fns = {}
      for i = 1, 8 do fns[i] = function(k) return k:status() end end
      return kf:parallel(fns, { concurrency = 4, progress = false })
    end)
    assert.is_true(ok, tostring(err))
    for i = 1, 8 do assert.is_table(results[1][i], "call " .. i .. ": " .. tostring(results[2][i])) end
  end)

  it("two kf:parallel runs of one client overlap, the first ends first; the loop's driver is back after", function()
    local attached = kf.http.driver
    sb:fault { method = "GET", path = STATUS, times = 2, delay_ms = 300 }
    local loop = cqueues.new()
    local first, second, order = nil, nil, {}
    loop:wrap(function()   -- installed first, under the second run's driver; ends first
      local fns = {}
      for i = 1, 2 do fns[i] = function(k) return k:status() end end
      first = { kf:parallel(fns, { concurrency = 2, progress = false }) }
      order[#order + 1] = "first"
    end)
    loop:wrap(function()
      cqueues.sleep(0.05)
      local fns = {}
      for i = 1, 3 do fns[i] = function(k) k:sleep(0.8) return k:status() end end
      second = { kf:parallel(fns, { concurrency = 3, progress = false }) }
      order[#order + 1] = "second"
    end)
    local ok, err = loop:loop()
    assert.is_true(ok, tostring(err))
    assert.are.same({ "first", "second" }, order)
    for i = 1, 2 do assert.is_table(first[1][i], "first " .. i .. ": " .. tostring(first[2][i])) end
    for i = 1, 3 do assert.is_table(second[1][i], "second " .. i .. ": " .. tostring(second[2][i])) end
    assert.are.equal(attached, kf.http.driver, "both runs' drivers were taken out of the chain")
  end)
end)

-- kf:close() from another coroutine while calls of the client wait in the
-- loop: the waits end with nil, err of kind "canceled" and the loop goes on
-- (it used to raise "session is closed" in the waiting call, then stop with
-- "unable to update event disposition: Bad file descriptor").
describe("keyfactor.cqueues when the client is closed while calls wait", function()
  local sb
  fixture.live(function(s) sb = s end)
  before_each(function() sb:clear_faults() end)

  -- Runs `call(kf)` in a loop; another coroutine closes kf after `after`
  -- seconds and then ticks on.  Returns the call's results, the ticks seen
  -- after the close, and the loop's result.
  local function closed_while_waiting(kf, call, after)
    local loop = cqueues.new()
    local results, closed, ticks_after = nil, false, 0
    loop:wrap(function() results = table.pack(call(kf)) end)
    loop:wrap(function()
      cqueues.sleep(after)
      kf:close()
      closed = true
      while not results or ticks_after < 5 do
        ticks_after = ticks_after + 1
        cqueues.sleep(0.01)
      end
    end)
    local ok, err = loop:loop()
    assert.is_true(closed)
    return results, ticks_after, ok, err
  end

  it("a call waiting for its answer: nil, err of kind canceled; the loop goes on", function()
    sb:fault { method = "GET", path = STATUS, times = 1, delay_ms = 2000 }
    local kf = kf_cqueues.attach(fixture.client(sb, { retries = 0 }))
    local t0 = require("keyfactor.core").now()
    local results, ticks, ok, err = closed_while_waiting(kf, function(k) return k:status() end, 0.2)
    assert.is_true(ok, tostring(err))
    assert.is_nil(results[1])
    assert.are.equal("canceled", results[2].kind)
    assert.is_true(ticks >= 5)
    assert.is_true(require("keyfactor.core").now() - t0 < 1.5, "the call ended with the close")
  end)

  it("a call sleeping before a retry: canceled, and not sent again", function()
    sb:fault { method = "GET", path = STATUS, times = 1, status = 503, retry_after = 1 }
    local kf = kf_cqueues.attach(fixture.client(sb, { retries = 2 }))
    local mark = fixture.log_mark(sb)
    local results, _, ok, err = closed_while_waiting(kf, function(k) return k:status() end, 0.3)
    assert.is_true(ok, tostring(err))
    assert.are.equal("canceled", results[2].kind)
    assert.are.equal(1, fixture.seen_since(sb, mark, "GET", STATUS))
  end)

  it("kf:parallel waiting in the loop: every unfinished call canceled, the loop goes on", function()
    sb:fault { method = "GET", path = STATUS, times = 8, delay_ms = 2000 }
    local kf = kf_cqueues.attach(fixture.client(sb, { retries = 0 }))
    local results, ticks, ok, err = closed_while_waiting(kf, function(k)
      local fns = {}
      for i = 1, 8 do fns[i] = function(c) return c:status() end end
      return k:parallel(fns, { concurrency = 4, progress = false })
    end, 0.3)
    assert.is_true(ok, tostring(err))
    assert.is_true(ticks >= 5)
    local values, errs = results[1], results[2]
    for i = 1, 8 do
      assert.is_nil(values[i], "call " .. i)
      assert.are.equal("canceled", errs[i].kind, "call " .. i .. ": " .. tostring(errs[i]))
    end
  end)
end)
