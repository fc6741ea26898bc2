-- kf:certificate, kf:certificates (lazy paging), kf:revoke, kf:renew against
-- a live sandbox.
local fixture = require "support.fixture"

describe("certificates", function()
  local sb, kf

  fixture.live(function(s, k) sb, kf = s, k end)

  -- GET /Certificates requests of the log after index `from`.
  local function list_requests(from)
    local out = {}
    for i, r in ipairs(sb:requests()) do
      if i > from and r.method == "GET" and r.path:lower() == "/keyfactorapi/certificates" then out[#out + 1] = r end
    end
    return out
  end

  describe("kf:certificate(id)", function()
    it("returns the certificate with integer ids and enums", function()
      local cn = fixture.unique("one")
      local info = fixture.enroll(kf, cn).CertificateInformation
      local cert = assert(kf:certificate(info.KeyfactorId))
      assert.are.equal(info.KeyfactorId, cert.Id)
      assert.are.equal(cn, cert.IssuedCN)
      assert.are.equal(info.Thumbprint, cert.Thumbprint)
      assert.are.equal(info.SerialNumber, cert.SerialNumber)
      assert.are.equal(info.KeyfactorRequestId, cert.CertRequestId)
      for _, field in ipairs { "Id", "CertState", "CertRequestId", "KeySizeInBits", "KeyType", "TemplateId" } do
        assert.is_true(fixture.is_integer(cert[field]), field .. " is not a Lua integer")
      end
      assert.are.equal(1, cert.CertState)
      assert.are.equal("CN=SandboxCA, O=Keyfactor Sandbox", cert.IssuerDN)
      -- ContentBytes is the DER of the very certificate, issued by the sandbox CA
      local x509 = require "openssl.x509"
      local parsed = x509.new(fixture.base64_decode(cert.ContentBytes), "DER")
      assert.are.equal(cn, fixture.cn(parsed))
      fixture.assert_issued_by_ca(sb, parsed)
    end)

    it("includes Locations only when asked", function()
      local info = assert(kf:enroll {
        Template = "WebServer", Subject = "CN=" .. fixture.unique("loc"), format = "STORE",
      }).CertificateInformation
      local store = fixture.store_ids(kf, fixture.WEB, "PKCS12")[1]
      assert(kf:deploy { CertificateId = info.KeyfactorId, Stores = { { StoreId = store } } })
      assert.is_true(kf:wait_deployed(info.KeyfactorId, store, { timeout = 10, interval = 0.05 }))
      local with = assert(kf:certificate(info.KeyfactorId, { includeLocations = true }))
      assert.are.equal(1, #with.Locations)
      assert.are.equal(store, with.Locations[1].CertStoreId)
      local without = assert(kf:certificate(info.KeyfactorId))
      assert.are.equal(0, #(without.Locations or {}))
      local log = sb:requests()
      assert.matches("includeLocations=true", log[#log - 1].query, 1, true)
    end)

    it("answers nil, err kind http status 404 with the server's message for an unknown id", function()
      local cert, err = kf:certificate(424242)
      assert.is_nil(cert)
      assert.are.equal("http", err.kind)
      assert.are.equal(404, err.status)
      assert.are.equal("0xA0200001", err.code)
      assert.matches("424242", err.message, 1, true)
      assert.are.equal("GET", err.method)
      assert.are.equal("/Certificates/424242", err.path)
    end)
  end)

  describe("kf:certificate(lookup)", function()
    local info, cn

    lazy_setup(function()
      cn = fixture.unique("lookup")
      info = fixture.enroll(kf, cn).CertificateInformation
    end)

    it("finds by Thumbprint", function()
      local cert = assert(kf:certificate { Thumbprint = info.Thumbprint })
      assert.are.equal(info.KeyfactorId, cert.Id)
    end)

    it("finds by SerialNumber", function()
      local cert = assert(kf:certificate { SerialNumber = info.SerialNumber })
      assert.are.equal(info.KeyfactorId, cert.Id)
    end)

    it("finds by CertRequestId", function()
      local cert = assert(kf:certificate { CertRequestId = info.KeyfactorRequestId })
      assert.are.equal(info.KeyfactorId, cert.Id)
    end)

    it("returns the newest certificate when several share the IssuedCN", function()
      local shared = fixture.unique("newest")
      local first = fixture.enroll(kf, shared).CertificateInformation
      local second = fixture.enroll(kf, shared).CertificateInformation
      local third = fixture.enroll(kf, shared).CertificateInformation
      assert.is_true(first.KeyfactorId < second.KeyfactorId and second.KeyfactorId < third.KeyfactorId)
      local cert = assert(kf:certificate { IssuedCN = shared })
      assert.are.equal(third.KeyfactorId, cert.Id)
    end)

    it("passes options such as includeLocations along", function()
      local cert = assert(kf:certificate({ Thumbprint = info.Thumbprint }, { includeLocations = true }))
      assert.are.equal("table", type(cert.Locations))
      local log = sb:requests()
      assert.matches("includeLocations=true", log[#log].query, 1, true)
    end)

    it("answers nil, err status 404 when nothing matches", function()
      local cert, err = kf:certificate { Thumbprint = "00112233445566778899AABBCCDDEEFF00112233" }
      assert.is_nil(cert)
      assert.are.equal("http", err.kind)
      assert.are.equal(404, err.status)
      assert.matches("00112233445566778899AABBCCDDEEFF00112233", err.message, 1, true)
    end)
  end)

  describe("kf:certificates", function()
    local tag, ids

    lazy_setup(function()
      tag = fixture.unique("paged")
      ids = {}
      for i = 1, 5 do
        ids[i] = fixture.enroll(kf, string.format("p%d-%s", i, tag)).CertificateInformation.KeyfactorId
      end
    end)

    it("iterates across pages: every match once, one request per page", function()
      local from = #sb:requests()
      local seen, count = {}, 0
      for cert in kf:certificates { query = 'IssuedCN -contains "' .. tag .. '"', page_size = 2 } do
        assert.is_nil(seen[cert.Id], "duplicate certificate " .. cert.Id)
        seen[cert.Id] = true
        count = count + 1
      end
      assert.are.equal(5, count)
      for _, id in ipairs(ids) do assert.is_true(seen[id]) end
      local pages = list_requests(from)
      assert.are.equal(3, #pages)
      for i, r in ipairs(pages) do
        assert.matches("pq.pageReturned=" .. i, r.query, 1, true)
        assert.matches("pq.returnLimit=2", r.query, 1, true)
      end
    end)

    it("fetches lazily: breaking after the first item makes only one request", function()
      local from = #sb:requests()
      local next_cert = kf:certificates { query = 'IssuedCN -contains "' .. tag .. '"', page_size = 2 }
      local first = next_cert()
      assert.is_not_nil(first.Id)
      assert.are.equal(1, #list_requests(from))
    end)

    it("sorts by a field, ascending or descending", function()
      local q = 'IssuedCN -contains "' .. tag .. '"'
      local up = fixture.collect(kf:certificates { query = q, sort = "IssuedCN", page_size = 2 })
      local down = fixture.collect(kf:certificates { query = q, sort = "IssuedCN", ascending = false, page_size = 2 })
      assert.are.equal(5, #up)
      assert.are.equal(5, #down)
      for i = 1, 5 do
        assert.are.equal(string.format("p%d-%s", i, tag), up[i].IssuedCN)
        assert.are.equal(string.format("p%d-%s", 6 - i, tag), down[i].IssuedCN)
      end
    end)

    it("returns nothing for a query that matches nothing, in one request", function()
      local from = #sb:requests()
      local items = fixture.collect(kf:certificates { query = 'IssuedCN -eq "no-such-' .. tag .. '"' })
      assert.are.same({}, items)
      assert.are.equal(1, #list_requests(from))
    end)

    it("raises the structured error when a page fails", function()
      local ok, err = pcall(function()
        for _ in kf:certificates { query = "IssuedCN -bogus 1" } do end
      end)
      assert.is_false(ok)
      assert.are.equal("table", type(err))
      assert.are.equal(400, err.status)
      assert.matches("bogus", err.message, 1, true)
    end)

    it("leaves revoked certificates out unless includeRevoked", function()
      local cn = "revoked-" .. tag
      local id = fixture.enroll(kf, cn).CertificateInformation.KeyfactorId
      assert(kf:revoke { CertificateIds = { id }, Comment = "spec" })
      local q = 'IssuedCN -eq "' .. cn .. '"'
      assert.are.same({}, fixture.collect(kf:certificates { query = q }))
      local with = fixture.collect(kf:certificates { query = q, includeRevoked = true })
      assert.are.equal(1, #with)
      assert.are.equal(id, with[1].Id)
      assert.are.equal(2, with[1].CertState)
    end)
  end)

  describe("kf:revoke", function()
    it("revokes: RevokedIds names it and the certificate reads back CertState 2 with the comment", function()
      local id = fixture.enroll(kf, fixture.unique("revoke")).CertificateInformation.KeyfactorId
      local result = assert(kf:revoke { CertificateIds = { id }, Reason = 4, Comment = "key compromised in spec" })
      assert.are.same({ id }, result.RevokedIds)
      local cert = assert(kf:certificate(id))
      assert.are.equal(2, cert.CertState)
      assert.are.equal("Revoked", cert.CertStateString)
      assert.are.equal(4, cert.RevocationReason)
      assert.are.equal("key compromised in spec", cert.RevocationComment)
    end)

    it("answers nil, err 404 for an unknown id", function()
      local result, err = kf:revoke { CertificateIds = { 515151 }, Comment = "nope" }
      assert.is_nil(result)
      assert.are.equal(404, err.status)
    end)
  end)

  describe("kf:renew", function()
    it("issues a new certificate with the same subject that can be deployed", function()
      local cn = fixture.unique("renew")
      local old = fixture.enroll(kf, cn).CertificateInformation
      local renewed = assert(kf:renew { CertificateId = old.KeyfactorId })
      assert.is_true(fixture.is_integer(renewed.KeyfactorId))
      assert.are_not.equal(old.KeyfactorId, renewed.KeyfactorId)
      assert.are_not.equal(old.Thumbprint, renewed.Thumbprint)
      local before = assert(kf:certificate(old.KeyfactorId))
      local after = assert(kf:certificate(renewed.KeyfactorId))
      assert.are.equal(before.IssuedDN, after.IssuedDN)
      assert.are.equal(cn, after.IssuedCN)
      local store = fixture.store_ids(kf, fixture.WEB, "PKCS12")[1]
      local result = assert(kf:deploy { CertificateId = renewed.KeyfactorId, Stores = { { StoreId = store } } })
      assert.are.same({ store }, result.SuccessfulStores)
      assert.is_true(kf:wait_deployed(renewed.KeyfactorId, store, { timeout = 10, interval = 0.05 }))
    end)

    it("renews by Thumbprint", function()
      local old = fixture.enroll(kf, fixture.unique("renew-tp")).CertificateInformation
      local renewed = assert(kf:renew { Thumbprint = old.Thumbprint })
      assert.is_true(renewed.KeyfactorId > old.KeyfactorId)
    end)

    it("answers nil, err 404 for an unknown certificate", function()
      local renewed, err = kf:renew { CertificateId = 616161 }
      assert.is_nil(renewed)
      assert.are.equal(404, err.status)
    end)
  end)
end)
