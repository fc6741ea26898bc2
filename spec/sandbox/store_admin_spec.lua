-- Store management (POST/PUT /CertificateStores, DELETE /CertificateStores/{id})
-- and the seeded agents (GET /Agents, /Agents/{id}).
local sandbox = require "keyfactor.sandbox"

local function enc(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

describe("sandbox store management and agents", function()
  local sb, agents

  lazy_setup(function()
    sb = sandbox.start{ port = 0, job_delay = 0.05 }
    agents = select(2, sb:http("GET", "/Agents", { query = "pq.returnLimit=100" }))
  end)
  lazy_teardown(function() if sb then sb:stop() end end)

  local function agent_of(machine)
    for _, a in ipairs(agents) do
      if a.ClientMachine == machine then return a end
    end
  end

  describe("agents", function()
    it("has one approved agent per store machine, each serving its stores", function()
      local _, stores = sb:http("GET", "/CertificateStores", { query = "certificateStoreQuery.returnLimit=100" })
      assert.equals(#stores, #agents)
      for _, st in ipairs(stores) do
        local a = agent_of(st.ClientMachine)
        assert.truthy(a, st.ClientMachine)
        assert.equals(a.AgentId, st.AgentId)
        assert.equals(2, a.Status)
      end
      assert.truthy(agent_of("broken.sandbox.local"))
    end)

    it("pages, queries and answers one agent", function()
      local _, page = sb:http("GET", "/Agents", { query = "pq.returnLimit=2&pq.pageReturned=2" })
      assert.equals(2, #page)
      assert.equals(agents[3].AgentId, page[1].AgentId)
      local _, found = sb:http("GET", "/Agents",
        { query = "pq.queryString=" .. enc('ClientMachine -eq "web02.sandbox.local"') })
      assert.equals(1, #found)
      local status, one = sb:http("GET", "/Agents/" .. found[1].AgentId:upper())
      assert.equals(200, status)
      assert.equals("web02.sandbox.local", one.ClientMachine)
      assert.equals(404, (sb:http("GET", "/Agents/00000000-0000-4000-8000-000000000000")))
      assert.equals(400, (sb:http("GET", "/Agents/web02")))
    end)
  end)

  it("approves, disapproves and resets agents; jobs of an unapproved agent's stores fail", function()
    local a = agent_of("app03.sandbox.local")
    local function status_of() return select(2, sb:http("GET", "/Agents/" .. a.AgentId)).Status end
    local s1, _, _, raw = sb:http("POST", "/Agents/Disapprove", { body = '["' .. a.AgentId .. '"]' })
    assert.equals(204, s1)
    assert.equals("", raw)
    assert.equals(3, status_of())
    local _, enrolled = sb:http("POST", "/Enrollment/PFX", { headers = { ["x-certificateformat"] = "STORE" },
      body = { Template = "WebServer", Subject = "CN=agent.example.com" } })
    local store
    for _, st in ipairs(select(2, sb:http("GET", "/CertificateStores"))) do
      if st.AgentId == a.AgentId then store = st.Id end
    end
    sb:http("POST", "/Enrollment/PFX/Deploy", { body = { CertificateId = enrolled.CertificateInformation.KeyfactorId,
      Password = "pw", Stores = { { StoreId = store } } } })
    os.execute("sleep 0.3")
    local _, history = sb:http("GET", "/OrchestratorJobs/JobHistory",
      { query = "pq.queryString=" .. enc('CertStoreId -eq "' .. store .. '"') })
    assert.equals(3, history[1].Result)
    assert.matches("not approved", history[1].Message)
    assert.equals(204, (sb:http("POST", "/Agents/" .. a.AgentId .. "/Reset")))
    assert.equals(1, status_of())
    assert.equals(204, (sb:http("POST", "/Agents/Approve", { body = { a.AgentId } })))
    assert.equals(2, status_of())
    -- every id is checked before any changes
    local bad = sb:http("POST", "/Agents/Disapprove",
      { body = '["' .. a.AgentId .. '", "00000000-0000-4000-8000-000000000000"]' })
    assert.equals(404, bad)
    assert.equals(2, status_of())
    assert.equals(400, (sb:http("POST", "/Agents/Approve", { body = '{"' .. a.AgentId .. '":1}' })))
    sb:http("POST", "/Agents/Reset", { body = { a.AgentId } })
    assert.equals(1, status_of())
    sb:http("POST", "/Agents/Approve", { body = { a.AgentId } })
  end)

  it("creates and deletes store types", function()
    local status, t = sb:http("POST", "/CertificateStoreTypes", { body = { Name = "Java Keystore", ShortName = "JKS",
      PasswordOptions = { EntrySupported = false, StoreRequired = true, Style = 0 },
      Properties = { { Name = "ProviderName", DisplayName = "Provider", Type = 0, DependsOn = "", DefaultValue = "",
        Required = false } } } })
    assert.equals(200, status)
    assert.equals(103, t.StoreType)
    assert.equals(103, t.Properties[1].StoreTypeId)
    assert.is_true(t.PasswordOptions.StoreRequired)
    assert.equals("JKS", select(2, sb:http("GET", "/CertificateStoreTypes/103")).ShortName)
    assert.equals(103, select(2, sb:http("GET", "/CertificateStoreTypes/Name/jks"))[1].StoreType)
    assert.equals(3, #select(2, sb:http("GET", "/CertificateStoreTypes")))
    assert.equals(400, (sb:http("POST", "/CertificateStoreTypes", { body = { Name = "Again", ShortName = "jks" } })))
    assert.equals(400, (sb:http("POST", "/CertificateStoreTypes", { body = { Name = "No short name" } })))
    assert.equals(400, (sb:http("POST", "/CertificateStoreTypes", { body = { Name = "x", ShortName = "X",
      PrivateKeyAllowed = 7 } })))
    -- a type in use cannot go; nor can a built-in one
    local _, st = sb:http("POST", "/CertificateStores", { body = { ClientMachine = "app01.sandbox.local",
      StorePath = "/opt/app/keystore.jks", CertStoreType = 103, AgentId = agent_of("app01.sandbox.local").AgentId } })
    local used_status, used = sb:http("DELETE", "/CertificateStoreTypes/103")
    assert.equals(400, used_status)
    assert.matches(st.Id, used.Message, 1, true)
    assert.equals(204, (sb:http("DELETE", "/CertificateStores/" .. st.Id)))
    assert.equals(204, (sb:http("DELETE", "/CertificateStoreTypes/103")))
    assert.equals(404, (sb:http("GET", "/CertificateStoreTypes/103")))
    assert.equals(400, (sb:http("DELETE", "/CertificateStoreTypes/102")))
  end)

  describe("stores", function()
    local function create(body, who)
      return sb:http("POST", "/CertificateStores", { body = body, auth = who })
    end

    local function new_store(extra)
      local body = { ContainerId = 1, ClientMachine = "web01.sandbox.local", StorePath = "/etc/ssl/new.pem",
        CertStoreType = 101, AgentId = agent_of("web01.sandbox.local").AgentId,
        Properties = '{"separatePrivateKey":{"value":"true"}}' }
      for k, v in pairs(extra or {}) do body[k] = v end
      return body
    end

    it("creates, updates and deletes a store", function()
      local status, st = create(new_store())
      assert.equals(200, status)
      assert.matches("^%x+%-%x+%-%x+%-%x+%-%x+$", st.Id)
      assert.equals("Web", st.ContainerName)
      assert.equals('{"separatePrivateKey":{"value":"true"}}', st.Properties)
      local _, fetched = sb:http("GET", "/CertificateStores/" .. st.Id)
      assert.equals("/etc/ssl/new.pem", fetched.StorePath)
      local _, web = sb:http("GET", "/CertificateStoreContainers/1")
      assert.equals(8, web.StoreCount)
      -- the same store twice is refused
      local dup_status, dup = create(new_store())
      assert.equals(400, dup_status)
      assert.matches("already exists", dup.Message)
      -- update: another container and agent; what identifies the store stays
      local ustatus, updated = sb:http("PUT", "/CertificateStores", { body = { Id = st.Id, ContainerId = 2,
        AgentId = agent_of("vault01.sandbox.local").AgentId, CreateIfMissing = true } })
      assert.equals(200, ustatus)
      assert.equals("Restricted", updated.ContainerName)
      assert.is_true(updated.CreateIfMissing)
      assert.equals(agent_of("vault01.sandbox.local").AgentId, updated.AgentId)
      assert.equals(400, (sb:http("PUT", "/CertificateStores", { body = { Id = st.Id, StorePath = "/elsewhere" } })))
      -- the operator may not manage stores of Restricted
      assert.equals(403, (sb:http("DELETE", "/CertificateStores/" .. st.Id, { auth = "operator" })))
      local dstatus, _, _, raw = sb:http("DELETE", "/CertificateStores/" .. st.Id)
      assert.equals(204, dstatus)
      assert.equals("", raw)
      assert.equals(404, (sb:http("GET", "/CertificateStores/" .. st.Id)))
      assert.equals(404, (sb:http("DELETE", "/CertificateStores/" .. st.Id)))
    end)

    it("fails the jobs of a store deleted before they ran", function()
      local _, st = create(new_store{ StorePath = "/etc/ssl/doomed.pem" })
      local _, enrolled = sb:http("POST", "/Enrollment/PFX", { headers = { ["x-certificateformat"] = "STORE" },
        body = { Template = "WebServer", Subject = "CN=doomed.example.com" } })
      local id = math.tointeger(enrolled.CertificateInformation.KeyfactorId)
      local _, deployed = sb:http("POST", "/Enrollment/PFX/Deploy", { body = { CertificateId = id, Password = "pw",
        JobTime = os.date("!%Y-%m-%dT%H:%M:%SZ", os.time() + 1), Stores = { { StoreId = st.Id } } } })
      assert.same({ st.Id }, deployed.SuccessfulStores)
      assert.equals(204, (sb:http("DELETE", "/CertificateStores/" .. st.Id)))
      os.execute("sleep 1.3")
      local _, history = sb:http("GET", "/OrchestratorJobs/JobHistory",
        { query = "pq.queryString=" .. enc('CertStoreId -eq "' .. st.Id .. '"') })
      assert.equals(1, #history)
      assert.equals(3, history[1].Result)
      assert.matches("no longer exists", history[1].Message)
    end)

    it("validates container, store type, agent and Properties", function()
      local unknown_agent = "00000000-0000-4000-8000-00000000abcd"
      local cases = {
        { new_store{ ContainerId = 99 }, 400, "container 99" },
        { new_store{ CertStoreType = 999 }, 400, "store type 999" },
        { new_store{ AgentId = unknown_agent }, 400, unknown_agent },
        { new_store{ AgentId = "web01" }, 400, "AgentId" },
        { new_store{ Properties = { separatePrivateKey = { value = "true" } } }, 400, "Properties" },
        { new_store{ Properties = "not json" }, 400, "Properties" },
        { new_store{ Properties = "[1]" }, 400, "Properties" },
        { new_store{ ClientMachine = false }, 400, "ClientMachine" },
        { new_store{ CertStoreType = "101" }, 400, "CertStoreType" },
        { { ClientMachine = "x", CertStoreType = 101, AgentId = agents[1].AgentId }, 400, "StorePath" },
      }
      for _, case in ipairs(cases) do
        local status, body = create(case[1])
        assert.equals(case[2], status)
        assert.matches(case[3], body.Message, 1, true)
      end
      assert.equals(403, (create(new_store{ ContainerId = 2, StorePath = "/r.pem" }, "operator")))
      assert.equals(404, (sb:http("PUT", "/CertificateStores",
        { body = { Id = "00000000-0000-4000-8000-000000000000" } })))
    end)
  end)

  it("keeps created stores, metadata and the job history in --data DIR across restarts", function()
    local dir = os.tmpname()
    os.remove(dir)
    local a = sandbox.start{ port = 0, data = dir, job_delay = 0 }
    local _, st = a:http("POST", "/CertificateStores", { body = { ClientMachine = "web02.sandbox.local",
      StorePath = "/etc/ssl/kept.pem", CertStoreType = 101, AgentId = agent_of("web02.sandbox.local").AgentId,
      InventorySchedule = { Interval = { Minutes = 5 } } } })
    local _, enrolled = a:http("POST", "/Enrollment/PFX", { headers = { ["x-certificateformat"] = "STORE" },
      body = { Template = "WebServer", Subject = "CN=kept.example.com" } })
    local id = math.tointeger(enrolled.CertificateInformation.KeyfactorId)
    a:http("PUT", "/Certificates/Metadata", { body = { Id = id, Metadata = { Owner = "kept" } } })
    a:http("POST", "/Enrollment/PFX/Deploy", { body = { CertificateId = id, Password = "pw",
      Stores = { { StoreId = st.Id } } } })
    os.execute("sleep 0.1")
    local _, before = a:http("GET", "/OrchestratorJobs/JobHistory")
    a:stop()
    local b = sandbox.start{ port = 0, data = dir }
    local status, kept = b:http("GET", "/CertificateStores/" .. st.Id)
    assert.equals(200, status)
    assert.equals(5, kept.InventorySchedule.Interval.Minutes)
    assert.is_nil(kept.ContainerId)
    local _, cert = b:http("GET", "/Certificates/" .. id, { query = "includeLocations=true" })
    assert.equals("kept", cert.Metadata.Owner)
    assert.equals(st.Id, cert.Locations[1].CertStoreId)
    local _, after = b:http("GET", "/OrchestratorJobs/JobHistory")
    assert.equals(1, #before)
    assert.same(before, after)
    b:stop()
    os.execute("rm -rf '" .. dir .. "'")
  end)
end)
