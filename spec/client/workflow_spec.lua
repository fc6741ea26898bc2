-- kf:pending, kf:approve, kf:deny against a live sandbox.
local fixture = require "support.fixture"

describe("workflow", function()
  local sb, kf

  fixture.live(function(s, k) sb, kf = s, k end)

  local function request(prefix)
    local cn = fixture.unique(prefix)
    local answer = assert(kf:enroll { Template = "WebServerApproval", Subject = "CN=" .. cn, Password = "pw-0001" })
    return answer.CertificateInformation.KeyfactorRequestId, cn
  end

  local function pending_ids(opts)
    local ids = {}
    for item in kf:pending(opts) do ids[item.Id] = item end
    return ids
  end

  it("kf:pending lists waiting requests across pages", function()
    local a, b, c = request("pend-a"), request("pend-b"), request("pend-c")
    local ids = pending_ids { page_size = 1 }
    assert.is_not_nil(ids[a])
    assert.is_not_nil(ids[b])
    assert.is_not_nil(ids[c])
    assert.is_true(fixture.is_integer(ids[a].Id))
    assert.are.equal(1, ids[a].State)
  end)

  it("kf:approve issues every id of an array", function()
    local a, cn_a = request("appr-a")
    local b = request("appr-b")
    local result = assert(kf:approve { a, b })
    assert.are.equal(2, #result.Successes)
    assert.are.same({}, result.Failures)
    local pending = pending_ids {}
    assert.is_nil(pending[a])
    assert.is_nil(pending[b])
    local cert = assert(kf:certificate { CertRequestId = a })
    assert.are.equal(cn_a, cert.IssuedCN)
  end)

  it("kf:deny takes the request out of pending; approving it afterwards lands in Failures", function()
    local id = request("deny")
    local result = assert(kf:deny(id, "not in the inventory"))
    assert.are.equal(1, #result.Denials)
    assert.are.equal(id, result.Denials[1].KeyfactorRequestId)
    assert.are.equal("not in the inventory", result.Denials[1].Comment)
    assert.is_nil(pending_ids {}[id])
    local none, err = kf:approve(id)
    assert.is_nil(none)     -- Failures non-empty: a partial failure (DESIGN 6.2)
    assert.are.equal("partial", err.kind)
    assert.are.same({ id }, err.failed)
    assert.matches("not pending", err.message, 1, true)
    local again = err.answer
    assert.are.same({}, again.Successes)
    assert.are.equal(1, #again.Failures)
    assert.are.equal(id, again.Failures[1].KeyfactorRequestId)
    local cert, lookup_err = kf:certificate { CertRequestId = id }
    assert.is_nil(cert)
    assert.are.equal(404, lookup_err.status)
  end)

  it("approving an unknown id lands in Failures", function()
    local none, err = kf:approve(777777)
    assert.is_nil(none)
    assert.are.equal("partial", err.kind)
    assert.are.same({ 777777 }, err.failed)
    local result = err.answer
    assert.are.same({}, result.Successes)
    assert.are.equal(777777, result.Failures[1].KeyfactorRequestId)
  end)

  it("denying an unknown id lands in Failures", function()
    local none, err = kf:deny({ 777778 }, "no such request")
    assert.is_nil(none)
    assert.are.equal("partial", err.kind)
    local result = err.answer
    assert.are.same({}, result.Denials)
    assert.are.equal(777778, result.Failures[1].KeyfactorRequestId)
  end)

  it("the operator may not approve or deny: nil, err kind auth status 403", function()
    local id = request("op")
    local operator = fixture.operator(sb)
    local result, err = operator:approve(id)
    assert.is_nil(result)
    assert.are.equal("auth", err.kind)
    assert.are.equal(403, err.status)
    assert.are.equal("0xA0300002", err.code)
    local denied, err2 = operator:deny(id, "operator says no")
    assert.is_nil(denied)
    assert.are.equal(403, err2.status)
    assert.is_not_nil(pending_ids {}[id])
    operator:close()
  end)
end)
