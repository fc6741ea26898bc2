-- kf:parallel and the scheduler: order, partial failures, the concurrency
-- bound, no duplicate POSTs, slow calls, wait_deployed over many
-- certificates, page prefetch, and cqueues embedding.
local fixture = require "support.fixture"
local errors = require "keyfactor.errors"

-- Most transfers the sandbox saw in flight at once, among `requests`.
local function max_in_flight(requests)
  local events = {}
  for _, r in ipairs(requests) do
    events[#events + 1] = { r.started, 1 }
    events[#events + 1] = { r.finished, -1 }
  end
  table.sort(events, function(a, b)
    if a[1] == b[1] then return a[2] < b[2] end
    return a[1] < b[1]
  end)
  local now, most = 0, 0
  for _, e in ipairs(events) do
    now = now + e[2]
    most = math.max(most, now)
  end
  return most
end

describe("kf:parallel", function()
  local sb, kf, ids

  fixture.live(function(s, k)
    sb, kf = s, k
    ids = {}
    for i = 1, 3 do ids[i] = fixture.enroll(kf, "par" .. i .. ".example.com").CertificateInformation.KeyfactorId end
  end)

  before_each(function() sb:clear_faults() end)

  it("returns values in input order, whatever order the transfers finish in", function()
    -- the first certificate answers last
    sb:fault { method = "GET", path = "/KeyfactorAPI/Certificates/" .. ids[1], times = 1, delay_ms = 300 }
    local fns = {}
    for i = 1, 3 do fns[i] = function(client) return client:certificate(ids[i]) end end
    local values, errs = kf:parallel(fns, { progress = false })
    for i = 1, 3 do
      assert.is_nil(errs[i])
      assert.are.equal(ids[i], values[i].Id)
    end
    local log = fixture.requests(sb, "GET", "/Certificates/" .. ids[1])
    local other = fixture.requests(sb, "GET", "/Certificates/" .. ids[2])
    assert.is_true(log[#log].finished > other[#other].finished)
  end)

  it("keeps every result when some functions fail or raise", function()
    local values, errs = kf:parallel({
      function(client) return client:certificate(ids[1]) end,
      function(client) return client:certificate(999999) end,
      function() error("boom in task 3") end,
      function(client) return client:certificate(ids[2]) end,
      function() return nil, "plain failure" end,
    }, { progress = false })
    assert.are.equal(ids[1], values[1].Id)
    assert.is_nil(values[2])
    assert.is_true(errors.is(errs[2]))
    assert.are.equal(404, errs[2].status)
    assert.matches("boom in task 3", tostring(errs[3]))
    assert.are.equal(ids[2], values[4].Id)
    assert.is_nil(errs[4])
    assert.are.equal("plain failure", errs[5])
  end)

  it("never has more transfers open than the concurrency limit", function()
    local fresh = fixture.enroll(kf, "bound.example.com").CertificateInformation.KeyfactorId
    local path = "/KeyfactorAPI/Certificates/" .. fresh
    sb:fault { method = "GET", path = path, times = 24, delay_ms = 60 }
    local fns = {}
    for i = 1, 24 do fns[i] = function(client) return client:certificate(fresh) end end
    local values = kf:parallel(fns, { concurrency = 4, progress = false })
    for i = 1, 24 do assert.are.equal(fresh, values[i].Id) end
    local seen = fixture.requests(sb, "GET", "/Certificates/" .. fresh)
    assert.are.equal(24, #seen)
    local most = max_in_flight(seen)
    assert.is_true(most <= 4, "in flight at once: " .. most)
    assert.is_true(most >= 2, "no concurrency at all: " .. most)
  end)

  it("sends each POST exactly once", function()
    local before = #fixture.requests(sb, "POST", "/Enrollment/PFX/Deploy")
    local stores = fixture.store_ids(kf, fixture.WEB)
    local cert = fixture.enroll(kf, "once.example.com", { format = "STORE", Password = nil })
    local fns = {}
    for i = 1, 12 do
      fns[i] = function(client)
        return client:deploy { CertificateId = cert.CertificateInformation.KeyfactorId,
          Stores = { { StoreId = stores[(i - 1) % #stores + 1] } }, Password = "entry-pass" }
      end
    end
    local values, errs = kf:parallel(fns, { concurrency = 5, progress = false })
    for i = 1, 12 do
      assert.is_nil(errs[i])
      assert.are.equal(1, #values[i].SuccessfulStores)
    end
    assert.are.equal(before + 12, #fixture.requests(sb, "POST", "/Enrollment/PFX/Deploy"))
  end)

  it("times a slow call out without holding up the others", function()
    local impatient = fixture.client(sb, { timeout = 1, retries = 0 })
    sb:fault { method = "GET", path = "/KeyfactorAPI/Certificates/" .. ids[3], times = 1, delay_ms = 3000 }
    local fns = {}
    for i = 1, 6 do
      local id = i == 1 and ids[3] or ids[(i % 2) + 1]
      fns[i] = function(client) return client:certificate(id) end
    end
    local values, errs = impatient:parallel(fns, { progress = false })
    assert.is_nil(values[1])
    assert.are.equal("timeout", errs[1].kind)
    for i = 2, 6 do
      assert.is_nil(errs[i])
      assert.is_table(values[i])
    end
    impatient:close()
  end)

  it("reports progress to a function", function()
    local calls = {}
    kf:parallel({
      function(client) return client:certificate(ids[1]) end,
      function(client) return client:certificate(ids[2]) end,
    }, { progress = function(done, total, failed) calls[#calls + 1] = { done, total, failed } end })
    assert.are.same({ { 1, 2, 0 }, { 2, 2, 0 } }, calls)
  end)

  it("refuses to nest", function()
    local _, errs = kf:parallel({ function(client) return client:parallel({}) end }, { progress = false })
    assert.matches("kf:parallel: cannot be nested", tostring(errs[1]))
  end)

  it("waits for several certificates at once", function()
    local stores = fixture.store_ids(kf, fixture.WEB, "PKCS12")
    local certs, map = {}, {}
    for i = 1, 3 do
      local c = fixture.enroll(kf, "fleet" .. i .. ".example.com", { format = "STORE", Password = nil })
      local id = c.CertificateInformation.KeyfactorId
      certs[i] = id
      map[id] = { stores[i] }
      assert(kf:deploy { CertificateId = id, Stores = { { StoreId = stores[i] } } })
    end
    assert.is_true(kf:wait_deployed(certs, map, { interval = 0.05, timeout = 10 }))
    -- a store that never gets certs[1]: the error names what is missing
    local ok, err = kf:wait_deployed(certs, { stores[1] }, { interval = 0.05, timeout = 0.3 })
    assert.is_nil(ok)
    assert.are.equal("timeout", err.kind)
    assert.is_nil(err.missing[certs[1]])
    assert.are.same({ stores[1] }, err.missing[certs[2]])
  end)

  it("prefetches pages without changing what the iterator yields", function()
    for i = 1, 5 do fixture.enroll(kf, "page" .. i .. ".example.com") end
    local plain, ahead = {}, {}
    for c in kf:certificates { page_size = 2, sort = "Id" } do plain[#plain + 1] = c.Id end
    for c in kf:certificates { page_size = 2, sort = "Id", prefetch = true } do ahead[#ahead + 1] = c.Id end
    assert.is_true(#plain >= 5)
    assert.are.same(plain, ahead)
  end)

  -- The host runs other things while the scheduler naps (HAProxy, nginx):
  -- one of them closes the client.  The run ends with every unfinished call
  -- canceled (it used to raise "session is closed" out of kf:parallel).
  it("ends with canceled calls when the host closes the client while they wait", function()
    local core = require "keyfactor.core"
    local driver = require "keyfactor.driver"
    local closer
    local host = driver.polling { name = "host", sleep = function(seconds)
      core.sleep(seconds)
      if closer and core.now() >= closer.at then closer.kf:close() end
    end }
    local own = fixture.client(sb, { driver = host, retries = 0 })
    sb:fault { method = "GET", path = "/KeyfactorAPI/Status/Endpoints", times = 6, delay_ms = 2000 }
    local fns = {}
    for i = 1, 6 do fns[i] = function(k) return k:status() end end
    closer = { kf = own, at = core.now() + 0.3 }
    local t0 = core.now()
    local values, errs = own:parallel(fns, { concurrency = 3, progress = false })
    assert.is_true(core.now() - t0 < 1.5, "the run ended with the close")
    for i = 1, 6 do
      assert.is_nil(values[i])
      assert.are.equal("canceled", errs[i] and errs[i].kind, "call " .. i .. ": " .. tostring(errs[i]))
    end
  end)
end)

describe("keyfactor.cqueues", function()
  local cqueues = require "cqueues"
  local sb, kf

  lazy_setup(function()
    sb = fixture.sandbox()
    kf = require("keyfactor.cqueues").attach(fixture.client(sb))
  end)

  lazy_teardown(function()
    kf:close()
    sb:stop()
  end)

  it("lets the host loop run while a call is in flight", function()
    sb:fault { method = "GET", path = "/KeyfactorAPI/Status/Endpoints", times = 1, delay_ms = 400 }
    local loop = cqueues.new()
    local in_flight, ticks_during, result = false, 0, nil
    loop:wrap(function()
      in_flight = true
      result = kf:status()
      in_flight = false
    end)
    loop:wrap(function()
      for _ = 1, 200 do
        if in_flight then ticks_during = ticks_during + 1 end
        if result then break end
        cqueues.sleep(0.01)
      end
    end)
    assert(loop:loop())
    assert.is_table(result)
    assert.is_true(ticks_during >= 5, "host loop ticks during the call: " .. ticks_during)
  end)

  it("blocks as usual outside a cqueues coroutine", function()
    assert.is_table(kf:status())
  end)
end)
