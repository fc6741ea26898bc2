-- GET /Certificates: the query language, paging, sorting, revoked/expired
-- filtering, and the single-certificate shape.
local sandbox = require "keyfactor.sandbox"

local function enc(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

describe("sandbox certificates", function()
  local sb
  local ids = {}

  lazy_setup(function()
    sb = sandbox.start{ port = 0 }
    for i, cn in ipairs{ "alpha.example.com", "beta.example.com", "gamma.test.org", "delta.example.com" } do
      local _, body = sb:http("POST", "/Enrollment/PFX", { headers = { ["x-certificateformat"] = "STORE" },
        body = { Template = "WebServer", Subject = "CN=" .. cn .. ",O=Example" } })
      ids[i] = math.tointeger(body.CertificateInformation.KeyfactorId)
    end
    -- one revoked, one expired
    sb:http("POST", "/Certificates/Revoke", { body = { CertificateIds = { ids[4] }, Comment = "gone" } })
    local _, old = sb:http("POST", "/Enrollment/PFX", { headers = { ["x-certificateformat"] = "PFX" },
      body = { Template = "WebServer", Subject = "CN=expired.example.com", Password = "p", ValidityDays = -2 } })
    ids[5] = math.tointeger(old.CertificateInformation.KeyfactorId)
  end)
  lazy_teardown(function() if sb then sb:stop() end end)

  local function list(q, extra)
    local query = "pq.queryString=" .. enc(q or "") .. (extra and ("&" .. extra) or "")
    local status, body = sb:http("GET", "/Certificates", { query = query })
    return status, body
  end

  local function cns(body)
    local out = {}
    for i, c in ipairs(body) do out[i] = c.IssuedCN end
    return out
  end

  it("returns a full record for one certificate", function()
    local status, c, headers = sb:http("GET", "/Certificates/" .. ids[1],
      { query = "includeLocations=true&includeMetadata=true&verbose=1" })
    assert.equals(200, status)
    assert.matches("^application/json", headers["content-type"])
    assert.equals(ids[1], c.Id)
    assert.equals(1, c.CertState)
    assert.equals("Active", c.CertStateString)
    assert.equals(1, c.KeyType)
    assert.equals("RSA", c.KeyTypeString)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$", c.NotBefore)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$", c.ImportDate)
    assert.equals("table", type(c.Metadata))
    assert.equals("table", type(c.DetailedKeyUsage))
    assert.equals("table", type(c.Locations))
    assert.equals("WebServer", c.TemplateName)
    assert.equals("sandbox.local\\SandboxCA", c.CertificateAuthorityName)
    assert.truthy(c.ContentBytes:match("^MII"))
    assert.equals(404, (sb:http("GET", "/Certificates/999999")))
    assert.equals(400, (sb:http("GET", "/Certificates/abc")))
    assert.equals(404, (sb:http("GET", "/Certificates/Locations/999999")))
  end)

  it("matches paths case-insensitively", function()
    assert.equals(200, (sb:http("GET", "/KEYFACTORAPI/certificates/" .. ids[1])))
  end)

  it("filters with the query language", function()
    local cases = {
      { 'IssuedCN -eq "alpha.example.com"', { "alpha.example.com" } },
      { 'issuedcn -contains "example"', { "alpha.example.com", "beta.example.com" } },
      { 'IssuedCN -notcontains "example"', { "gamma.test.org" } },
      { 'IssuedCN -startswith "gam"', { "gamma.test.org" } },
      { 'IssuedCN -endswith ".com" AND IssuedCN -ne "beta.example.com"', { "alpha.example.com" } },
      { 'IssuedCN -eq "alpha.example.com" OR IssuedCN -eq "gamma.test.org"', { "alpha.example.com",
        "gamma.test.org" } },
      { '(IssuedCN -eq "alpha.example.com" OR IssuedCN -eq "beta.example.com") AND Id -gt ' .. ids[1],
        { "beta.example.com" } },
      { "Id -ge " .. ids[2] .. " AND Id -le " .. ids[3], { "beta.example.com", "gamma.test.org" } },
      { "Id -lt " .. ids[2], { "alpha.example.com" } },
      { "CertRequestId -eq " .. ids[3], { "gamma.test.org" } },
      { 'IssuedDN -contains "O=Example" AND TemplateName -eq "WebServer" AND CertState -eq 1',
        { "alpha.example.com", "beta.example.com", "gamma.test.org" } },
      { 'NotAfter -gt "2000-01-01" AND IssuedCN -startswith "a"', { "alpha.example.com" } },
      { 'NotAfter -lt "2000-01-01T00:00:00Z"', {} },
      { "HasPrivateKey -eq true AND IssuedCN -eq \"beta.example.com\"", { "beta.example.com" } },
    }
    for _, case in ipairs(cases) do
      local status, body = list(case[1])
      assert.equals(200, status)
      assert.same(case[2], cns(body), case[1])
    end
    local _, one = sb:http("GET", "/Certificates/" .. ids[2])
    assert.same({ "beta.example.com" }, cns(select(2, list('Thumbprint -eq "' .. one.Thumbprint .. '"'))))
    assert.same({ "beta.example.com" }, cns(select(2, list('SerialNumber -eq "' .. one.SerialNumber .. '"'))))
  end)

  it("accepts + for spaces in the query string", function()
    local status, body = sb:http("GET", "/Certificates",
      { query = "pq.queryString=IssuedCN+-eq+%22beta.example.com%22" })
    assert.equals(200, status)
    assert.same({ "beta.example.com" }, cns(body))
  end)

  it("rejects malformed queries with 400 naming the problem", function()
    local cases = {
      { 'IssuedCN -eq', "missing value" },
      { 'Bogus -eq "x"', "Bogus" },
      { 'IssuedCN -like "x"', "-like" },
      { 'IssuedCN -eq "x', "unterminated" },
      { '(IssuedCN -eq "x"', ")" },
      { 'IssuedCN "x"', "operator" },
      { 'IssuedCN -eq "x" AND', "field" },
      { 'NotAfter -gt "soon"', "date" },
      { 'IssuedCN -eq x', "quoted" },
    }
    for _, case in ipairs(cases) do
      local status, body = list(case[1])
      assert.equals(400, status, case[1])
      assert.matches(case[2], body.Message, 1, true)
    end
  end)

  it("leaves out revoked and expired certificates unless asked", function()
    local _, body = list("")
    assert.same({ "alpha.example.com", "beta.example.com", "gamma.test.org" }, cns(body))
    _, body = list("", "pq.includeRevoked=true")
    assert.equals(4, #body)
    _, body = list("", "pq.includeRevoked=true&pq.includeExpired=true")
    assert.equals(5, #body)
    _, body = list('IssuedCN -eq "expired.example.com"', "pq.includeExpired=true")
    assert.equals(1, #body)
  end)

  it("pages (1-based) and sorts (0 ascending, 1 descending)", function()
    local all = "pq.includeRevoked=true&pq.includeExpired=true"
    local _, p1 = list("", all .. "&pq.returnLimit=2&pq.pageReturned=1")
    local _, p2 = list("", all .. "&pq.returnLimit=2&pq.pageReturned=2")
    local _, p3 = list("", all .. "&pq.returnLimit=2&pq.pageReturned=3")
    local _, p4 = list("", all .. "&pq.returnLimit=2&pq.pageReturned=4")
    assert.same({ ids[1], ids[2] }, { p1[1].Id, p1[2].Id })
    assert.same({ ids[3], ids[4] }, { p2[1].Id, p2[2].Id })
    assert.same({ ids[5] }, { p3[1].Id })
    assert.same({}, p4)
    local _, desc = list("", "pq.sortField=IssuedCN&pq.sortAscending=1")
    assert.same({ "gamma.test.org", "beta.example.com", "alpha.example.com" }, cns(desc))
    local _, asc = list("", "pq.sortField=issuedcn&pq.sortAscending=0")
    assert.same({ "alpha.example.com", "beta.example.com", "gamma.test.org" }, cns(asc))
    assert.equals(400, (list("", "pq.sortField=Nope")))
    assert.equals(400, (list("", "pq.pageReturned=0")))
    assert.equals(400, (list("", "pq.returnLimit=abc")))
  end)

  it("answers an empty JSON array past the last page", function()
    local _, _, _, raw = sb:http("GET", "/Certificates", { query = "pq.pageReturned=99" })
    assert.equals("[]", raw)
  end)
end)
