-- Store types, containers, stores, inventories, and management jobs
-- (Deploy, Replace, Add, Remove) with their timing and permissions.
local sandbox = require "keyfactor.sandbox"

local function enc(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

local function sleep(s) os.execute("sleep " .. s) end

describe("sandbox stores", function()
  local sb
  local JOB_DELAY = 0.3
  local pem_web, pem_web2, p12_web, pem_restricted, p12_restricted

  lazy_setup(function()
    sb = sandbox.start{ port = 0, job_delay = JOB_DELAY }
    local _, stores = sb:http("GET", "/CertificateStores", { query = "certificateStoreQuery.returnLimit=100" })
    for _, st in ipairs(stores) do
      if st.ContainerName == "Web" and st.CertStoreType == 101 then
        if pem_web then pem_web2 = pem_web2 or st.Id else pem_web = st.Id end
      elseif st.ContainerName == "Web" then p12_web = p12_web or st.Id
      elseif st.CertStoreType == 101 then pem_restricted = st.Id
      else p12_restricted = st.Id end
    end
  end)
  lazy_teardown(function() if sb then sb:stop() end end)

  local function enroll(format, cn)
    local _, body = sb:http("POST", "/Enrollment/PFX", { headers = { ["x-certificateformat"] = format },
      body = { Template = "WebServer", Subject = "CN=" .. (cn or "deploy.example.com"), Password = "p" } })
    return math.tointeger(body.CertificateInformation.KeyfactorId),
      math.tointeger(body.CertificateInformation.KeyfactorRequestId)
  end

  local function locations(id)
    local _, c = sb:http("GET", string.format("/Certificates/%d", id), { query = "includeLocations=true" })
    local out = {}
    for _, l in ipairs(c.Locations) do out[l.CertStoreId] = l end
    return out, c
  end

  local function deploy(body, who)
    return sb:http("POST", "/Enrollment/PFX/Deploy", { body = body, auth = who })
  end

  describe("catalog", function()
    it("lists store types with integer enums and the real fields", function()
      local status, types = sb:http("GET", "/CertificateStoreTypes")
      assert.equals(200, status)
      assert.equals(2, #types)
      local pem = types[1]
      assert.equals("PEM", pem.ShortName)
      assert.equals(101, pem.StoreType)
      assert.is_true(pem.PasswordOptions.EntrySupported)
      assert.is_false(pem.PasswordOptions.StoreRequired)
      assert.equals(0, pem.PasswordOptions.Style)
      assert.equals("number", type(pem.PrivateKeyAllowed))
      assert.equals("number", type(pem.CustomAliasAllowed))
      assert.equals("number", type(pem.Properties[1].Type))
      assert.equals("table", type(pem.SupportedOperations))
      assert.is_false(types[2].PasswordOptions.EntrySupported)
      local _, one = sb:http("GET", "/CertificateStoreTypes/102")
      assert.equals("PKCS12", one.ShortName)
      local _, by_name = sb:http("GET", "/CertificateStoreTypes/Name/pem")
      assert.equals(1, #by_name)
      assert.equals(101, by_name[1].StoreType)
      assert.equals(404, (sb:http("GET", "/CertificateStoreTypes/999")))
      local _, paged = sb:http("GET", "/CertificateStoreTypes",
        { query = "cstquery.returnLimit=1&cstquery.pageReturned=2" })
      assert.equals("PKCS12", paged[1].ShortName)
    end)

    it("lists containers", function()
      local _, containers = sb:http("GET", "/CertificateStoreContainers")
      assert.equals("Web", containers[1].Name)
      assert.equals(7, containers[1].StoreCount)   -- with broken.sandbox.local
      assert.equals("Restricted", containers[2].Name)
      assert.equals(2, containers[2].StoreCount)
      local _, named = sb:http("GET", "/CertificateStoreContainers",
        { query = "pq.queryString=" .. enc('Name -eq "Restricted"') })
      assert.equals(2, named[1].Id)
      local _, one = sb:http("GET", "/CertificateStoreContainers/1")
      assert.equals("Web", one.Name)
      assert.equals(404, (sb:http("GET", "/CertificateStoreContainers/9")))
    end)

    it("lists and queries stores", function()
      local _, all = sb:http("GET", "/CertificateStores")
      assert.equals(9, #all)
      local st = all[1]
      assert.equals("string", type(st.Properties))
      assert.equals("table", type(st.InventorySchedule))
      assert.matches("^%x+%-%x+%-%x+%-%x+%-%x+$", st.Id)
      local q = 'ClientMachine -eq "' .. st.ClientMachine .. '" AND StorePath -eq "' .. st.StorePath .. '"'
      local _, found = sb:http("GET", "/CertificateStores", { query = "certificateStoreQuery.queryString=" .. enc(q) })
      assert.equals(1, #found)
      assert.equals(st.Id, found[1].Id)
      local _, restricted = sb:http("GET", "/CertificateStores",
        { query = "certificateStoreQuery.queryString=" .. enc("ContainerId -eq 2") })
      assert.equals(2, #restricted)
      local _, pems = sb:http("GET", "/CertificateStores",
        { query = "certificateStoreQuery.queryString=" .. enc("CertStoreType -eq 101") ..
          "&certificateStoreQuery.returnLimit=2&certificateStoreQuery.pageReturned=2" })
      assert.equals(2, #pems)
      local _, one = sb:http("GET", "/CertificateStores/" .. st.Id)
      assert.equals(st.Id, one.Id)
      assert.equals(404, (sb:http("GET", "/CertificateStores/00000000-0000-4000-8000-000000000000")))
      assert.equals(400, (sb:http("GET", "/CertificateStores/not-a-guid")))
    end)
  end)

  describe("deploy", function()
    it("creates jobs that show up in Locations and Inventory after the job delay", function()
      local id = enroll("STORE")
      local status, answer = deploy{ CertificateId = id, Password = "entry-pw",
        Stores = { { StoreId = pem_web, Alias = "web", Overwrite = true }, { StoreId = p12_web } } }
      assert.equals(200, status)
      assert.same({ pem_web, p12_web }, answer.SuccessfulStores)
      assert.same({}, answer.FailedStores)
      assert.same({}, (locations(id)))
      sleep(JOB_DELAY + 0.2)
      local locs, cert = locations(id)
      assert.equals("web", locs[pem_web].Alias)
      assert.equals(101, locs[pem_web].StoreType)
      assert.truthy(locs[p12_web])
      assert.equals(cert.Thumbprint, locs[p12_web].Alias)
      local _, inv = sb:http("GET", "/CertificateStores/" .. pem_web .. "/Inventory")
      local found = false
      for _, entry in ipairs(inv) do
        if entry.Name == "web" then
          found = entry.Certificates[1].Id == id and entry.Certificates[1].Thumbprint == cert.Thumbprint
        end
      end
      assert.is_true(found)
      local _, lonly = sb:http("GET", string.format("/Certificates/Locations/%d", id))
      assert.equals(2, lonly.Details[1].StoreCount + lonly.Details[2].StoreCount)
      local pem_group = lonly.Details[1].StoreType == "PEM" and lonly.Details[1] or lonly.Details[2]
      assert.equals(101, pem_group.StoreTypeId)
      assert.equals(pem_web, pem_group.Locations[1].StoreId)
    end)

    it("lists the stores it could not schedule in FailedStores", function()
      local id = enroll("STORE")
      local unknown = "00000000-0000-4000-8000-00000000beef"
      local _, answer = deploy({ CertificateId = id, Password = "pw",
        Stores = { { StoreId = pem_web }, { StoreId = pem_restricted }, { StoreId = unknown }, { StoreId = "junk" } } },
        "operator")
      assert.same({ pem_web }, answer.SuccessfulStores)
      assert.same({ pem_restricted, unknown, "junk" }, answer.FailedStores)
      local _, admin = deploy{ CertificateId = id, Password = "pw", Stores = { { StoreId = p12_restricted } } }
      assert.same({ p12_restricted }, admin.SuccessfulStores)
      -- PEM needs an entry password; PKCS12 does not
      local _, nopw = deploy{ CertificateId = id, Password = "", Stores = { { StoreId = pem_web2 },
        { StoreId = p12_web } } }
      assert.same({ p12_web }, nopw.SuccessfulStores)
      assert.same({ pem_web2 }, nopw.FailedStores)
      -- no key on the server: enrolled as PFX
      local pfx_id = enroll("PFX")
      local _, nokey = deploy{ CertificateId = pfx_id, Password = "pw", Stores = { { StoreId = p12_web } } }
      assert.same({ p12_web }, nokey.FailedStores)
    end)

    it("accepts the legacy StoreIds + StoreTypes, and Stores wins over them", function()
      local id = enroll("STORE", "legacy.example.com")
      local _, answer = deploy{ CertificateId = id, Password = "pw", StoreIds = { pem_web2, p12_web },
        StoreTypes = { { StoreTypeId = 101, Alias = "legacy-pem", Overwrite = true } } }
      assert.same({ pem_web2, p12_web }, answer.SuccessfulStores)
      sleep(JOB_DELAY + 0.2)
      assert.equals("legacy-pem", locations(id)[pem_web2].Alias)
      local _, both = deploy{ CertificateId = id, Password = "pw", StoreIds = { pem_web },
        Stores = { { StoreId = p12_restricted } } }
      assert.same({ p12_restricted }, both.SuccessfulStores)
    end)

    it("schedules future JobTime and runs past JobTime now", function()
      local id = enroll("STORE", "later.example.com")
      local future = os.date("!%Y-%m-%dT%H:%M:%S", os.time() + 2) .. ".000Z"
      local _, answer = deploy{ CertificateId = id, Password = "pw", JobTime = future,
        Stores = { { StoreId = p12_web } } }
      assert.same({ p12_web }, answer.SuccessfulStores)
      sleep(JOB_DELAY + 0.3)
      assert.is_nil(locations(id)[p12_web])
      sleep(2.5)
      assert.truthy(locations(id)[p12_web])
      local past = "2020-01-01T00:00:00.123456Z"
      local _, now = deploy{ CertificateId = id, Password = "pw", JobTime = past, Stores = { { StoreId = pem_web2 } } }
      assert.same({ pem_web2 }, now.SuccessfulStores)
      sleep(JOB_DELAY + 0.2)
      assert.truthy(locations(id)[pem_web2])
    end)

    it("validates the request", function()
      local id = enroll("STORE")
      local stores = { { StoreId = p12_web } }
      local cases = {
        { { Password = "pw", Stores = stores }, 400, "CertificateId" },
        { { CertificateId = id, Password = "pw" }, 400, "Stores" },
        { { CertificateId = id, Stores = stores }, 400, "Password" },
        { { CertificateId = id, Password = "pw", Stores = { {} } }, 400, "Stores[1].StoreId" },
        { { CertificateId = id, Password = "pw", Stores = stores, JobTime = "tomorrow" }, 400, "JobTime" },
        { { CertificateId = "1", Password = "pw", Stores = stores }, 400, "CertificateId" },
        { { CertificateId = 999999, Password = "pw", Stores = stores }, 404, "999999" },
        { { RequestId = 999999, Password = "pw", Stores = stores }, 404, "999999" },
      }
      for _, case in ipairs(cases) do
        local status, body = deploy(case[1])
        assert.equals(case[2], status)
        assert.matches(case[3], body.Message, 1, true)
      end
    end)

    it("deploys by RequestId for an issued certificate", function()
      local id, request_id = enroll("STORE", "byrequest.example.com")
      local _, answer = deploy{ RequestId = request_id, Password = "pw", Stores = { { StoreId = p12_web } } }
      assert.same({ p12_web }, answer.SuccessfulStores)
      sleep(JOB_DELAY + 0.2)
      assert.truthy(locations(id)[p12_web])
    end)
  end)

  describe("replace, add and remove", function()
    it("replaces a certificate wherever the old one is found", function()
      local old = enroll("STORE", "old.example.com")
      deploy{ CertificateId = old, Password = "pw", Stores = { { StoreId = pem_web, Alias = "svc",
        Overwrite = true } } }
      sleep(JOB_DELAY + 0.2)
      local new = enroll("STORE", "new.example.com")
      local status, answer = sb:http("POST", "/Enrollment/PFX/Replace",
        { body = { ExistingCertificateId = old, CertificateId = new, Password = "pw" } })
      assert.equals(200, status)
      assert.same({ pem_web }, answer.SuccessfulStores)
      sleep(JOB_DELAY + 0.2)
      assert.truthy(locations(new)[pem_web])
      assert.is_nil(locations(old)[pem_web])
    end)

    it("adds and removes certificates with store jobs", function()
      local id = enroll("STORE", "addremove.example.com")
      local status, job_ids = sb:http("POST", "/CertificateStores/Certificates/Add", { body = {
        CertificateId = id, Schedule = { Immediate = true },
        CertificateStores = { { CertificateStoreId = p12_web, Alias = "added", IncludePrivateKey = true } } } })
      assert.equals(200, status)
      assert.equals(1, #job_ids)
      sleep(JOB_DELAY + 0.2)
      assert.equals("added", locations(id)[p12_web].Alias)
      status = sb:http("POST", "/CertificateStores/Certificates/Remove", { body = {
        Schedule = { Immediate = true }, CertificateStores = { { CertificateStoreId = p12_web, Alias = "added" } } } })
      assert.equals(200, status)
      sleep(JOB_DELAY + 0.2)
      assert.is_nil(locations(id)[p12_web])
      assert.equals(400, (sb:http("POST", "/CertificateStores/Certificates/Add", { body = { CertificateId = id } })))
    end)
  end)
end)
