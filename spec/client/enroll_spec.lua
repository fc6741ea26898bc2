-- kf:enroll against a live sandbox: PFX, STORE, Zip, CSR and approval
-- enrollment, with every certificate parsed and checked with luaossl.
local fixture = require "support.fixture"

describe("kf:enroll", function()
  local sb, kf, web_pkcs12

  fixture.live(function(s, k)
    sb, kf = s, k
    local type_id
    for _, t in ipairs(assert(kf:store_types())) do
      if t.ShortName == "PKCS12" then type_id = t.StoreType end
    end
    for store in kf:stores { query = "ContainerId -eq " .. fixture.WEB } do
      if store.CertStoreType == type_id then web_pkcs12 = store.Id end
    end
    assert(web_pkcs12, "no PKCS12 store in the Web container")
  end)

  describe("PFX", function()
    it("defaults to format PFX and returns a PKCS#12 with the subject, SANs and the sandbox CA as issuer", function()
      local cn = fixture.unique("pfx")
      local before = #fixture.requests(sb, "POST", "/Enrollment/PFX")
      local answer = assert(kf:enroll {
        Template = "WebServer", Subject = "CN=" .. cn .. ",O=Example", Password = "pfx-secret-1",
        SANs = { dns = { cn, "alt-" .. cn } },
      })
      local info = answer.CertificateInformation
      assert.is_true(fixture.is_integer(info.KeyfactorId))
      assert.is_true(info.KeyfactorId > 0)
      assert.is_true(fixture.is_integer(info.KeyfactorRequestId))
      assert.are.equal("ISSUED", info.RequestDisposition)
      local key, cert = fixture.open_pkcs12(info.Pkcs12Blob, "pfx-secret-1")
      assert.is_not_nil(key)
      assert.are.equal(cn, fixture.cn(cert))
      assert.are.same({ "alt-" .. cn, cn }, fixture.dns_names(cert))
      fixture.assert_issued_by_ca(sb, cert)
      -- the key in the bag belongs to the certificate
      assert.are.equal(cert:getPublicKey():toPEM("public"), key:toPEM("public"))
      -- the answer describes the same certificate
      assert.are.equal(cert:getSerial():toHex():upper():gsub("^0+", ""), info.SerialNumber:upper():gsub("^0+", ""))
      -- one call, one POST
      local posts = fixture.requests(sb, "POST", "/Enrollment/PFX")
      assert.are.equal(before + 1, #posts)
      assert.are.equal(200, posts[#posts].status)
    end)

    it("returns a PKCS#12 that does not open with a wrong password", function()
      local answer = fixture.enroll(kf, fixture.unique("pfx-wrong"))
      local blob = answer.CertificateInformation.Pkcs12Blob
      assert.is_truthy(pcall(fixture.open_pkcs12, blob, "pfx-pass-1"))
      assert.is_falsy(pcall(fixture.open_pkcs12, blob, "not-the-password"))
    end)

    it("accepts format \"Store\" (the seed's spelling): no PKCS#12, key kept server-side so deploy works", function()
      local cn = fixture.unique("store")
      local answer = assert(kf:enroll { Template = "WebServer", Subject = "CN=" .. cn, format = "Store" })
      local info = answer.CertificateInformation
      assert.are.equal("", info.Pkcs12Blob or "")
      assert.is_true(info.KeyfactorId > 0)
      local cert = assert(kf:certificate(info.KeyfactorId))
      assert.is_true(cert.HasPrivateKey)
      assert.are.equal(cn, cert.IssuedCN)
      local result = assert(kf:deploy { CertificateId = info.KeyfactorId, Stores = { { StoreId = web_pkcs12 } } })
      assert.are.same({ web_pkcs12 }, result.SuccessfulStores)
      assert.are.same({}, result.FailedStores)
    end)

    it("accepts format \"Zip\" and returns the bundle under the password", function()
      local answer = assert(kf:enroll {
        Template = "WebServer", Subject = "CN=" .. fixture.unique("zip"), Password = "zip-pass-1", format = "zip",
      })
      local blob = answer.CertificateInformation.Pkcs12Blob
      assert.is_true(#blob > 0)
      local raw = fixture.base64_decode(blob)
      if raw:sub(1, 4) ~= "PK\3\4" then
        -- the sandbox answers a PKCS#12 for Zip: then it must open with the password only
        assert.is_truthy(pcall(fixture.open_pkcs12, blob, "zip-pass-1"))
        assert.is_falsy(pcall(fixture.open_pkcs12, blob, "wrong"))
      end
    end)

    it("omits CertificateAuthority and gets the sandbox CA", function()
      local answer = fixture.enroll(kf, fixture.unique("noca"))
      assert.are.equal("CN=SandboxCA, O=Keyfactor Sandbox", answer.CertificateInformation.IssuerDN)
    end)

    it("answers nil, err with the server's message for an unknown template", function()
      local answer, err = kf:enroll { Template = "NoSuchTemplate", Subject = "CN=x.example.com", Password = "p-123456" }
      assert.is_nil(answer)
      assert.are.equal("http", err.kind)
      assert.are.equal(400, err.status)
      assert.matches("NoSuchTemplate", err.message, 1, true)
    end)
  end)

  describe("CSR", function()
    it("signs a local CSR: PEM certificate with the local public key, KeyfactorId normalised", function()
      local cn = fixture.unique("csr")
      local key, req = fixture.csr(cn, { cn })
      local answer = assert(kf:enroll { CSR = req:toPEM(), Template = "WebServer" })
      local info = answer.CertificateInformation
      -- the server spells it KeyfactorID; the client hands back KeyfactorId only
      assert.is_nil(info.KeyfactorID)
      assert.is_true(fixture.is_integer(info.KeyfactorId))
      assert.is_true(info.KeyfactorId > 0)
      assert.are.equal("string", type(info.Certificates[1]))
      assert.matches("^%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-", info.Certificates[1])
      local cert = fixture.x509(info.Certificates[1])
      assert.are.equal(key:toPEM("public"), cert:getPublicKey():toPEM("public"))
      assert.are.equal(cn, fixture.cn(cert))
      assert.are.same({ cn }, fixture.dns_names(cert))
      fixture.assert_issued_by_ca(sb, cert)
      local record = assert(kf:certificate(info.KeyfactorId))
      assert.are.equal(info.Thumbprint, record.Thumbprint)
    end)

    it("returns DER (base64) with format \"DER\"", function()
      local cn = fixture.unique("csr-der")
      local key, req = fixture.csr(cn)
      local answer = assert(kf:enroll { CSR = req:toPEM(), Template = "WebServer", format = "der" })
      local b64 = answer.CertificateInformation.Certificates[1]
      assert.is_nil(b64:find("BEGIN", 1, true))
      local x509 = require "openssl.x509"
      local cert = x509.new(fixture.base64_decode(b64), "DER")
      assert.are.equal(key:toPEM("public"), cert:getPublicKey():toPEM("public"))
      fixture.assert_issued_by_ca(sb, cert)
    end)

    it("answers nil, err kind \"http\" status 400 for a CSR with a broken signature", function()
      local _, req = fixture.csr(fixture.unique("csr-bad"))
      local der = req:tostring("DER")
      -- flip a bit in the last byte: inside the signature BIT STRING
      local last = der:byte(-1)
      local broken = der:sub(1, -2) .. string.char(last % 2 == 1 and last - 1 or last + 1)
      local b64 = require("openssl.x509.csr").new(broken, "DER"):toPEM()
      local answer, err = kf:enroll { CSR = b64, Template = "WebServer" }
      assert.is_nil(answer)
      assert.are.equal("http", err.kind)
      assert.are.equal(400, err.status)
      assert.are.equal("POST", err.method)
      assert.are.equal("/Enrollment/CSR", err.path)
    end)
  end)

  describe("approval template", function()
    it("returns only a request id; pending lists it; approve issues it; it deploys by RequestId", function()
      local cn = fixture.unique("approve")
      local answer = assert(kf:enroll { Template = "WebServerApproval", Subject = "CN=" .. cn, Password = "pw-4567" })
      local info = answer.CertificateInformation
      local request_id = info.KeyfactorRequestId
      assert.is_true(fixture.is_integer(request_id))
      assert.is_true((info.KeyfactorId or 0) == 0)
      assert.are.equal("", info.Pkcs12Blob or "")
      assert.are.equal("PENDING", info.RequestDisposition)

      local listed
      for item in kf:pending { query = "Id -eq " .. request_id } do listed = item end
      assert.is_not_nil(listed)
      assert.are.equal(request_id, listed.Id)
      assert.are.equal(cn, listed.CommonName)

      -- no certificate yet
      local none, err = kf:certificate { CertRequestId = request_id }
      assert.is_nil(none)
      assert.are.equal(404, err.status)

      local result = assert(kf:approve(request_id))
      assert.are.equal(1, #result.Successes)
      assert.are.equal(request_id, result.Successes[1].KeyfactorRequestId)

      local cert = assert(kf:certificate { CertRequestId = request_id })
      assert.are.equal(cn, cert.IssuedCN)
      assert.are.equal(request_id, cert.CertRequestId)

      local deployed = assert(kf:deploy { RequestId = request_id, Stores = { { StoreId = web_pkcs12 } } })
      assert.are.same({ web_pkcs12 }, deployed.SuccessfulStores)
      assert.is_true(kf:wait_deployed(cert.Id, { web_pkcs12 }, { timeout = 10, interval = 0.05 }))
    end)

    it("enrolls by CSR against the approval template as pending too", function()
      local _, req = fixture.csr(fixture.unique("approve-csr"))
      local answer = assert(kf:enroll { CSR = req:toPEM(), Template = "WebServerApproval" })
      local info = answer.CertificateInformation
      assert.is_nil(info.KeyfactorID)
      assert.are.equal(0, info.KeyfactorId)
      assert.is_true(info.KeyfactorRequestId > 0)
      assert.are.equal("PENDING", info.RequestDisposition)
    end)
  end)
end)
