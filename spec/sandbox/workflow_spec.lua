-- Approval workflow: pending enrollment, approve, deny, deploy by RequestId.
local sandbox = require "keyfactor.sandbox"

local function enc(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

describe("sandbox workflow", function()
  local sb

  lazy_setup(function() sb = sandbox.start{ port = 0, job_delay = 0.1 } end)
  lazy_teardown(function() if sb then sb:stop() end end)

  local function enroll_pending(cn, format)
    local status, body = sb:http("POST", "/Enrollment/PFX", { headers = { ["x-certificateformat"] = format or "STORE" },
      body = { Template = "WebServerApproval", Subject = "CN=" .. cn, Password = "p" } })
    assert.equals(200, status)
    return body.CertificateInformation
  end

  local function pending()
    local _, list = sb:http("GET", "/Workflow/Certificates/Pending", { query = "pagedQuery.returnLimit=1000" })
    return list
  end

  it("answers only a request id while pending", function()
    local info = enroll_pending("pending.example.com")
    assert.equals("PENDING", info.RequestDisposition)
    assert.is_true(info.KeyfactorRequestId > 0)
    assert.is_true((info.KeyfactorId or 0) == 0)
    local item
    for _, p in ipairs(pending()) do
      if p.Id == info.KeyfactorRequestId then item = p end
    end
    assert.truthy(item)
    assert.equals("pending.example.com", item.CommonName)
    assert.equals("CN=pending.example.com", item.DistinguishedName)
    assert.equals("WebServerApproval", item.Template)
    assert.equals("number", type(item.State))
    assert.equals("Pending", item.StateString)
    assert.equals("table", type(item.Metadata))
    assert.matches("Z$", item.SubmissionDate)
    local _, found = sb:http("GET", "/Certificates",
      { query = "pq.queryString=" .. enc("CertRequestId -eq " .. info.KeyfactorRequestId) })
    assert.same({}, found)
  end)

  it("refuses to deploy a pending request", function()
    local info = enroll_pending("notyet.example.com")
    local status, body = sb:http("POST", "/Enrollment/PFX/Deploy", { body = { RequestId = info.KeyfactorRequestId,
      Password = "pw", Stores = { { StoreId = "5a4db0c5-0104-4e5a-9d00-000000000004" } } } })
    assert.equals(400, status)
    assert.matches("pending", body.Message)
  end)

  it("issues on approval; the certificate is found by CertRequestId and deployable by RequestId", function()
    local info = enroll_pending("approved.example.com", "PFX")
    local rid = math.tointeger(info.KeyfactorRequestId)
    local status, result = sb:http("POST", "/Workflow/Certificates/Approve", { body = "[" .. rid .. ", 999999]" })
    assert.equals(200, status)
    assert.equals(1, #result.Successes)
    assert.equals(rid, result.Successes[1].KeyfactorRequestId)
    assert.equals(1, #result.Failures)
    assert.equals(999999, result.Failures[1].KeyfactorRequestId)
    assert.same({}, result.Denials)
    local _, found = sb:http("GET", "/Certificates", { query = "pq.queryString=" .. enc("CertRequestId -eq " .. rid) })
    assert.equals(1, #found)
    assert.equals("approved.example.com", found[1].IssuedCN)
    local store = "5a4db0c5-0104-4e5a-9d00-000000000004"
    local _, dep = sb:http("POST", "/Enrollment/PFX/Deploy",
      { body = { RequestId = rid, Password = "pw", Stores = { { StoreId = store } } } })
    assert.same({ store }, dep.SuccessfulStores)
    os.execute("sleep 0.3")
    local _, cert = sb:http("GET", string.format("/Certificates/%d", found[1].Id), { query = "includeLocations=true" })
    assert.equals(store, cert.Locations[1].CertStoreId)
    -- approving again fails: no longer pending
    local _, again = sb:http("POST", "/Workflow/Certificates/Approve", { body = "[" .. rid .. "]" })
    assert.equals(1, #again.Failures)
  end)

  it("wants a bare JSON array for approve", function()
    assert.equals(400, (sb:http("POST", "/Workflow/Certificates/Approve", { body = { Ids = { 1 } } })))
    assert.equals(400, (sb:http("POST", "/Workflow/Certificates/Approve", { body = "1" })))
  end)

  it("denies requests and lists them as denied", function()
    local info = enroll_pending("denied.example.com")
    local rid = math.tointeger(info.KeyfactorRequestId)
    local status, result = sb:http("POST", "/Workflow/Certificates/Deny",
      { body = { Comment = "no", CertificateRequestIds = { rid } } })
    assert.equals(200, status)
    assert.equals(rid, result.Denials[1].KeyfactorRequestId)
    local _, denied = sb:http("GET", "/Workflow/Certificates/Denied")
    local ids = {}
    for _, d in ipairs(denied) do ids[d.Id] = d.StateString end
    assert.equals("Denied", ids[rid])
    for _, p in ipairs(pending()) do assert.are_not.equal(rid, p.Id) end
    assert.equals(400, (sb:http("POST", "/Workflow/Certificates/Deny", { body = { Comment = "x" } })))
  end)

  it("pages and filters the pending list", function()
    for i = 1, 3 do enroll_pending("page" .. i .. ".example.com") end
    local _, page = sb:http("GET", "/Workflow/Certificates/Pending",
      { query = "pagedQuery.queryString=" .. enc('CommonName -startswith "page"') ..
        "&pagedQuery.returnLimit=2&pagedQuery.pageReturned=2&pagedQuery.sortField=Id&pagedQuery.sortAscending=1" })
    assert.equals(1, #page)
    assert.equals("page1.example.com", page[1].CommonName)
  end)

  it("forbids the operator to approve or deny", function()
    local info = enroll_pending("operator.example.com")
    local rid = math.tointeger(info.KeyfactorRequestId)
    local status, body = sb:http("POST", "/Workflow/Certificates/Approve", { body = "[" .. rid .. "]",
      auth = "operator" })
    assert.equals(403, status)
    assert.matches("^0x", body.ErrorCode)
    assert.equals(403, (sb:http("POST", "/Workflow/Certificates/Deny",
      { body = { Comment = "x", CertificateRequestIds = { rid } }, auth = "operator" })))
  end)

  it("signs pending CSRs on approval", function()
    local pkey = require "openssl.pkey"
    local csr = require "openssl.x509.csr"
    local xname = require "openssl.x509.name"
    local key = pkey.new{ type = "EC", curve = "prime256v1" }
    local req = csr.new()
    local n = xname.new()
    n:add("CN", "csr-approval.example.com")
    req:setSubject(n)
    req:setPublicKey(key)
    req:sign(key)
    local _, body = sb:http("POST", "/Enrollment/CSR", { headers = { ["x-certificateformat"] = "PEM" },
      body = { CSR = req:toPEM(), Template = "WebServerApproval" } })
    local rid = math.tointeger(body.CertificateInformation.KeyfactorRequestId)
    assert.equals("PENDING", body.CertificateInformation.RequestDisposition)
    sb:http("POST", "/Workflow/Certificates/Approve", { body = "[" .. rid .. "]" })
    local _, found = sb:http("GET", "/Certificates", { query = "pq.queryString=" .. enc("CertRequestId -eq " .. rid) })
    assert.equals("csr-approval.example.com", found[1].IssuedCN)
    assert.is_false(found[1].HasPrivateKey)
  end)
end)
