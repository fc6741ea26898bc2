-- Fidelity to Keyfactor Command 25's models (issue 22 item 8): the answers
-- of workflow instances, scheduled jobs, PAM providers, security roles and
-- identities, collections, recover and download, taken through the client
-- from a live sandbox, hold exactly the fields of command-25-models.md with
-- their types (spec/support/models.lua reads the document at test time).
local fixture = require "support.fixture"
local models = require "support.models"

local m, why = models.load()

describe("the checker of command-25-models.md", function()
  if not m then
    it("needs the reference document", function() pending(why) end)
    return
  end

  it("reads the models with their fields and types", function()
    local job = m.models.CSSCMSDataModelModelsOrchestratorJobsJob
    local names = {}
    for _, f in ipairs(job.fields) do names[#names + 1] = f.name .. " " .. f.type end
    assert.are.same({ "Id string (uuid)", "ClientMachine NullableString", "Target NullableString",
      "Schedule KeyfactorCommonSchedulingKeyfactorSchedule", "Requested NullableString", "JobType NullableString" },
      names)
    assert.is_true(m.models.PAMProviderCreateRequest.by_name.Name.required)
  end)

  it("finds a missing field, an extra one, a wrong type and a bad GUID", function()
    local problems = m:check({ Id = "not-a-guid", ClientMachine = 3, Target = require("cjson").null,
      Requested = "x", Extra = true }, "CSSCMSDataModelModelsOrchestratorJobsJob")
    table.sort(problems)
    assert.are.same({
      "CSSCMSDataModelModelsOrchestratorJobsJob.ClientMachine: String expected, not 3",
      "CSSCMSDataModelModelsOrchestratorJobsJob.Extra: not a field of CSSCMSDataModelModelsOrchestratorJobsJob",
      "CSSCMSDataModelModelsOrchestratorJobsJob.Id: string (uuid) expected, not \"not-a-guid\"",
      "CSSCMSDataModelModelsOrchestratorJobsJob.JobType: missing",
    }, problems)
  end)
end)

describe("sandbox answers against command-25-models.md", function()
  if not m then
    it("needs the reference document", function() pending(why) end)
    return
  end

  local sb, kf
  fixture.live(function(s, k) sb, kf = s, k end)

  local checked = {}
  local function conforms(value, model, what)
    local problems = m:check(value, model, what)
    assert.are.same({}, problems, what)
    checked[model] = (checked[model] or 0) + 1
    return value
  end
  local function each(iterator, model, what)
    local n = 0
    for item in iterator do
      n = n + 1
      conforms(item, model, what .. "[" .. n .. "]")
    end
    assert.is_true(n > 0, what .. " listed nothing")
  end

  it("workflow instances, waiting and settled", function()
    local r = assert(kf:enroll { Template = "WebServerApproval", Subject = "CN=" .. fixture.unique("model-wf"),
      Password = "pw-12345" })
    local request_id = r.CertificateInformation.KeyfactorRequestId
    local id
    for i in kf:workflow_instances() do
      conforms(i, "WorkflowsInstanceQueryResponse", "GET /Workflow/Instances")
      if i.ReferenceId == request_id then id = i.Id end
    end
    each(kf:workflow_instances { assigned_to_me = true }, "WorkflowsInstanceQueryResponse", "AssignedToMe")
    each(kf:workflow_instances { mine = true }, "WorkflowsInstanceQueryResponse", "My")
    local waiting = conforms(assert(kf:workflow_instance(id)), "WorkflowsInstanceResponse", "instance")
    for i, s in ipairs(waiting.Signals) do conforms(s, "WorkflowsAvailableSignalResponse", "Signals[" .. i .. "]") end
    assert(kf:signal(id, "RequireApproval.Approve", { Comment = "ok" }))
    conforms(assert(kf:workflow_instance(id)), "WorkflowsInstanceResponse", "settled instance")
  end)

  it("scheduled jobs, management and inventory", function()
    local cert = fixture.enroll(kf, fixture.unique("model-job") .. ".example.com").CertificateInformation.KeyfactorId
    local store
    for s in kf:stores { query = "ContainerId -eq 1" } do store = store or s end
    assert(kf:add_to_stores { CertificateId = cert, CertificateStores = { { CertificateStoreId = store.Id,
      Alias = "m", PfxPassword = "pw" } },
      Schedule = { ExactlyOnce = { Time = os.date("!%Y-%m-%dT%H:%M:%SZ", os.time() + 3600) } } })
    assert(kf:schedule_inventory { StoreIds = { store.Id }, Schedule = { Daily = { Time = "2030-01-01T02:00:00Z" } } })
    local kinds = {}
    for job in kf:scheduled_jobs() do
      conforms(job, "CSSCMSDataModelModelsOrchestratorJobsJob", "ScheduledJobs " .. job.JobType)
      conforms(job.Schedule, "KeyfactorCommonSchedulingKeyfactorSchedule", "Schedule")
      kinds[job.JobType] = true
    end
    assert.are.same({ Management = true, Inventory = true }, kinds)
  end)

  it("PAM providers (API version 1 and 2) and their types", function()
    local types = assert(kf:pam_provider_types())
    for i, t in ipairs(types) do conforms(t, "PAMProviderTypeResponse", "Types[" .. i .. "]") end
    local created = conforms(assert(kf:create_pam_provider { Name = "model-vault", ProviderType = { Id = types[1].Id },
      ProviderTypeParamValues = { { Value = "https://vault", ProviderTypeParam = { Name = "Host" } },
        { Value = "token", ProviderTypeParam = { Name = "Token" } },
        { Value = "kv/web", InstanceId = 7, ProviderTypeParam = { Name = "SecretPath" } } } }),
      "PAMProviderResponseLegacy", "POST /PamProviders")
    conforms(assert(kf:pam_provider(created.Id)), "PAMProviderResponseLegacy", "GET /PamProviders/{id}")
    each(kf:pam_providers(), "PAMProviderResponseLegacy", "GET /PamProviders")
    conforms(assert(kf:update_pam_provider { Id = created.Id, Name = "model-vault-2",
      ProviderType = { Id = types[1].Id } }), "PAMProviderResponseLegacy", "PUT /PamProviders")
    local v2 = assert(kf:request("GET", "/PamProviders/" .. created.Id,
      { headers = { ["x-keyfactor-api-version"] = "2" } }))
    conforms(v2, "PAMProviderResponse", "GET /PamProviders/{id} (v2)")
  end)

  it("security roles and identities", function()
    local who = conforms(assert(kf:create_security_identity { AccountName = "SANDBOX\\model-svc" }),
      "SecuritySecurityIdentitiesSecurityIdentityResponse", "POST /Security/Identities")
    local role = conforms(assert(kf:create_security_role { Name = "ModelRole", Description = "d",
      Permissions = { "Certificates:Read" }, Identities = { { AccountName = who.AccountName } } }),
      "SecurityLegacySecurityRolesSecurityRoleResponse", "POST /Security/Roles")
    conforms(assert(kf:security_role(role.Id)), "SecurityLegacySecurityRolesSecurityRoleResponse", "GET role")
    conforms(assert(kf:update_security_role { Id = role.Id, Name = "ModelRole", Description = "e" }),
      "SecurityLegacySecurityRolesSecurityRoleResponse", "PUT /Security/Roles")
    each(kf:security_roles(), "SecurityLegacySecurityRolesSecurityRoleResponse", "GET /Security/Roles")
    for identity in kf:security_identities() do
      conforms(identity, "SecuritySecurityIdentitiesSecurityIdentityResponse", "GET /Security/Identities")
      for i, r in ipairs(identity.Roles) do
        conforms(r, "SecurityLegacySecurityRolesSecurityRoleResponse", identity.AccountName .. ".Roles[" .. i .. "]")
      end
    end
  end)

  it("collections, and recover and download through one", function()
    local cn = fixture.unique("model-coll") .. ".example.com"
    local id = fixture.enroll(kf, cn, { format = "STORE" }).CertificateInformation.KeyfactorId
    local c = conforms(assert(kf:create_collection { Name = "Model " .. cn, Query = 'IssuedCN -eq "' .. cn .. '"' }),
      "CertificateCollectionsCertificateCollectionResponse", "POST /CertificateCollections")
    conforms(assert(kf:collection(c.Id)), "CertificateCollectionsCertificateCollectionResponse", "GET by id")
    conforms(assert(kf:collection(c.Name)), "CertificateCollectionsCertificateCollectionResponse", "GET by name")
    conforms(assert(kf:update_collection { Id = c.Id, Name = c.Name, ShowOnDashboard = true }),
      "CertificateCollectionsCertificateCollectionResponse", "PUT /CertificateCollections")
    each(kf:collections(), "CertificateCollectionsCertificateCollectionResponse", "GET /CertificateCollections")
    conforms(assert(kf:recover { CertID = id, Password = "pw-12345", collectionId = c.Id }),
      "CSSCMSDataModelModelsRecoveryResponse", "POST /Certificates/Recover")
    conforms(assert(kf:download { CertID = id, collectionId = c.Id }),
      "CSSCMSDataModelModelsCertificateDownloadResponse", "POST /Certificates/Download")
  end)

  it("covered every answer model of these calls", function()
    local names = {}
    for name in pairs(checked) do names[#names + 1] = name end
    table.sort(names)
    assert.are.same({ "CSSCMSDataModelModelsCertificateDownloadResponse", "CSSCMSDataModelModelsOrchestratorJobsJob",
      "CSSCMSDataModelModelsRecoveryResponse", "CertificateCollectionsCertificateCollectionResponse",
      "KeyfactorCommonSchedulingKeyfactorSchedule", "PAMProviderResponse", "PAMProviderResponseLegacy",
      "PAMProviderTypeResponse", "SecurityLegacySecurityRolesSecurityRoleResponse",
      "SecuritySecurityIdentitiesSecurityIdentityResponse", "WorkflowsAvailableSignalResponse",
      "WorkflowsInstanceQueryResponse", "WorkflowsInstanceResponse" }, names)
    assert.is_truthy(sb)
  end)
end)
