-- Metadata fields (GET /MetadataFields) and PUT /Certificates/Metadata,
-- which checks every name and value against its field's type.
local sandbox = require "keyfactor.sandbox"

describe("sandbox metadata", function()
  local sb, id

  lazy_setup(function()
    sb = sandbox.start{ port = 0 }
    local _, body = sb:http("POST", "/Enrollment/PFX", { headers = { ["x-certificateformat"] = "STORE" },
      body = { Template = "WebServer", Subject = "CN=metadata.example.com" } })
    id = math.tointeger(body.CertificateInformation.KeyfactorId)
  end)
  lazy_teardown(function() if sb then sb:stop() end end)

  local function set(body) return sb:http("PUT", "/Certificates/Metadata", { body = body }) end
  local function metadata_of(cert_id)
    local _, c = sb:http("GET", "/Certificates/" .. cert_id, { query = "includeMetadata=true" })
    return c.Metadata
  end

  it("seeds the pinned fields with their types", function()
    local status, fields = sb:http("GET", "/MetadataFields")
    assert.equals(200, status)
    local by_name = {}
    for _, f in ipairs(fields) do by_name[f.Name] = f end
    assert.equals(1, by_name.Owner.DataType)
    assert.equals(5, by_name.Environment.DataType)
    assert.equals("Production,Staging,Test", by_name.Environment.Options)
    assert.equals(2, by_name.TicketNumber.DataType)
    assert.equals(1, by_name.RenewalClaim.DataType)
    local _, page = sb:http("GET", "/MetadataFields", { query = "pq.returnLimit=2&pq.pageReturned=2" })
    assert.equals(2, #page)
    assert.equals(fields[3].Id, page[1].Id)
  end)

  it("sets values, answering 204 with no body", function()
    local status, _, _, raw = set{ Id = id, Metadata = { Owner = "team-web", Environment = "Staging",
      TicketNumber = "4711" } }
    assert.equals(204, status)
    assert.equals("", raw)
    assert.same({ Owner = "team-web", Environment = "Staging", TicketNumber = "4711" }, metadata_of(id))
    -- later calls change only the fields they name; "" removes a value
    assert.equals(204, (set{ Id = id, Metadata = { Owner = "", RenewalClaim = "worker-7", TicketNumber = 12 } }))
    assert.same({ Environment = "Staging", TicketNumber = "12", RenewalClaim = "worker-7" }, metadata_of(id))
  end)

  it("refuses unknown fields and values of the wrong type, changing nothing", function()
    local before = metadata_of(id)
    local cases = {
      { { Id = id, Metadata = { Colour = "blue" } }, 400, "Colour" },
      { { Id = id, Metadata = { TicketNumber = "twelve" } }, 400, "TicketNumber" },
      { { Id = id, Metadata = { Environment = "Prod" } }, 400, "Production,Staging,Test" },
      { { Id = id, Metadata = { Owner = { name = "x" } } }, 400, "Metadata.Owner" },
      { { Id = id, Metadata = { Owner = "ok", Monitored = "maybe" } }, 400, "Monitored" },
      { { Id = id, Metadata = "Owner=x" }, 400, "Metadata" },
      { { Id = id }, 400, "Metadata" },
      { { Metadata = { Owner = "x" } }, 400, "Id" },
      { { Id = 999999, Metadata = { Owner = "x" } }, 404, "999999" },
    }
    for _, case in ipairs(cases) do
      local status, body = set(case[1])
      assert.equals(case[2], status)
      assert.matches(case[3], body.Message, 1, true)
    end
    assert.same(before, metadata_of(id))
  end)

  it("checks enrollment metadata against the same fields", function()
    local headers = { ["x-certificateformat"] = "PFX" }
    local status, answer = sb:http("POST", "/Enrollment/PFX", { headers = headers, body = { Template = "WebServer",
      Subject = "CN=meta-enroll.example.com", Password = "p", Metadata = { owner = "team-db", TicketNumber = 42 } } })
    assert.equals(200, status)
    assert.same({ Owner = "team-db", TicketNumber = "42" }, answer.Metadata)
    local bad_status, bad = sb:http("POST", "/Enrollment/PFX", { headers = headers, body = { Template = "WebServer",
      Subject = "CN=meta-bad.example.com", Password = "p", Metadata = { Environment = "Lab" } } })
    assert.equals(400, bad_status)
    assert.matches("Metadata.Environment", bad.Message, 1, true)
  end)
end)
