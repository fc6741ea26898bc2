-- Job control against a live sandbox: kf:scheduled_jobs, kf:unschedule_jobs,
-- kf:reschedule_jobs, kf:acknowledge_jobs and kf:schedule_inventory.
local fixture = require "support.fixture"

describe("job control", function()
  local sb, kf
  local web = {}   -- ClientMachine -> store

  fixture.live(function(s, k)
    sb, kf = s, k
    for store in kf:stores { query = "ContainerId -eq 1" } do web[store.ClientMachine] = store end
  end)

  local function scheduled(query)
    local out = {}
    for job in kf:scheduled_jobs { query = query, page_size = 5 } do out[#out + 1] = job end
    return out
  end

  local function in_an_hour() return os.date("!%Y-%m-%dT%H:%M:%SZ", os.time() + 3600) end

  local function history_of(cert_id)
    local out = {}
    for h in kf:job_history { query = "CertificateId -eq " .. cert_id } do out[#out + 1] = h end
    return out
  end

  it("lists a management job scheduled for later, and unscheduling it means it never runs", function()
    local cert = fixture.enroll(kf, fixture.unique("sched"))
    local id = cert.CertificateInformation.KeyfactorId
    local store = web["web01.sandbox.local"]
    local job_ids = assert(kf:add_to_stores { CertificateId = id, Schedule = { ExactlyOnce = { Time = in_an_hour() } },
      CertificateStores = { { CertificateStoreId = store.Id, Alias = "later", PfxPassword = "pw" } } })
    local jobs = scheduled('JobType -eq "Management" AND CertificateId -eq ' .. id)
    assert.are.equal(1, #jobs)
    local job = jobs[1]
    assert.are.equal(job_ids[1], job.Id)
    assert.are.equal("web01.sandbox.local", job.ClientMachine)
    assert.are.equal(store.StorePath, job.Target)
    assert.is_string(job.Schedule.ExactlyOnce.Time)
    assert.is_true(kf:unschedule_jobs { JobIds = { job.Id } })
    assert.are.same({}, scheduled('JobType -eq "Management" AND CertificateId -eq ' .. id))
    assert.are.same({}, history_of(id))          -- not run, not failed: gone
    local again, err = kf:unschedule_jobs { JobIds = { job.Id } }
    assert.is_nil(again)
    assert.are.equal(404, err.status)
    assert.matches("JobIds[1]", err.message, 1, true)
  end)

  it("unschedules by query", function()
    local id = fixture.enroll(kf, fixture.unique("sched-q")).CertificateInformation.KeyfactorId
    for _, machine in ipairs { "web02.sandbox.local", "web03.sandbox.local" } do
      assert(kf:add_to_stores { CertificateId = id, Schedule = { ExactlyOnce = { Time = in_an_hour() } },
        CertificateStores = { { CertificateStoreId = web[machine].Id, Alias = "q", PfxPassword = "pw" } } })
    end
    assert.are.equal(2, #scheduled("CertificateId -eq " .. id))
    assert.is_true(kf:unschedule_jobs { Query = "CertificateId -eq " .. id })
    assert.are.same({}, scheduled("CertificateId -eq " .. id))
  end)

  it("reschedules a failed job: once its orchestrator is approved again, the certificate lands", function()
    local store = web["app01.sandbox.local"]
    local id = fixture.enroll(kf, fixture.unique("resched"), { format = "STORE" }).CertificateInformation.KeyfactorId
    assert(kf:disapprove_agents { store.AgentId })
    assert(kf:deploy { CertificateId = id, Password = "entry-pw", Stores = { { StoreId = store.Id, Alias = "r" } } })
    local failed = fixture.poll(function() local h = history_of(id); return h[1] and h[1].Result == 3 and h[1] end)
    assert.truthy(failed, "the deployment did not fail")
    assert.matches("not approved", failed.Message, 1, true)
    assert(kf:approve_agents { store.AgentId })
    assert.is_true(kf:reschedule_jobs { JobAuditIds = { failed.JobHistoryId } })
    -- (wait_deployed would stop at the earlier failure: the locations tell)
    local landed = fixture.poll(function()
      local cert = assert(kf:certificate(id, { includeLocations = true }))
      return cert.Locations[1] and cert.Locations[1].CertStoreId == store.Id
    end)
    assert.is_true(landed)
    local results = {}
    for _, h in ipairs(history_of(id)) do results[#results + 1] = h.Result end
    assert.are.same({ 3, 1 }, results)           -- the failure stays on record; the rerun succeeded
  end)

  it("acknowledges finished jobs; an unknown job audit id is a 404", function()
    local id = fixture.enroll(kf, fixture.unique("ack"), { format = "STORE" }).CertificateInformation.KeyfactorId
    local broken = web["broken.sandbox.local"]
    assert(kf:deploy { CertificateId = id, Password = "entry-pw", Stores = { { StoreId = broken.Id } } })
    local failed = fixture.poll(function() return history_of(id)[1] end)
    assert.truthy(failed)
    assert.is_true(kf:acknowledge_jobs { JobAuditIds = { failed.JobHistoryId } })
    local acknowledged = {}
    for h in kf:job_history { query = "Acknowledged -eq true" } do acknowledged[h.JobHistoryId] = true end
    assert.is_true(acknowledged[failed.JobHistoryId])
    local none, err = kf:acknowledge_jobs { JobAuditIds = { 987654 } }
    assert.is_nil(none)
    assert.are.equal(404, err.status)
    assert.is_true(kf:acknowledge_jobs { Query = "Result -eq 3" })
  end)

  it("schedules a store's inventory; its inventory job can be unscheduled", function()
    local store = web["web03.sandbox.local"]
    assert.is_true(kf:schedule_inventory { StoreIds = { store.Id }, Schedule = { Interval = { Minutes = 30 } } })
    assert.are.equal(30, assert(kf:store(store.Id)).InventorySchedule.Interval.Minutes)
    local jobs = scheduled('JobType -eq "Inventory" AND ClientMachine -eq "web03.sandbox.local"')
    assert.are.equal(1, #jobs)
    assert.are.equal(30, jobs[1].Schedule.Interval.Minutes)
    assert.are.equal(store.CertStoreInventoryJobId, jobs[1].Id)
    assert.is_true(kf:unschedule_jobs { JobIds = { jobs[1].Id } })
    assert.are.same({}, scheduled('JobType -eq "Inventory" AND ClientMachine -eq "web03.sandbox.local"'))
    local _, err = kf:schedule_inventory { StoreIds = { "5a4db0c5-9999-4e5a-9d00-000000000099" },
      Schedule = { Immediate = true } }
    assert.are.equal(404, err.status)
  end)

  it("the operator may not unschedule jobs in a container it may not schedule in", function()
    local operator = fixture.operator(sb)
    local restricted
    for store in kf:stores { query = "ContainerId -eq 2" } do restricted = restricted or store end
    local jobs = scheduled('JobType -eq "Inventory" AND ClientMachine -eq "' .. restricted.ClientMachine .. '"')
    local _, err = operator:unschedule_jobs { JobIds = { jobs[1].Id } }
    assert.are.equal(403, err.status)
    operator:close()
  end)

  it("checks its arguments before sending, naming the field", function()
    local before = fixture.request_count(sb)
    fixture.raises(function() kf:reschedule_jobs {} end, "kf:reschedule_jobs", "JobAuditIds or Query")
    fixture.raises(function() kf:acknowledge_jobs { JobAuditIds = { "1" } } end, "kf:acknowledge_jobs",
      "JobAuditIds[1]", "integer")
    fixture.raises(function() kf:unschedule_jobs { JobIds = { "job-1" } } end, "kf:unschedule_jobs",
      "JobIds[1]", "GUID")
    fixture.raises(function() kf:schedule_inventory { StoreIds = { web["web01.sandbox.local"].Id } } end,
      "kf:schedule_inventory", "Schedule is required")
    fixture.raises(function() kf:scheduled_jobs { page_size = "5" } end, "kf:scheduled_jobs", "page_size")
    assert.are.equal(before, fixture.request_count(sb))
  end)
end)
