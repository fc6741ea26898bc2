-- kf:deploy and kf:wait_deployed against a live sandbox: management jobs per
-- store, Locations after inventory, per-store refusals in FailedStores.
local fixture = require "support.fixture"

describe("kf:deploy", function()
  local sb, kf, web_pem, web_p12, restricted_pem, restricted_p12

  local WAIT = { timeout = 10, interval = 0.05 }

  fixture.live(function(s, k)
    sb, kf = s, k
    web_pem = fixture.store_ids(kf, fixture.WEB, "PEM")
    web_p12 = fixture.store_ids(kf, fixture.WEB, "PKCS12")
    restricted_pem = fixture.store_ids(kf, fixture.RESTRICTED, "PEM")
    restricted_p12 = fixture.store_ids(kf, fixture.RESTRICTED, "PKCS12")
    assert(#web_pem >= 2 and #web_p12 >= 2 and #restricted_pem >= 1 and #restricted_p12 >= 1)
  end)

  -- A certificate whose key the server keeps (format STORE).
  local function stored(prefix, client)
    local answer = assert((client or kf):enroll {
      Template = "WebServer", Subject = "CN=" .. fixture.unique(prefix), format = "STORE",
    })
    return answer.CertificateInformation
  end

  -- Deploys and proves the call sent exactly one POST /Enrollment/PFX/Deploy.
  local function deploy_once(req, client)
    local before = #fixture.requests(sb, "POST", "/Enrollment/PFX/Deploy")
    local result, err = (client or kf):deploy(req)
    assert.are.equal(before + 1, #fixture.requests(sb, "POST", "/Enrollment/PFX/Deploy"))
    return result, err
  end

  local function location_ids(cert_id)
    local cert = assert(kf:certificate(cert_id, { includeLocations = true }))
    local ids = {}
    for _, loc in ipairs(cert.Locations) do ids[loc.CertStoreId] = loc end
    return ids
  end

  it("deploys to two stores with Stores: both succeed, wait_deployed is true, Locations hold both", function()
    local info = stored("two")
    local result = assert(deploy_once {
      CertificateId = info.KeyfactorId, Password = "entry-pass-1",
      Stores = { { StoreId = web_pem[1], Alias = "two-alias" }, { StoreId = web_p12[1] } },
    })
    assert.are.same({ web_pem[1], web_p12[1] }, result.SuccessfulStores)
    assert.are.same({}, result.FailedStores)
    assert.is_true(kf:wait_deployed(info.KeyfactorId, { web_pem[1], web_p12[1] }, WAIT))
    local locations = location_ids(info.KeyfactorId)
    assert.is_not_nil(locations[web_pem[1]])
    assert.is_not_nil(locations[web_p12[1]])
    assert.are.equal("two-alias", locations[web_pem[1]].Alias)
  end)

  it("accepts one store id as a string in wait_deployed", function()
    local info = stored("one")
    assert(deploy_once { CertificateId = info.KeyfactorId, Stores = { { StoreId = web_p12[2] } } })
    assert.is_true(kf:wait_deployed(info.KeyfactorId, web_p12[2], WAIT))
  end)

  it("deploys with the legacy StoreIds and StoreTypes", function()
    local info = stored("legacy")
    local result = assert(deploy_once {
      CertificateId = info.KeyfactorId, Password = "entry-pass-2",
      StoreIds = { web_pem[2], web_p12[2] },
      StoreTypes = { { StoreTypeId = 101, Alias = "legacy-alias", Overwrite = true } },
    })
    assert.are.same({ web_pem[2], web_p12[2] }, result.SuccessfulStores)
    assert.is_true(kf:wait_deployed(info.KeyfactorId, { web_pem[2], web_p12[2] }, WAIT))
    assert.are.equal("legacy-alias", location_ids(info.KeyfactorId)[web_pem[2]].Alias)
  end)

  it("deploys by RequestId", function()
    local info = stored("byrequest")
    local result = assert(deploy_once { RequestId = info.KeyfactorRequestId, Stores = { { StoreId = web_p12[1] } } })
    assert.are.same({ web_p12[1] }, result.SuccessfulStores)
    assert.is_true(kf:wait_deployed(info.KeyfactorId, { web_p12[1] }, WAIT))
  end)

  it("runs a job with a past JobTime given as an ISO 8601 string now", function()
    local info = stored("jobtime-iso")
    assert(deploy_once {
      CertificateId = info.KeyfactorId, JobTime = os.date("!%Y-%m-%dT%H:%M:%SZ", os.time() - 60),
      Stores = { { StoreId = web_p12[3] } },
    })
    assert.is_true(kf:wait_deployed(info.KeyfactorId, { web_p12[3] }, WAIT))
  end)

  it("runs a job with a past JobTime given as an os.time() number now", function()
    local info = stored("jobtime-num")
    assert(deploy_once {
      CertificateId = info.KeyfactorId, JobTime = os.time() - 60, Stores = { { StoreId = web_p12[3] } },
    })
    assert.is_true(kf:wait_deployed(info.KeyfactorId, { web_p12[3] }, WAIT))
  end)

  it("schedules a future os.time() JobTime: wait_deployed times out naming the missing store", function()
    local info = stored("future-num")
    local result = assert(deploy_once {
      CertificateId = info.KeyfactorId, JobTime = os.time() + 3600, Stores = { { StoreId = web_p12[1] } },
    })
    assert.are.same({ web_p12[1] }, result.SuccessfulStores)
    local ok, err = kf:wait_deployed(info.KeyfactorId, { web_p12[1] }, { timeout = 0.3, interval = 0.05 })
    assert.is_nil(ok)
    assert.are.equal("timeout", err.kind)
    assert.are.same({ web_p12[1] }, err.missing)
    assert.matches(web_p12[1], tostring(err), 1, true)
    assert.is_nil(location_ids(info.KeyfactorId)[web_p12[1]])
  end)

  it("schedules a future ISO JobTime: not deployed yet", function()
    local info = stored("future-iso")
    assert(deploy_once {
      CertificateId = info.KeyfactorId, JobTime = os.date("!%Y-%m-%dT%H:%M:%SZ", os.time() + 3600),
      Stores = { { StoreId = web_p12[2] }, { StoreId = web_p12[3] } },
    })
    local ok, err = kf:wait_deployed(info.KeyfactorId, { web_p12[2], web_p12[3] }, { timeout = 0.2, interval = 0.05 })
    assert.is_nil(ok)
    assert.are.equal("timeout", err.kind)
    assert.are.same({ web_p12[2], web_p12[3] }, err.missing)
  end)

  it("names only the stores still missing when some are deployed", function()
    local info = stored("partial")
    assert(deploy_once { CertificateId = info.KeyfactorId, Stores = { { StoreId = web_p12[1] } } })
    assert.is_true(kf:wait_deployed(info.KeyfactorId, { web_p12[1] }, WAIT))
    local ok, err = kf:wait_deployed(info.KeyfactorId, { web_p12[1], web_p12[2] }, { timeout = 0.2, interval = 0.05 })
    assert.is_nil(ok)
    assert.are.same({ web_p12[2] }, err.missing)
  end)

  it("puts a Restricted store in FailedStores for the operator and deploys the Web one", function()
    local operator = fixture.operator(sb)
    local info = stored("operator", operator)
    local none, err = deploy_once({
      CertificateId = info.KeyfactorId,
      Stores = { { StoreId = restricted_p12[1] }, { StoreId = web_p12[1] } },
    }, operator)
    assert.is_nil(none)
    assert.are.equal("partial", err.kind)
    assert.are.same({ restricted_p12[1] }, err.failed)
    local result = err.answer
    assert.are.same({ web_p12[1] }, result.SuccessfulStores)
    assert.are.same({ restricted_p12[1] }, result.FailedStores)
    assert.is_true(kf:wait_deployed(info.KeyfactorId, { web_p12[1] }, WAIT))
    operator:close()
  end)

  it("lets the admin deploy to the Restricted container", function()
    local info = stored("admin-restricted")
    local result = assert(deploy_once {
      CertificateId = info.KeyfactorId, Password = "entry-pass-3",
      Stores = { { StoreId = restricted_pem[1] }, { StoreId = restricted_p12[1] } },
    })
    assert.are.same({ restricted_pem[1], restricted_p12[1] }, result.SuccessfulStores)
  end)

  it("fails a PEM store when Password is \"\" (entry password required) but deploys the PKCS12 one", function()
    local info = stored("nopass")
    local result, err = deploy_once {
      CertificateId = info.KeyfactorId, Password = "",
      Stores = { { StoreId = web_pem[1] }, { StoreId = web_p12[1] } },
    }
    assert.is_nil(result)   -- a partial failure is a failure (DESIGN 6.2)
    assert.are.equal("partial", err.kind)
    assert.are.same({ web_pem[1] }, err.failed)
    result = err.answer
    assert.are.same({ web_p12[1] }, result.SuccessfulStores)
    assert.are.same({ web_pem[1] }, result.FailedStores)
  end)

  it("fails every store for a certificate enrolled as PFX (key not retained)", function()
    local info = fixture.enroll(kf, fixture.unique("pfx-nokey")).CertificateInformation
    local result, err = deploy_once {
      CertificateId = info.KeyfactorId, Password = "entry-pass-4",
      Stores = { { StoreId = web_pem[1] }, { StoreId = web_p12[1] } },
    }
    assert.is_nil(result)
    assert.are.equal("partial", err.kind)
    assert.are.same({ web_pem[1], web_p12[1] }, err.failed)
    assert.matches("2 of the stores failed", tostring(err), 1, true)
    result = err.answer
    assert.are.same({}, result.SuccessfulStores)
    assert.are.same({ web_pem[1], web_p12[1] }, result.FailedStores)
  end)

  it("fails an unknown store GUID and deploys the known one", function()
    local info = stored("unknown-store")
    local unknown = "00000000-1111-2222-3333-444444444444"
    local result, err = deploy_once {
      CertificateId = info.KeyfactorId, Stores = { { StoreId = unknown }, { StoreId = web_p12[2] } },
    }
    assert.is_nil(result)
    assert.are.same({ unknown }, err.failed)
    result = err.answer
    assert.are.same({ web_p12[2] }, result.SuccessfulStores)
    assert.are.same({ unknown }, result.FailedStores)
  end)

  it("answers nil, err 404 for an unknown CertificateId", function()
    local result, err = deploy_once { CertificateId = 987654, Stores = { { StoreId = web_p12[1] } } }
    assert.is_nil(result)
    assert.are.equal("http", err.kind)
    assert.are.equal(404, err.status)
    assert.are.equal("/Enrollment/PFX/Deploy", err.path)
  end)

  it("does not resend a deploy answered 503 (a POST is never sent twice)", function()
    local info = stored("no-retry")
    sb:fault { method = "POST", path = "/KeyfactorAPI/Enrollment/PFX/Deploy", status = 503, times = 1, retry_after = 0 }
    local result, err = deploy_once { CertificateId = info.KeyfactorId, Stores = { { StoreId = web_p12[1] } } }
    assert.is_nil(result)
    assert.are.equal(503, err.status)
    assert.is_false(err.retryable)
  end)

  it("wait_deployed answers nil, err 404 for an unknown certificate", function()
    local ok, err = kf:wait_deployed(987654, { web_p12[1] }, { timeout = 1, interval = 0.05 })
    assert.is_nil(ok)
    assert.are.equal(404, err.status)
  end)
end)
