-- Strict like the real model binder (issue 16 item 5, DESIGN §6.4): a JSON
-- object where an array is expected, an array where an object is, or a
-- scalar of the wrong type is a 400 with Keyfactor's error body naming the
-- field, whether or not the handler would have read that field.
local sandbox = require "keyfactor.sandbox"

describe("sandbox request strictness", function()
  local sb, cert_id, store_id

  lazy_setup(function()
    sb = sandbox.start{ port = 0 }
    local _, body = sb:http("POST", "/Enrollment/PFX", { headers = { ["x-certificateformat"] = "STORE" },
      body = { Template = "WebServer", Subject = "CN=strict.example.com" } })
    cert_id = math.tointeger(body.CertificateInformation.KeyfactorId)
    local _, stores = sb:http("GET", "/CertificateStores")
    store_id = stores[4].Id
  end)
  lazy_teardown(function() if sb then sb:stop() end end)

  local PFX = { ["x-certificateformat"] = "PFX" }

  -- method, path, raw JSON body (%d: the certificate id, %s: a store id), field named, headers
  local refused = {
    { "POST", "/Enrollment/PFX/Deploy",
      '{"CertificateId":%d,"Password":"pw","Stores":[{"StoreId":"%s"}],"StoreTypes":{}}', "StoreTypes" },
    { "POST", "/Enrollment/PFX/Deploy", '{"CertificateId":%d,"Password":"pw","Stores":{}}', "Stores" },
    { "POST", "/Enrollment/PFX/Deploy",
      '{"CertificateId":%d,"Password":"pw","Stores":[{"StoreId":"%s"}],"StoreIds":"x"}', "StoreIds" },
    { "POST", "/Enrollment/PFX/Deploy", '{"CertificateId":%d,"Password":"pw","Stores":[{"StoreId":5}]}',
      "Stores[1].StoreId" },
    { "POST", "/Enrollment/PFX/Deploy", '{"CertificateId":%d,"Password":"pw","Stores":[{"StoreId":"%s",'
      .. '"Properties":[]}]}', "Stores[1].Properties" },
    { "POST", "/Enrollment/PFX/Deploy", '{"CertificateId":"%d","Password":"pw","Stores":[]}', "CertificateId" },
    { "POST", "/Enrollment/PFX/Deploy", '{"CertificateId":%d,"Password":7,"Stores":[]}', "Password" },
    { "POST", "/Enrollment/PFX/Deploy", '{"CertificateId":%d.5,"Password":"pw","Stores":[]}', "CertificateId" },
    { "POST", "/Certificates/Revoke", '{"CertificateIds":{},"Comment":"x"}', "CertificateIds" },
    { "POST", "/Certificates/Revoke", '{"CertificateIds":["%d"],"Comment":"x"}', "CertificateIds[1]" },
    { "POST", "/Certificates/Revoke", '{"CertificateIds":[%d],"Comment":"x","Reason":"1"}', "Reason" },
    { "POST", "/Certificates/Revoke", '[%d]', "object" },
    { "POST", "/Workflow/Certificates/Approve", '{}', "array" },
    { "POST", "/Workflow/Certificates/Deny", '{"CertificateRequestIds":{},"Comment":"no"}', "CertificateRequestIds" },
    { "POST", "/Enrollment/PFX", '{"Template":"WebServer","Subject":"CN=a","Password":"p","Metadata":[]}',
      "Metadata", PFX },
    { "POST", "/Enrollment/PFX", '{"Template":"WebServer","Subject":"CN=a","Password":"p","SANs":{"dns":{}}}',
      "SANs.dns", PFX },
    { "POST", "/Enrollment/PFX", '{"Template":"WebServer","Subject":"CN=a","Password":"p","IncludeChain":"true"}',
      "IncludeChain", PFX },
    { "POST", "/Enrollment/PFX", '{"Template":"WebServer","Subject":"CN=a","Password":"p","Timestamp":5}',
      "Timestamp", PFX },
    { "POST", "/CertificateStores/Certificates/Add",
      '{"CertificateId":%d,"Schedule":{"Immediate":true},"CertificateStores":{}}', "CertificateStores" },
    { "POST", "/CertificateStores/Certificates/Add",
      '{"CertificateId":%d,"Schedule":[],"CertificateStores":[{"CertificateStoreId":"%s"}]}', "Schedule" },
    { "POST", "/CertificateStores/Certificates/Remove",
      '{"Schedule":{"ExactlyOnce":{"Time":"soon"}},"CertificateStores":[]}', "Schedule.ExactlyOnce.Time" },
    { "POST", "/Certificates/Download", '{"CertID":%d,"IncludeChain":1}', "IncludeChain" },
    { "PUT", "/Certificates/Metadata", '{"Id":%d,"Metadata":[]}', "Metadata" },
    { "POST", "/CertificateStores", '{"ClientMachine":"x","StorePath":"/x","CertStoreType":101,'
      .. '"AgentId":"0b9a1b4e-7a1f-4f6e-8f55-5a2d5e0c0001","Properties":{}}', "Properties" },
  }

  it("refuses each with a 400 naming the field", function()
    for _, case in ipairs(refused) do
      local method, path, template, name, headers = table.unpack(case)
      local body = template:find("%s", 1, true) and string.format(template, cert_id, store_id)
        or string.format(template, cert_id)
      local status, err = sb:http(method, path, { body = body, headers = headers })
      assert.equals(400, status, path .. " " .. body)
      assert.matches("^0x%x+$", err.ErrorCode)
      assert.matches(name, err.Message, 1, true)
      assert.matches("must be", err.Message, 1, true)
    end
  end)

  it("accepts the right kinds, empty ones included", function()
    local accepted = {
      { "POST", "/Enrollment/PFX/Deploy", '{"CertificateId":%d,"Password":"pw","Stores":[{"StoreId":"%s",'
        .. '"Properties":{}}],"StoreTypes":[]}' },
      { "POST", "/Enrollment/PFX/Deploy", '{"CertificateId":%d,"Password":"pw","Stores":[],"JobTime":null}' },
      { "POST", "/Enrollment/PFX", '{"Template":"WebServer","Subject":"CN=b","Password":"p","Metadata":{},'
        .. '"SANs":{"dns":[]},"AdditionalEnrollmentFields":{}}', PFX },
      { "POST", "/Certificates/Download", '{"CertID":%d.0}' },
    }
    for _, case in ipairs(accepted) do
      local method, path, template, headers = table.unpack(case)
      local body = template:find("%s", 1, true) and string.format(template, cert_id, store_id)
        or string.format(template, cert_id)
      local status, answer = sb:http(method, path, { body = body, headers = headers })
      assert.equals(200, status, path .. " " .. body .. " " .. tostring(answer and answer.Message))
    end
  end)

  it("keeps a JSON string that looks like an empty object a string", function()
    local _, enrolled = sb:http("POST", "/Enrollment/PFX", { headers = PFX,
      body = '{"Template":"WebServer","Subject":"CN=braces.example.com","Password":"p",'
        .. '"Metadata":{"Owner":"{}"}}' })
    assert.equals("{}", enrolled.Metadata.Owner)
  end)

  it("refuses query parameters the binder cannot convert", function()
    for _, q in ipairs{ "includeLocations=yes", "pq.includeRevoked=2", "pq.returnLimit=ten", "pq.pageReturned=1.5" } do
      local status, err = sb:http("GET", "/Certificates", { query = q })
      assert.equals(400, status, q)
      assert.matches(q:match("^[^=]+"), err.Message, 1, true)
    end
    assert.equals(200, (sb:http("GET", "/Certificates", { query = "includeLocations=True&pq.includeRevoked=0" })))
  end)
end)
