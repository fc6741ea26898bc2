-- Management jobs seen from outside: GET /OrchestratorJobs/JobHistory, the
-- broken.sandbox.local store whose jobs fail, inventories after Add/Remove,
-- and API version 2 enrollment with Stores.
local sandbox = require "keyfactor.sandbox"
local fixture = require "support.fixture"

local function enc(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

describe("sandbox job history", function()
  local sb, by_machine = nil, {}
  local JOB_DELAY = 0.1

  lazy_setup(function()
    sb = sandbox.start{ port = 0, job_delay = JOB_DELAY }
    local _, stores = sb:http("GET", "/CertificateStores", { query = "certificateStoreQuery.returnLimit=100" })
    for _, st in ipairs(stores) do by_machine[st.ClientMachine] = st end
  end)
  lazy_teardown(function() if sb then sb:stop() end end)

  local function enroll(cn)
    local _, body = sb:http("POST", "/Enrollment/PFX", { headers = { ["x-certificateformat"] = "STORE" },
      body = { Template = "WebServer", Subject = "CN=" .. cn } })
    return math.tointeger(body.CertificateInformation.KeyfactorId)
  end

  local function history(q, extra)
    local query = "pq.queryString=" .. enc(q) .. (extra and "&" .. extra or "")
    local status, body = sb:http("GET", "/OrchestratorJobs/JobHistory", { query = query })
    assert.equals(200, status)
    return body
  end

  local function wait_for(fn) return fixture.poll(fn, 5, 0.05) end

  it("records every finished job; those on broken.sandbox.local fail with a message", function()
    local id = enroll("history.example.com")
    local broken, good = by_machine["broken.sandbox.local"], by_machine["web01.sandbox.local"]
    assert.equals("Web", broken.ContainerName)
    assert.equals(101, broken.CertStoreType)
    local _, answer = sb:http("POST", "/Enrollment/PFX/Deploy", { body = { CertificateId = id, Password = "pw",
      Stores = { { StoreId = good.Id }, { StoreId = broken.Id } } } })
    -- the job is created: it is the job that fails, later
    assert.same({ good.Id, broken.Id }, answer.SuccessfulStores)
    assert.same({}, history('CertStoreId -eq "' .. broken.Id .. '"'))
    local failed = wait_for(function()
      local h = history('ClientMachine -eq "broken.sandbox.local" AND Result -eq 3')
      return #h > 0 and h
    end)
    assert.truthy(failed, "no failed job in the history")
    assert.equals(3, failed[1].Result)
    assert.equals("/etc/ssl/broken.pem", failed[1].StorePath)
    assert.matches("broken.sandbox.local", failed[1].Message)
    assert.matches("^%x+%-%x+%-%x+%-%x+%-%x+$", failed[1].JobId)
    local ok = history('CertStoreId -eq "' .. good.Id .. '"')
    assert.equals(1, ok[1].Result)
    assert.equals("", ok[1].Message)
    assert.is_true(ok[1].Schedule.Immediate)
    -- the failed job changed nothing: the certificate is only in the good store
    local _, cert = sb:http("GET", "/Certificates/" .. id, { query = "includeLocations=true" })
    assert.equals(1, #cert.Locations)
    assert.equals(good.Id, cert.Locations[1].CertStoreId)
  end)

  it("pages and sorts the history", function()
    local id = enroll("paging.example.com")
    for _, m in ipairs{ "web02.sandbox.local", "web03.sandbox.local", "app01.sandbox.local" } do
      sb:http("POST", "/Enrollment/PFX/Deploy", { body = { CertificateId = id, Password = "pw",
        Stores = { { StoreId = by_machine[m].Id } } } })
    end
    wait_for(function() return #history("CertificateId -eq " .. id) == 3 end)
    local page = history("CertificateId -eq " .. id, "pq.returnLimit=2&pq.pageReturned=2")
    assert.equals(1, #page)
    local down = history("CertificateId -eq " .. id, "pq.sortField=JobHistoryId&pq.sortAscending=1")
    assert.is_true(down[1].JobHistoryId > down[3].JobHistoryId)
    assert.equals(400, (sb:http("GET", "/OrchestratorJobs/JobHistory",
      { query = "pq.queryString=" .. enc("Nope -eq 1") })))
  end)

  it("changes inventories with Add and Remove jobs, and pages the inventory", function()
    local store = by_machine["app02.sandbox.local"]
    local ids = {}
    for i = 1, 3 do ids[i] = enroll("inventory" .. i .. ".example.com") end
    for i, id in ipairs(ids) do
      local status, jobs = sb:http("POST", "/CertificateStores/Certificates/Add", { body = { CertificateId = id,
        Schedule = { Immediate = true },
        CertificateStores = { { CertificateStoreId = store.Id, Alias = "entry" .. i } } } })
      assert.equals(200, status)
      assert.matches("^%x+%-%x+%-%x+%-%x+%-%x+$", jobs[1])
    end
    local inventory = wait_for(function()
      local _, inv = sb:http("GET", "/CertificateStores/" .. store.Id .. "/Inventory")
      return #inv == 3 and inv
    end)
    assert.truthy(inventory)
    assert.equals("entry1", inventory[1].Name)
    assert.equals(ids[1], inventory[1].Certificates[1].Id)
    local _, page = sb:http("GET", "/CertificateStores/" .. store.Id .. "/Inventory",
      { query = "query.returnLimit=2&query.pageReturned=2" })
    assert.equals(1, #page)
    assert.equals("entry3", page[1].Name)
    local _, sorted = sb:http("GET", "/CertificateStores/" .. store.Id .. "/Inventory",
      { query = "query.sortField=Name&query.sortAscending=1" })
    assert.same({ "entry3", "entry2", "entry1" }, { sorted[1].Name, sorted[2].Name, sorted[3].Name })
    sb:http("POST", "/CertificateStores/Certificates/Remove", { body = { Schedule = { Immediate = true },
      CertificateStores = { { CertificateStoreId = store.Id, Alias = "entry2" } } } })
    local after = wait_for(function()
      local _, inv = sb:http("GET", "/CertificateStores/" .. store.Id .. "/Inventory")
      return #inv == 2 and inv
    end)
    assert.same({ "entry1", "entry3" }, { after[1].Name, after[2].Name })
    local _, c2 = sb:http("GET", "/Certificates/" .. ids[2], { query = "includeLocations=true" })
    assert.same({}, c2.Locations)
  end)

  describe("API version 2 enrollment with Stores", function()
    local function enroll_v2(body, format)
      return sb:http("POST", "/Enrollment/PFX", { body = body, headers = {
        ["x-certificateformat"] = format or "PFX", ["x-keyfactor-api-version"] = "2" } })
    end

    it("enrolls and creates one job per store, answering SuccessfulStores", function()
      local good, p12, broken = by_machine["web03.sandbox.local"], by_machine["app03.sandbox.local"],
        by_machine["broken.sandbox.local"]
      local unknown = "00000000-0000-4000-8000-00000000beef"
      local status, answer = enroll_v2{ Template = "WebServer", Subject = "CN=v2.example.com", Password = "V2-pw",
        Stores = { { StoreId = good.Id, Alias = "v2", Overwrite = true }, { StoreId = p12.Id },
          { StoreId = unknown }, { StoreId = broken.Id } } }
      assert.equals(200, status)
      assert.same({ good.Id, p12.Id, broken.Id }, answer.SuccessfulStores)
      assert.is_nil(answer.FailedStores)
      local info = answer.CertificateInformation
      assert.equals("00000000-0000-0000-0000-000000000000", info.WorkflowInstanceId)
      local id = math.tointeger(info.KeyfactorId)
      local _, cert = fixture.open_pkcs12(info.Pkcs12Blob, "V2-pw")
      assert.equals(info.Thumbprint, cert:digest("sha1", "x"):upper())
      local locations = wait_for(function()
        local _, c = sb:http("GET", "/Certificates/" .. id, { query = "includeLocations=true" })
        return #c.Locations == 2 and c.Locations
      end)
      assert.truthy(locations, "the certificate did not reach both stores")
      local aliases = {}
      for _, l in ipairs(locations) do aliases[l.CertStoreId] = l.Alias end
      assert.equals("v2", aliases[good.Id])
      assert.equals(info.Thumbprint, aliases[p12.Id])
    end)

    it("answers the v2 shape without Stores and for pending requests", function()
      local _, plain = enroll_v2({ Template = "WebServer", Subject = "CN=v2plain.example.com" }, "STORE")
      assert.same({}, plain.SuccessfulStores)
      assert.equals("ISSUED", plain.CertificateInformation.RequestDisposition)
      local _, pending = enroll_v2{ Template = "WebServerApproval", Subject = "CN=v2pending.example.com",
        Password = "pw", Stores = { { StoreId = by_machine["web01.sandbox.local"].Id } } }
      assert.equals("PENDING", pending.CertificateInformation.RequestDisposition)
      assert.same({}, pending.SuccessfulStores)
      -- v1 ignores Stores and keeps its own answer
      local _, v1 = sb:http("POST", "/Enrollment/PFX", { headers = { ["x-certificateformat"] = "PFX" },
        body = { Template = "WebServer", Subject = "CN=v1.example.com", Password = "pw" } })
      assert.is_nil(v1.SuccessfulStores)
      local status, bad = enroll_v2{ Template = "WebServer", Subject = "CN=bad.example.com", Password = "pw",
        Stores = { { Alias = "x" } } }
      assert.equals(400, status)
      assert.matches("Stores[1].StoreId", bad.Message, 1, true)
    end)
  end)
end)
