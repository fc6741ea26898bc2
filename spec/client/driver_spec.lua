-- keyfactor.driver: the injected wait strategy, with the polling driver that
-- HAProxy and nginx use (here over a plain sleep, so no host is needed).
local core = require "keyfactor.core"
local driver = require "keyfactor.driver"
local fixture = require "support.fixture"

local STATUS = "/KeyfactorAPI/Status/Endpoints"

describe("keyfactor.driver", function()
  local sb
  lazy_setup(function() sb = fixture.sandbox() end)
  lazy_teardown(function() sb:stop() end)
  before_each(function() sb:clear_faults() end)

  -- A polling driver over core.sleep that counts its naps.
  local function counting(active)
    local naps = { n = 0, total = 0 }
    local d = driver.polling { name = "test", active = active, sleep = function(seconds)
      naps.n, naps.total = naps.n + 1, naps.total + seconds
      core.sleep(seconds)
    end }
    return d, naps
  end

  it("is given at construction and waits every call through the driver", function()
    local d, naps = counting()
    local kf = fixture.client(sb, { driver = d })
    sb:fault { method = "GET", path = STATUS, times = 1, delay_ms = 400 }
    assert.is_table(kf:status())
    kf:close()
    -- backing off: a few dozen wake-ups for 0.4 s, not hundreds
    assert.is_true(naps.n >= 5 and naps.n <= 60, "naps: " .. naps.n)
  end)

  it("looks at curl once a wake-up, and sends a new request before its first nap", function()
    local d, naps = counting()
    -- The polling driver sees the real session through a view that counts
    -- its steps; its nap notes how many steps came before the first one.
    local steps, first_nap_at_step = 0, nil
    local function view(session)
      return setmetatable({
        step = function(_, t) steps = steps + 1 return session:step(t) end,
      }, { __index = function(_, k) return function(_, ...) return session[k](session, ...) end end })
    end
    local nap = d.nap
    d.nap = function(seconds)
      first_nap_at_step = first_nap_at_step or steps
      return nap(seconds)
    end
    local kf = fixture.client(sb, { driver = {
      name = "counted", active = function() return true end,
      sleep = function(_, seconds) d:sleep(seconds) end,
      poll = function(_, session, timeout) return d:poll(view(session), timeout) end,
    } })
    sb:fault { method = "GET", path = STATUS, times = 1, delay_ms = 400 }
    assert.is_table(kf:status())
    kf:close()
    assert.are.equal(1, first_nap_at_step, "one step (which sends the request) before the first nap")
    -- a step after each nap, and one more; a slow machine (valgrind) may
    -- take a little longer than the shortest nap between two polls and
    -- look again on entry now and then (the old driver stepped twice a nap)
    assert.is_true(steps >= naps.n + 1 and steps <= naps.n + 1 + math.floor(naps.n / 4),
      steps .. " steps for " .. naps.n .. " naps")
    -- 0.4 s of backing off: ~17 wake-ups (1 ms, x1.5 to 50 ms, then 15% of the time waited)
    assert.is_true(naps.n >= 10 and naps.n <= 25, "naps: " .. naps.n)
  end)

  it("a fast call after a slow one starts again at short naps", function()
    local d, naps = counting()
    local kf = fixture.client(sb, { driver = d })
    sb:fault { method = "GET", path = STATUS, times = 1, delay_ms = 300 }
    assert(kf:status())
    naps.n, naps.total = 0, 0
    assert(kf:status())
    kf:close()
    assert.is_true(naps.total < 0.05, "slept " .. naps.total .. " s on a fast call")
  end)

  it("a fast call made while a slow one has waited long naps briefly: its sending starts over", function()
    -- A host in miniature: the driver's sleep yields to a loop that resumes
    -- each coroutine when its nap is over, as HAProxy and nginx do; two
    -- host coroutines share the client.
    local naps = {}
    local d = driver.polling { name = "mini-host", sleep = function(seconds)
      local co = coroutine.running()
      naps[co] = naps[co] or {}
      table.insert(naps[co], seconds)
      coroutine.yield(core.now() + seconds)
    end }
    local kf = fixture.client(sb, { driver = d })
    sb:fault { method = "GET", path = STATUS, times = 1, delay_ms = 1000 }
    local slow = coroutine.create(function() return kf:status() end)
    local fast = coroutine.create(function() return kf:status() end)
    local wake, results, t0, fast_started = { [slow] = 0 }, {}, core.now(), false
    while next(wake) do
      local co, at
      for c, t in pairs(wake) do if not at or t < at then co, at = c, t end end
      if not fast_started and at > t0 + 0.5 then   -- the slow call has waited half a second
        fast_started, co, at = true, fast, 0
      end
      if at > core.now() then core.sleep(at - core.now()) end
      local ok, value = coroutine.resume(co)
      assert(ok, value)
      if coroutine.status(co) == "dead" then wake[co], results[co] = nil, value else wake[co] = value end
    end
    kf:close()
    assert.is_table(results[slow])
    assert.is_table(results[fast])
    local fast_naps, total = naps[fast] or { 0 }, 0
    for _, seconds in ipairs(fast_naps) do total = total + seconds end
    assert.is_true(fast_naps[1] <= 0.002, "the fast call's first nap: " .. fast_naps[1] .. " s")
    assert.is_true(total < 0.05, "the fast call napped " .. total .. " s")
  end)

  it("kf:parallel, retry backoff and sleeps go through it", function()
    local d, naps = counting()
    local kf = fixture.client(sb, { retries = 1 })
    kf.http:set_driver(d)
    sb:fault { method = "GET", path = STATUS, times = 1, status = 503, retry_after = 1 }
    assert(kf:status())
    assert.is_true(naps.total >= 1, "the Retry-After sleep was the driver's")
    naps.n = 0
    local fns = {}
    for i = 1, 6 do fns[i] = function(k) return k:status() end end
    local values = kf:parallel(fns, { concurrency = 3, progress = false })
    for i = 1, 6 do assert.is_table(values[i]) end
    kf:close()
  end)

  it("kf:set_driver and kf:sleep are the public way in (what the adapters and the fleet use)", function()
    local d, naps = counting()
    local kf = fixture.client(sb)
    assert.are.equal(kf, kf:set_driver(d))
    kf:sleep(0.02)
    assert.are.equal(1, naps.n, "kf:sleep napped through the driver")
    assert.is_true(math.abs(naps.total - 0.02) < 1e-9)
    assert.has_error(function() kf:sleep(-1) end, "kf:sleep: seconds must be 0 or more")
    assert.has_error(function() kf:sleep("1") end, "kf:sleep: seconds must be a number, not string")
    assert.has_error(function() kf:set_driver({ poll = print }) end, "set_driver: driver.active must be a function")
    kf:close()
  end)

  it("inside kf:parallel, kf:sleep lets the other functions run, and the client's driver is back after", function()
    local d, naps = counting()
    local kf = fixture.client(sb, { driver = d })
    local fns = {}
    for i = 1, 4 do fns[i] = function(k) k:sleep(0.3) return k:status() end end
    local t0 = core.now()
    local values, errs = kf:parallel(fns, { concurrency = 4, progress = false })
    local elapsed = core.now() - t0
    for i = 1, 4 do assert.is_table(values[i], tostring(errs[i])) end
    -- four sleeps of 0.3 s at once, not one after another; the run waited
    -- for them through the client's driver
    assert.is_true(elapsed < 0.9, "took " .. elapsed .. " s")
    assert.is_true(naps.total >= 0.25, "napped " .. naps.total .. " s")
    -- the run's driver is gone: a sleep outside is the client's again
    local before = naps.n
    kf:sleep(0.01)
    assert.are.equal(before + 1, naps.n)
    kf:close()
  end)

  it("blocks where the host cannot yield", function()
    local d, naps = counting(function() return false end)
    local kf = fixture.client(sb, { driver = d })
    assert(kf:status())
    kf:close()
    assert.are.equal(0, naps.n)
  end)

  it("rejects what is not a driver", function()
    assert.has_error(function() fixture.client(sb, { driver = { poll = print } }) end,
      "set_driver: driver.active must be a function")
    assert.has_error(function() fixture.client(sb, { driver = 5 }) end)
  end)
end)
