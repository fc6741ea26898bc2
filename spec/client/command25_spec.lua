-- kf:enroll as Keyfactor Command 25 takes it (enrollment patterns, key
-- choices, owner roles, PEM and JKS files), kf:enrollment_patterns and
-- kf:enrollment_pattern, and `extra` fields, against a live sandbox; every
-- key and certificate is parsed back with luaossl (and JKS with keytool).
local fixture = require "support.fixture"
local pkey = require "openssl.pkey"
local x509 = require "openssl.x509"

-- "RSA", bits or "EC", curve OID of a luaossl key.
local CURVES = { ["BggqhkjOPQMBBw=="] = "1.2.840.10045.3.1.7", ["BgUrgQQAIg=="] = "1.3.132.0.34" }
local function key_of(key)
  local params = key:getParameters()
  if params.n then return "RSA", #params.n:toBinary() * 8 end
  return "EC", CURVES[tostring(params.group:toPEM()):match("%-%-%-%-%-\n(.-)\n%-%-%-%-%-END")]
end

local function have(command)
  local _, code = fixture.sh("command -v " .. command .. " >/dev/null")
  return code == 0
end

local write = require("support.files").write

describe("Command 25 enrollment", function()
  local sb, kf

  fixture.live(function(s, k) sb, kf = s, k end)

  local function pfx(req)
    local base = { Subject = "CN=" .. fixture.unique("c25"), Password = "pfx-pass-25" }
    for name, value in pairs(req) do base[name] = value end
    return kf:enroll(base)
  end

  describe("enrollment patterns", function()
    it("kf:enrollment_patterns pages through the seed patterns, one per template and named like it", function()
      local all = fixture.collect(kf:enrollment_patterns { page_size = 1 })
      assert.are.equal(2, #all)
      assert.are.same({ "WebServer", "WebServerApproval" }, { all[1].Name, all[2].Name })
      for _, pattern in ipairs(all) do
        assert.are.equal(pattern.Name, pattern.Template.CommonName)
        assert.is_true(fixture.is_integer(pattern.Id))
      end
      assert.is_true(all[2].Template.RequiresApproval)
      -- one request a page (and the empty page after the last short one is not needed: size 1 pages)
      local pages = fixture.requests(sb, "GET", "/EnrollmentPatterns")
      assert.is_true(#pages >= 2)
    end)

    it("filters with the query language and reads one pattern by id", function()
      local found = fixture.collect(kf:enrollment_patterns { query = 'Name -eq "WebServerApproval"' })
      assert.are.equal(1, #found)
      local one = assert(kf:enrollment_pattern(found[1].Id))
      assert.are.equal("WebServerApproval", one.Name)
      assert.are.same({ 2048, 3072, 4096 }, one.Policies.KeyInfo.RSA.BitLengths)
      local missing, err = kf:enrollment_pattern(999)
      assert.is_nil(missing)
      assert.are.equal(404, err.status)
    end)
  end)

  describe("by pattern", function()
    it("enrolls a PFX by pattern id, without Template, and the request carries EnrollmentPatternId only", function()
      local cn = fixture.unique("by-id")
      local answer = assert(kf:enroll { EnrollmentPatternId = 1, Subject = "CN=" .. cn, Password = "pw-1" })
      local info = answer.CertificateInformation
      local _, cert = fixture.open_pkcs12(info.Pkcs12Blob, "pw-1")
      assert.are.equal(cn, fixture.cn(cert))
      fixture.assert_issued_by_ca(sb, cert)
      assert.are.equal("WebServer", assert(kf:certificate(info.KeyfactorId)).TemplateName)
    end)

    it("enrolls by pattern name (looked up through GET /EnrollmentPatterns first), PFX and CSR", function()
      local before = #fixture.requests(sb, "GET", "/EnrollmentPatterns")
      local answer = assert(pfx { EnrollmentPattern = "WebServer" })
      assert.is_true(answer.CertificateInformation.KeyfactorId > 0)
      assert.are.equal(before + 1, #fixture.requests(sb, "GET", "/EnrollmentPatterns"))
      local key, csr = fixture.csr(fixture.unique("csr-pattern"))
      local signed = assert(kf:enroll { EnrollmentPattern = "WebServer", CSR = csr:toPEM() })
      local cert = fixture.x509(signed.CertificateInformation.Certificates[1])
      assert.are.equal(key:toPEM("public"), cert:getPublicKey():toPEM("public"))
      -- by id too, and the CSR call's forceEnroll query parameter
      signed = assert(kf:enroll { EnrollmentPatternId = 1, CSR = csr:toPEM(), forceEnroll = true })
      assert.is_true(signed.CertificateInformation.KeyfactorId > 0)
      local log = fixture.requests(sb, "POST", "/Enrollment/CSR")
      assert.are.equal(200, log[#log].status)
    end)

    it("answers nil, err (404) for a pattern name that does not exist, and sends no enrollment", function()
      local before = #fixture.requests(sb, "POST", "/Enrollment/PFX")
      local answer, err = pfx { EnrollmentPattern = "NoSuchPattern" }
      assert.is_nil(answer)
      assert.are.equal(404, err.status)
      assert.truthy(err.message:find("NoSuchPattern", 1, true))
      assert.are.equal(before, #fixture.requests(sb, "POST", "/Enrollment/PFX"))
    end)

    it("a pattern that needs approval starts a pending request", function()
      local answer = assert(pfx { EnrollmentPattern = "WebServerApproval" })
      assert.are.equal(0, answer.CertificateInformation.KeyfactorId)
      assert.is_true(answer.CertificateInformation.KeyfactorRequestId > 0)
    end)
  end)

  describe("keys of the requested type and size", function()
    for _, case in ipairs {
      { "RSA", 2048, {} }, { "RSA", 3072, { KeyType = "RSA", KeyLength = 3072 } },
      { "RSA", 4096, { KeyLength = 4096 } },
      { "EC", "1.2.840.10045.3.1.7", { KeyType = "ECC" } },
      { "EC", "1.3.132.0.34", { KeyType = "ECC", Curve = "1.3.132.0.34" } },
    } do
      it(string.format("%s %s in the PKCS#12, and in the certificate record", case[1], case[2]), function()
        local req = { EnrollmentPatternId = 1 }
        for k, value in pairs(case[3]) do req[k] = value end
        local info = assert(pfx(req)).CertificateInformation
        local key, cert = fixture.open_pkcs12(info.Pkcs12Blob, "pfx-pass-25")
        assert.are.same({ case[1], case[2] }, { key_of(key) })
        assert.are.same({ case[1], case[2] }, { key_of(cert:getPublicKey()) })
        local record = assert(kf:certificate(info.KeyfactorId))
        assert.are.equal(case[1] == "RSA" and 1 or 3, record.KeyType)
        if case[1] == "RSA" then assert.are.equal(case[2], record.KeySizeInBits)
        else assert.are.equal(case[2], record.Curve) end
      end)
    end

    it("refuses sizes and curves the pattern does not allow with Keyfactor's 400", function()
      for _, req in ipairs { { KeyLength = 1024 }, { KeyType = "ECC", Curve = "1.3.132.0.35" },
                             { KeyType = "Ed25519" } } do
        req.EnrollmentPatternId = 1
        local answer, err = pfx(req)
        assert.is_nil(answer)
        assert.are.equal(400, err.status)
        assert.truthy(err.code)
        assert.truthy(err.message:find("not allowed", 1, true), err.message)
      end
    end)
  end)

  describe("PFX formats", function()
    it("PEM: the key encrypted under the password, then the certificate and chain with subject headers", function()
      local cn = fixture.unique("pem")
      local info = assert(pfx { EnrollmentPatternId = 1, Subject = "CN=" .. cn, format = "PEM", IncludeChain = true,
        IncludeSubjectHeader = true, ChainOrder = "EndEntityFirst", KeyType = "ECC" }).CertificateInformation
      local text = fixture.base64_decode(info.Pkcs12Blob)
      assert.truthy(text:find("-----BEGIN ENCRYPTED PRIVATE KEY-----", 1, true))
      local certs = {}
      for block in text:gmatch("%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-.-%-%-%-%-%-END CERTIFICATE%-%-%-%-%-") do
        certs[#certs + 1] = x509.new(block, "PEM")
      end
      assert.are.equal(2, #certs)
      assert.are.equal(cn, fixture.cn(certs[1]))
      assert.truthy(text:find("subject=CN=" .. cn, 1, true))
      -- the key opens with the password (openssl) and belongs to the certificate
      local path = os.tmpname()
      write(path, text)
      local out, code = fixture.sh("openssl pkey -in " .. path .. " -passin pass:pfx-pass-25")
      os.remove(path)
      assert.are.equal(0, code, out)
      local key = pkey.new(out:match("%-%-%-%-%-BEGIN PRIVATE KEY.-END PRIVATE KEY%-%-%-%-%-\n?"), "PEM")
      assert.are.equal(certs[1]:getPublicKey():toPEM("public"), key:toPEM("public"))
    end)

    it("JKS: a Java KeyStore keytool opens with the password, holding the key and its chain", function()
      if not have("keytool") then return pending("keytool (Java) is not installed") end
      local cn = fixture.unique("jks")
      local info = assert(pfx { EnrollmentPatternId = 1, Subject = "CN=" .. cn, format = "JKS", IncludeChain = true,
        KeyLength = 3072 }).CertificateInformation
      local jks, p12 = os.tmpname(), os.tmpname()
      os.remove(p12)
      write(jks, fixture.base64_decode(info.Pkcs12Blob))
      local out, code = fixture.sh(string.format("keytool -list -v -storetype JKS -keystore %s -storepass pfx-pass-25",
        jks))
      assert.are.equal(0, code, out)
      assert.truthy(out:find("PrivateKeyEntry", 1, true), out)
      assert.truthy(out:find("Certificate chain length: 2", 1, true), out)
      local _, wrong = fixture.sh("keytool -list -storetype JKS -keystore " .. jks .. " -storepass not-it")
      assert.are_not.equal(0, wrong)
      -- keytool decrypts the key to convert it: then luaossl checks it
      out, code = fixture.sh(string.format("keytool -importkeystore -srckeystore %s -srcstoretype JKS "
        .. "-srcstorepass pfx-pass-25 -destkeystore %s -deststoretype PKCS12 -deststorepass pfx-pass-25", jks, p12))
      assert.are.equal(0, code, out)
      local f = assert(io.open(p12, "rb"))
      local key, cert = require("openssl.pkcs12").parse(f:read("a"), "pfx-pass-25")
      f:close()
      os.remove(jks)
      os.remove(p12)
      assert.are.equal(cn, fixture.cn(cert))
      assert.are.same({ "RSA", 3072 }, { key_of(key) })
      assert.are.equal(cert:getPublicKey():toPEM("public"), key:toPEM("public"))
    end)
  end)

  describe("owner roles", function()
    it("accepts a role the requester holds, by name and by id", function()
      assert(pfx { EnrollmentPatternId = 1, OwnerRoleName = "Administrator" })
      assert(pfx { EnrollmentPatternId = 1, OwnerRoleId = 1 })
    end)

    it("refuses a role the requester does not hold, and one that does not exist", function()
      local operator = fixture.operator(sb)
      local answer, err = operator:enroll { EnrollmentPatternId = 1, Subject = "CN=" .. fixture.unique("op"),
        Password = "pw", OwnerRoleName = "Administrator" }
      operator:close()
      assert.is_nil(answer)
      assert.are.equal(400, err.status)
      assert.truthy(err.message:find("Administrator", 1, true))
      answer, err = pfx { EnrollmentPatternId = 1, OwnerRoleId = 999 }
      assert.is_nil(answer)
      assert.are.equal(400, err.status)
    end)
  end)

  describe("fields the endpoint table does not know yet (extra)", function()
    it("reach the server: the sandbox's ValidityDays extension shortens the certificate", function()
      local info = assert(pfx { EnrollmentPatternId = 1, extra = { ValidityDays = 30 } }).CertificateInformation
      local _, cert = fixture.open_pkcs12(info.Pkcs12Blob, "pfx-pass-25")
      local _, not_after = cert:getLifetime()
      local days = (not_after - os.time()) / 86400
      assert.is_true(days > 29 and days < 31, "valid for " .. days .. " days")
    end)

    it("keep the checks of the known fields, and a known field in extra is refused", function()
      fixture.raises(function() kf:enroll { EnrollmentPatternId = 1, Subject = 7, extra = { X = 1 } } end,
        "kf:enroll: Subject must be a string")
      fixture.raises(function() kf:enroll { EnrollmentPatternId = 1, Subject = "CN=a", Password = "p",
        extra = { KeyType = "RSA" } } end, "kf:enroll: extra.KeyType is a known field")
      fixture.raises(function() kf:enroll { EnrollmentPatternId = 1, Subject = "CN=a", Password = "p",
        extra = "ValidityDays" } end, "kf:enroll: extra must be a table")
    end)

    it("are redacted like secrets when their name says so", function()
      -- the server echoes an unknown template's name: here the extra field's value
      local answer, err = kf:enroll { Template = "tpl-s3cret-77", Subject = "CN=a.example.com",
        Password = "pfx-pass-25", extra = { SigningKeyPassword = "tpl-s3cret-77" } }
      assert.is_nil(answer)
      assert.are.equal(400, err.status)
      assert.is_nil(tostring(err):find("tpl-s3cret-77", 1, true), tostring(err))
      assert.is_nil(err.message:find("tpl-s3cret-77", 1, true))
    end)

    it("pass into the query of an iterator (opts.extra)", function()
      local found = fixture.collect(kf:enrollment_patterns { extra = { QueryString = 'Name -eq "WebServer"' } })
      assert.are.equal(1, #found)
    end)
  end)

  describe("validation before anything is sent", function()
    it("names the field", function()
      local before = fixture.request_count(sb)
      fixture.raises(function() kf:enroll { Subject = "CN=a", Password = "p" } end,
        "kf:enroll: EnrollmentPatternId, EnrollmentPattern (a pattern name) or Template is required")
      fixture.raises(function() kf:enroll { EnrollmentPatternId = "1", Subject = "CN=a", Password = "p" } end,
        "kf:enroll: EnrollmentPatternId must be an integer")
      fixture.raises(function() kf:enroll { EnrollmentPatternId = 1, Subject = "CN=a", Password = "p",
        KeyType = "DSA" } end, "kf:enroll: KeyType must be one of")
      fixture.raises(function() kf:enroll { EnrollmentPatternId = 1, Subject = "CN=a", Password = "p",
        KeyLenght = 2048 } end, "KeyLenght is not a known field (did you mean KeyLength?)")
      fixture.raises(function() kf:enroll { EnrollmentPatternId = 1, Subject = "CN=a", format = "JKS" } end,
        "kf:enroll: Password is required for format \"JKS\"")
      fixture.raises(function() kf:enroll { EnrollmentPatternId = 1, Subject = "CN=a", Password = "p",
        AlternativeKeyType = "ML-DSA-44" } end, "kf:enroll: AlternativeKeyType needs Stores")
      fixture.raises(function() kf:enroll { EnrollmentPatternId = 1, EnrollmentPattern = "WebServer",
        Subject = "CN=a", Password = "p" } end, "not both")
      fixture.raises(function() kf:enroll { EnrollmentPatternId = 1, Subject = "CN=a", Password = "p",
        format = "DER" } end, "format \"DER\" is for a CSR enrollment")
      fixture.raises(function() kf:enroll { EnrollmentPatternId = 1, CSR = "x", forceEnroll = "yes" } end,
        "kf:enroll: forceEnroll must be a boolean")
      assert.are.equal(before, fixture.request_count(sb))
    end)
  end)
end)

describe("a 2022-generation sandbox", function()
  local sb, kf

  lazy_setup(function()
    sb = fixture.sandbox { generation = "2022" }
    kf = fixture.client(sb)
  end)
  lazy_teardown(function()
    if kf then kf:close() end
    if sb then sb:stop() end
  end)

  it("refuses enrollment by pattern (Template is required there) and has no patterns", function()
    local answer, err = kf:enroll { EnrollmentPatternId = 1, Subject = "CN=" .. fixture.unique("old"),
      Password = "pw-2022-old" }
    assert.is_nil(answer)
    assert.are.equal(400, err.status)
    assert.truthy(err.message:find("Template", 1, true))
    answer, err = kf:enroll { EnrollmentPattern = "WebServer", Subject = "CN=a.example.com", Password = "pw-2022-old" }
    assert.is_nil(answer)
    assert.are.equal(404, err.status)
    local ok, raised = pcall(fixture.collect, kf:enrollment_patterns())
    assert.is_false(ok)
    assert.are.equal(404, raised.status)
  end)

  it("refuses the PEM and JKS formats, and enrolls by template with an RSA 2048 key", function()
    local answer, err = kf:enroll { Template = "WebServer", Subject = "CN=a.example.com", Password = "pw-2022-old",
      format = "PEM" }
    assert.is_nil(answer)
    assert.are.equal(400, err.status)
    local info = assert(kf:enroll { Template = "WebServer", Subject = "CN=" .. fixture.unique("old"),
      Password = "pw-2022-old", KeyType = "ECC" }).CertificateInformation
    local key = fixture.open_pkcs12(info.Pkcs12Blob, "pw-2022-old")
    assert.are.same({ "RSA", 2048 }, { key_of(key) })   -- the 2022 request has no KeyType: ignored
    assert.is_nil(info.WorkflowInstanceId)              -- and its answer no Command 25 fields
  end)
end)
