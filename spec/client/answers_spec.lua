-- Issue 13 item 8: whatever the server sends with a 200 (false, null, a
-- number, true where an object or an array is expected), every kf: call
-- returns nil, err with kind "decode", and iterators raise that error table.
local fixture = require "support.fixture"
local errors = require "keyfactor.errors"

describe("answers of the wrong shape", function()
  local sb, kf, cert_id, store_id

  fixture.live(function(s, k)
    sb, kf = s, k
    cert_id = fixture.enroll(kf, fixture.unique("shape")).CertificateInformation.KeyfactorId
    store_id = fixture.store_ids(kf, fixture.WEB, "PEM")[1]
  end)

  after_each(function() sb:clear_faults() end)

  local function answering(method, path, body)
    sb:fault { method = method, path = "/KeyfactorAPI" .. path, times = 1, status = 200, body = body }
  end

  local CALLS = {
    { "certificate", "GET", function() return "/Certificates/" .. cert_id end,
      function() return kf:certificate(cert_id) end },
    { "certificate lookup", "GET", function() return "/Certificates" end,
      function() return kf:certificate { Thumbprint = "AB" } end },
    { "enroll", "POST", function() return "/Enrollment/PFX" end,
      function() return kf:enroll { Template = "WebServer", Subject = "CN=x.example.com", Password = "pw-12345" } end },
    { "renew", "POST", function() return "/Enrollment/Renew" end,
      function() return kf:renew { CertificateId = cert_id } end },
    { "deploy", "POST", function() return "/Enrollment/PFX/Deploy" end,
      function() return kf:deploy { CertificateId = cert_id, Stores = { { StoreId = store_id } } } end },
    { "store_types", "GET", function() return "/CertificateStoreTypes" end,
      function() return kf:store_types() end },
    { "status", "GET", function() return "/Status/Endpoints" end, function() return kf:status() end },
    { "wait_deployed", "GET", function() return "/Certificates/" .. cert_id end,
      function() return kf:wait_deployed(cert_id, { store_id }, { timeout = 2, interval = 0.05 }) end },
    { "store", "GET", function() return "/CertificateStores/" .. store_id end,
      function() return kf:store(store_id) end },
  }

  for _, body in ipairs { "false", "null", "5", "true" } do
    for _, call in ipairs(CALLS) do
      it(call[1] .. " answered 200 " .. body .. " returns nil, err kind decode", function()
        answering(call[2], call[3](), body)
        local value, err = call[4]()
        assert.is_nil(value)
        assert.is_true(errors.is(err), "err is an error table, not " .. tostring(err))
        assert.are.equal("decode", err.kind)
        assert.is_string(err.message)
      end)
    end

    it("the certificates iterator answered 200 " .. body .. " raises the decode error table", function()
      answering("GET", "/Certificates", body)
      local ok, err = pcall(fixture.collect, kf:certificates())
      assert.is_false(ok)
      assert.is_true(errors.is(err), "raised an error table, not " .. tostring(err))
      assert.are.equal("decode", err.kind)
    end)
  end

  it("a 200 false names what was expected", function()
    answering("GET", "/Certificates/" .. cert_id, "false")
    local _, err = kf:certificate(cert_id)
    assert.matches("expected a JSON object, got false", err.message, 1, true)
  end)
end)
