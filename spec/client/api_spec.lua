-- The calls of the second round (DESIGN 6.1), made from the endpoint table,
-- against a live sandbox; material parsed back with luaossl.
local fixture = require "support.fixture"
local x509 = require "openssl.x509"

-- The PEM certificates of a DER P7B (luaossl reads no PKCS#7; the openssl
-- command lists them, luaossl parses each).
local function p7b_certificates(der)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(der)
  f:close()
  local p = assert(io.popen("openssl pkcs7 -inform DER -print_certs -in '" .. path .. "' 2>&1"))
  local text = p:read("a")
  p:close()
  os.remove(path)
  local out = {}
  for pem in text:gmatch("%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-.-%-%-%-%-%-END CERTIFICATE%-%-%-%-%-") do
    out[#out + 1] = x509.new(pem, "PEM")
  end
  return out
end

describe("second-round calls", function()
  local sb, kf, web_pem, broken

  local WAIT = { timeout = 10, interval = 0.05 }

  fixture.live(function(s, k)
    sb, kf = s, k
    web_pem = {}
    for store in kf:stores { query = "ContainerId -eq " .. fixture.WEB } do
      if store.ClientMachine == "broken.sandbox.local" then broken = store.Id
      elseif store.CertStoreType == kf:store_type("PEM").StoreType then web_pem[#web_pem + 1] = store.Id end
    end
    assert(broken and #web_pem >= 2)
  end)

  local function stored(prefix)
    return assert(kf:enroll { Template = "WebServer", Subject = "CN=" .. fixture.unique(prefix),
      format = "STORE" }).CertificateInformation
  end

  describe("kf:recover", function()
    it("answers a PKCS#12 that opens with its password, whose key matches the certificate", function()
      local info = stored("recover")
      local r = assert(kf:recover { CertID = info.KeyfactorId, Password = "recover-pw", IncludeChain = true })
      local key, cert = fixture.open_pkcs12(r.PFX, "recover-pw")
      assert.are.equal(cert:getPublicKey():toPEM("public"), key:toPEM("public"))
      assert.are.equal(info.Thumbprint:upper(), cert:digest("sha1", "x"):upper())
    end)

    it("is nil, err when the server has no key (PFX enrollment keeps none)", function()
      local info = fixture.enroll(kf, fixture.unique("nokey")).CertificateInformation
      local r, err = kf:recover { CertID = info.KeyfactorId, Password = "recover-pw" }
      assert.is_nil(r)
      assert.are.equal("http", err.kind)
      assert.is_not_nil(err.status)
    end)

    it("requires Password and an identifier before sending", function()
      local before = fixture.request_count(sb)
      fixture.raises(function() kf:recover { CertID = 1 } end, "kf:recover: Password is required")
      fixture.raises(function() kf:recover { Password = "x" } end, "kf:recover: CertID, Thumbprint or SerialNumber")
      fixture.raises(function() kf:recover { CertId = 1, Password = "x" } end,
        "kf:recover: CertId is not a known field (did you mean CertID?)")
      assert.are.equal(before, fixture.request_count(sb))
    end)
  end)

  describe("kf:download", function()
    it("answers a P7B holding the certificate then its CA, or the CA first with RootFirst", function()
      local info = fixture.enroll(kf, fixture.unique("p7b")).CertificateInformation
      local d = assert(kf:download { CertID = info.KeyfactorId, IncludeChain = true })
      local certs = p7b_certificates(fixture.base64_decode(d.Content))
      assert.are.equal(2, #certs)
      assert.are.equal(info.Thumbprint:upper(), certs[1]:digest("sha1", "x"):upper())
      local ca = fixture.ca_certificate(sb)
      assert.are.equal(ca:digest("sha1", "x"), certs[2]:digest("sha1", "x"))
      local root_first = assert(kf:download { CertID = info.KeyfactorId, IncludeChain = true,
        ChainOrder = "RootFirst" })
      certs = p7b_certificates(fixture.base64_decode(root_first.Content))
      assert.are.equal(ca:digest("sha1", "x"), certs[1]:digest("sha1", "x"))
    end)

    it("answers PEM with format = \"PEM\"", function()
      local info = fixture.enroll(kf, fixture.unique("pem")).CertificateInformation
      local d = assert(kf:download { Thumbprint = info.Thumbprint, format = "PEM" })
      local pem = fixture.base64_decode(d.Content)
      local cert = x509.new(pem, "PEM")
      assert.are.equal(info.Thumbprint:upper(), cert:digest("sha1", "x"):upper())
      local sent = fixture.requests(sb, "POST", "/Certificates/Download")
      assert.is_true(#sent >= 1)
    end)
  end)

  describe("stores", function()
    it("add_to_stores / remove_from_stores change the inventory and Locations; inventory iterates", function()
      local info = stored("add")
      local jobs = assert(kf:add_to_stores { CertificateId = info.KeyfactorId,
        CertificateStores = { { CertificateStoreId = web_pem[2], Alias = "added" } } })
      assert.is_table(jobs)
      assert.is_true(kf:wait_deployed(info.KeyfactorId, web_pem[2], WAIT))
      local names = {}
      for item in kf:inventory(web_pem[2]) do names[item.Name] = item end
      assert.is_not_nil(names.added)
      assert(kf:remove_from_stores { CertificateStores = { { CertificateStoreId = web_pem[2], Alias = "added" } } })
      assert.is_truthy(fixture.poll(function()
        local cert = assert(kf:certificate(info.KeyfactorId, { includeLocations = true }))
        for _, loc in ipairs(cert.Locations or {}) do
          if loc.CertStoreId == web_pem[2] then return false end
        end
        return true
      end))
    end)

    it("create_store, update_store, delete_store", function()
      local agent
      for a in kf:agents() do agent = agent or a.AgentId end
      assert.is_string(agent)
      assert.are.equal(agent, kf:agent(agent).AgentId)
      local store = assert(kf:create_store { ClientMachine = "web01.sandbox.local",
        StorePath = "/etc/ssl/" .. fixture.unique("new") .. ".pem",
        CertStoreType = kf:store_type("PEM").StoreType, ContainerId = fixture.WEB, AgentId = agent })
      assert.is_string(store.Id)
      assert.are.equal(store.Id, kf:store(store.Id).Id)
      assert(kf:update_store { Id = store.Id, ClientMachine = store.ClientMachine, StorePath = store.StorePath,
        CertStoreType = store.CertStoreType, ContainerId = fixture.RESTRICTED, AgentId = agent })
      assert.are.equal(fixture.RESTRICTED, kf:store(store.Id).ContainerId)
      assert.is_true(kf:delete_store(store.Id))
      local gone, err = kf:store(store.Id)
      assert.is_nil(gone)
      assert.are.equal(404, err.status)
    end)

    it("wait_deployed fails fast with kind \"job\" when the broken store's job failed", function()
      local info = stored("broken")
      -- the deploy is accepted (a job is scheduled); the job fails later
      assert(kf:deploy { CertificateId = info.KeyfactorId, Password = "entry-pass", Stores = { { StoreId = broken } } })
      local ok, err = kf:wait_deployed(info.KeyfactorId, { broken }, { timeout = 30, interval = 0.05 })
      assert.is_nil(ok)
      assert.matches("connection refused", err.message, 1, true)
      assert.are.equal("job", err.kind)
      assert.are.equal(broken, err.store)
      assert.is_string(err.message)
      local failed
      for job in kf:job_history { query = "Result -eq 3" } do failed = failed or job end
      assert.are.equal(3, failed.Result)
    end)

    it("enroll with Stores deploys in one call (API version 2)", function()
      local e = assert(kf:enroll { Template = "WebServer", Subject = "CN=" .. fixture.unique("v2"),
        Password = "v2-pass", Stores = { { StoreId = web_pem[1], Alias = "v2" } } })
      assert.are.same({ web_pem[1] }, e.SuccessfulStores)
      local sent = fixture.requests(sb, "POST", "/Enrollment/PFX")
      local headers = sent[#sent].headers or {}
      local version
      for k, value in pairs(headers) do if k:lower() == "x-keyfactor-api-version" then version = value end end
      if next(headers) then assert.are.equal("2", version) end
      assert.is_true(kf:wait_deployed(e.CertificateInformation.KeyfactorId, web_pem[1], WAIT))
    end)

    it("replace puts the new certificate where the old one is", function()
      local old = stored("old")
      assert(kf:deploy { CertificateId = old.KeyfactorId, Password = "entry-pass",
        Stores = { { StoreId = web_pem[1], Alias = "old" } } })
      assert.is_true(kf:wait_deployed(old.KeyfactorId, web_pem[1], WAIT))
      local new = stored("new")
      local r = assert(kf:replace { ExistingCertificateId = old.KeyfactorId, CertificateId = new.KeyfactorId,
        Password = "entry-pass" })
      assert.is_table(r.SuccessfulStores)
      assert.is_true(kf:wait_deployed(new.KeyfactorId, web_pem[1], WAIT))
    end)
  end)

  describe("catalog", function()
    it("metadata_fields, set_metadata", function()
      local names = {}
      for _, f in ipairs(assert(kf:metadata_fields())) do names[f.Name] = f end
      assert.is_not_nil(names.Owner)
      local info = fixture.enroll(kf, fixture.unique("meta")).CertificateInformation
      assert.is_true(kf:set_metadata(info.KeyfactorId, { Owner = "web team" }))
      assert.are.equal("web team", kf:certificate(info.KeyfactorId, { includeMetadata = true }).Metadata.Owner)
      local none, err = kf:set_metadata(info.KeyfactorId, { NoSuchField = "x" })
      assert.is_nil(none)
      assert.are.equal("http", err.kind)
    end)

    it("templates, template, certificate_authorities, store_type, container", function()
      local templates = assert(kf:templates())
      assert.is_true(#templates >= 1)
      assert.are.equal(templates[1].Id, kf:template(templates[1].Id).Id)
      assert.is_true(#assert(kf:certificate_authorities()) >= 1)
      local pem = assert(kf:store_type("PEM"))
      assert.are.equal("PEM", pem.ShortName)
      assert.are.equal("PEM", kf:store_type(pem.StoreType).ShortName)
      local none, err = kf:store_type("NoSuchType")
      assert.is_nil(none)
      assert.are.equal(404, err.status)
      assert.are.equal(fixture.WEB, kf:container(fixture.WEB).Id)
    end)

    it("denied iterates over denied requests", function()
      local e = assert(kf:enroll { Template = "WebServerApproval", Subject = "CN=" .. fixture.unique("deny"),
        Password = "deny-pass" })
      local id = e.CertificateInformation.KeyfactorRequestId
      assert(kf:deny(id, "no"))
      local found
      for r in kf:denied() do if r.Id == id then found = r end end
      assert.is_not_nil(found)
    end)
  end)
end)
