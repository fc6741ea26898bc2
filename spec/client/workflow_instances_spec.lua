-- Approvals as Command 10+ runs them: kf:workflow_instances,
-- kf:workflow_instance and kf:signal against a live sandbox, where an
-- enrollment that needs approval starts an instance waiting at the step
-- RequireApproval for the signal Approve or Deny.
local fixture = require "support.fixture"

describe("workflow instances", function()
  local sb, kf

  fixture.live(function(s, k) sb, kf = s, k end)

  -- A PFX enrollment that waits for approval: its request id and CN.
  local function request(prefix, client)
    local cn = fixture.unique(prefix)
    local answer = assert((client or kf):enroll { Template = "WebServerApproval", Subject = "CN=" .. cn,
      Password = "pw-0001" })
    return answer.CertificateInformation.KeyfactorRequestId, cn
  end

  local function instance_of(request_id, opts)
    for instance in kf:workflow_instances(opts) do
      if instance.ReferenceId == request_id then return instance end
    end
  end

  it("an enrollment that needs approval starts an instance waiting for Approve or Deny", function()
    local id = request("wfi-start")
    local listed = assert(instance_of(id), "no instance with ReferenceId " .. id)
    assert.are.equal(3, listed.Status)                 -- Suspended: waiting for a signal
    assert.are.equal("RequireApproval", listed.CurrentStepUniqueName)
    assert.is_nil(listed.Signals)                      -- the list model has no Signals
    local instance = assert(kf:workflow_instance(listed.Id))
    local names = {}
    for _, s in ipairs(instance.Signals) do
      names[#names + 1] = s.SignalName
      assert.is_false(s.SignalReceived)
    end
    assert.are.same({ "Approve", "Deny" }, names)
    assert.are.equal(id, instance.InitialData.CertificateRequestId)
    assert.is_true(fixture.is_integer(instance.ReferenceId))
  end)

  it("the Approve signal issues the certificate, as approving the request does", function()
    local id, cn = request("wfi-approve")
    local instance = assert(instance_of(id, { assigned_to_me = true }))
    assert.is_true(kf:signal(instance.Id, instance.CurrentStepUniqueName .. ".Approve", { Comment = "fine" }))
    local after = assert(kf:workflow_instance(instance.Id))
    assert.are.equal(4, after.Status)                  -- Complete
    assert.are.equal("fine", after.CurrentStateData.Comment)
    assert.are.same({}, after.Signals)
    local request_state = assert(kf:workflow_request(id))
    assert.are.equal(2, request_state.State)           -- Issued
    local cert = assert(kf:certificate { CertRequestId = id })
    local x509 = fixture.x509("-----BEGIN CERTIFICATE-----\n" .. cert.ContentBytes .. "\n-----END CERTIFICATE-----\n")
    assert.are.equal(cn, fixture.cn(x509))
    fixture.assert_issued_by_ca(sb, x509)
    assert.is_nil(instance_of(id, { assigned_to_me = true }))   -- nothing left to do
  end)

  it("the Deny signal denies the request", function()
    local id = request("wfi-deny")
    local instance = assert(instance_of(id))
    assert.is_true(kf:signal(instance.Id, "RequireApproval.Deny", { Comment = "not ours" }))
    assert.are.equal(5, assert(kf:workflow_instance(instance.Id)).Status)   -- Rejected
    local denied
    for r in kf:denied() do if r.Id == id then denied = r end end
    assert.is_not_nil(denied)
    local cert, err = kf:certificate { CertRequestId = id }
    assert.is_nil(cert)
    assert.are.equal(404, err.status)
  end)

  it("approving through the legacy call completes the instance", function()
    local id = request("wfi-legacy")
    local instance = assert(instance_of(id))
    assert(kf:approve(id))
    assert.are.equal(4, assert(kf:workflow_instance(instance.Id)).Status)
    local none, err = kf:signal(instance.Id, "RequireApproval.Approve")
    assert.is_nil(none)
    assert.are.equal(400, err.status)
    assert.matches("not waiting for a signal", err.message, 1, true)
  end)

  it("a signal the step does not have, or for another step, is a 400 that says so", function()
    local id = request("wfi-bad")
    local instance = assert(instance_of(id))
    local _, err = kf:signal(instance.Id, "RequireApproval.Escalate")
    assert.are.equal(400, err.status)
    assert.matches("no signal 'Escalate'", err.message, 1, true)
    _, err = kf:signal(instance.Id, "Review.Approve")
    assert.are.equal(400, err.status)
    assert.matches("at step 'RequireApproval'", err.message, 1, true)
    assert.are.equal(3, assert(kf:workflow_instance(instance.Id)).Status)   -- still waiting
  end)

  it("My lists the caller's instances; AssignedToMe what waits on an approver", function()
    local operator = fixture.operator(sb)
    local mine = request("wfi-op", operator)
    local found
    for i in operator:workflow_instances { mine = true } do
      assert.are.equal("SANDBOX\\operator", assert(kf:workflow_instance(i.Id)).InitialData.Requester)
      if i.ReferenceId == mine then found = i end
    end
    assert.is_not_nil(found)
    assert.is_nil(instance_of(mine, { mine = true }))          -- the admin did not start it
    assert.is_not_nil(instance_of(mine, { assigned_to_me = true }))
    for _ in operator:workflow_instances { assigned_to_me = true } do
      error("the operator may not approve: nothing is assigned to them")
    end
    -- the operator may not signal either
    local _, err = operator:signal(found.Id, "RequireApproval.Approve")
    assert.are.equal(403, err.status)
    operator:close()
  end)

  it("pages and queries the instances", function()
    local a, b = request("wfi-page-a"), request("wfi-page-b")
    local seen = {}
    for i in kf:workflow_instances { page_size = 1, query = "ReferenceId -ge " .. a } do seen[i.ReferenceId] = true end
    assert.is_true(seen[a] and seen[b])
  end)

  it("a version 2 PFX enrollment that waits names its workflow instance", function()
    local status, answer = sb:http("POST", "/Enrollment/PFX", { headers = { ["x-certificateformat"] = "PFX",
      ["x-keyfactor-api-version"] = "2" }, body = { Template = "WebServerApproval",
      Subject = "CN=" .. fixture.unique("wfi-v2"), Password = "pw-0002" } })
    assert.are.equal(200, status)
    local info = answer.CertificateInformation
    local instance = assert(kf:workflow_instance(info.WorkflowInstanceId))
    assert.are.equal(info.KeyfactorRequestId, instance.ReferenceId)
    assert.are.equal(info.KeyfactorRequestId, tonumber(info.WorkflowReferenceId))
  end)

  it("checks its arguments before sending, naming the field", function()
    local before = fixture.request_count(sb)
    fixture.raises(function() kf:workflow_instance("nope") end, "kf:workflow_instance", "id", "GUID")
    fixture.raises(function() kf:signal("6e1f3a20-0000-4b7c-9a00-000000000001", "Approve") end,
      "kf:signal", "key", "<step unique name>.<signal name>")
    fixture.raises(function() kf:signal("6e1f3a20-0000-4b7c-9a00-000000000001", "A.B", "x") end,
      "kf:signal", "data")
    fixture.raises(function() kf:workflow_instances { assigned_to_me = true, mine = true } end,
      "kf:workflow_instances", "assigned_to_me, mine")
    fixture.raises(function() kf:workflow_instances { asigned_to_me = true } end,
      "kf:workflow_instances", "assigned_to_me")
    assert.are.equal(before, fixture.request_count(sb))
  end)
end)
