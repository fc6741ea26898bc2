-- The sandbox keeps what the automation calls create in its state: with
-- --data DIR across a restart (workflow instances, PAM providers, roles and
-- identities, collections, scheduled and unscheduled jobs), and a reset
-- brings the seed back (the role Administrator holding SANDBOX\admin).
local sandbox = require "keyfactor.sandbox"
local fixture = require "support.fixture"

describe("sandbox state of the automation calls", function()
  it("survives a restart with --data", function()
    local dir = os.tmpname()
    os.remove(dir)
    local sb = sandbox.start { port = 0, data = dir, job_delay = 0, lua = "lua5.4" }
    local kf = fixture.client(sb)
    local pending = assert(kf:enroll { Template = "WebServerApproval", Subject = "CN=persist-wf.example.com",
      Password = "pw-1" }).CertificateInformation.KeyfactorRequestId
    local vault = assert(kf:pam_provider_types())[1]
    local pam = assert(kf:create_pam_provider { Name = "persisted-vault", ProviderType = { Id = vault.Id },
      ProviderTypeParamValues = { { Value = "tok", ProviderTypeParam = { Name = "Token" } } } })
    assert(kf:create_security_identity { AccountName = "SANDBOX\\persisted" })
    local role = assert(kf:create_security_role { Name = "Persisted", Description = "kept",
      Identities = { { AccountName = "SANDBOX\\persisted" } } })
    local collection = assert(kf:create_collection { Name = "Persisted", Query = 'IssuedCN -contains "persist"' })
    local store = "5a4db0c5-0101-4e5a-9d00-000000000001"
    assert(kf:unschedule_jobs { Query = 'CertStoreId -eq "' .. store .. '"' })      -- its inventory job
    kf:close()
    sb:stop()

    local sb2 = sandbox.start { port = 0, data = dir, job_delay = 0, lua = "lua5.4" }
    local kf2 = fixture.client(sb2)
    local instance
    for i in kf2:workflow_instances() do
      if i.ReferenceId == pending then instance = i end
    end
    assert.is_not_nil(instance, "the workflow instance was lost")
    assert.is_true(kf2:signal(instance.Id, "RequireApproval.Approve"))
    assert.are.equal("persist-wf.example.com", assert(kf2:certificate { CertRequestId = pending }).IssuedCN)
    assert.are.equal("persisted-vault", assert(kf2:pam_provider(pam.Id)).Name)
    assert.are.equal("SANDBOX\\persisted", assert(kf2:security_role(role.Id)).Identities[1].AccountName)
    local ids = {}
    for cert in kf2:certificates { collectionId = collection.Id } do ids[#ids + 1] = cert.IssuedCN end
    assert.are.same({ "persist-wf.example.com" }, ids)
    for job in kf2:scheduled_jobs { query = 'CertStoreId -eq "' .. store .. '"' } do
      error("the unscheduled inventory job is back: " .. job.Id)
    end
    kf2:close()
    sb2:stop()
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("a reset brings the seed back", function()
    local sb = sandbox.start { port = 0, lua = "lua5.4" }
    local kf = fixture.client(sb)
    assert(kf:create_collection { Name = "Gone soon" })
    local admin = assert(kf:security_role(1))
    assert(kf:update_security_role { Id = 1, Name = "Renamed", Description = "x" })
    sb:reset()
    for c in kf:collections() do error("collection left after reset: " .. c.Name) end
    local seeded = assert(kf:security_role(1))
    assert.are.equal("Administrator", seeded.Name)
    assert.are.same(admin, seeded)
    kf:close()
    sb:stop()
  end)
end)
