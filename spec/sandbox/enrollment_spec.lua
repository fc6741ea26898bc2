-- Enrollment against a live sandbox over HTTPS (curl), certificates parsed with luaossl.
local sandbox = require "keyfactor.sandbox"

-- "CN=x, O=y" (tostring of a luaossl name may use the "/CN=x/O=y" form)
local function dn(name)
  local parts = {}
  for k, v in pairs(name) do parts[#parts + 1] = k .. "=" .. v end
  return table.concat(parts, ", ")
end
local x509 = require "openssl.x509"
local pkcs12 = require "openssl.pkcs12"
local pkey = require "openssl.pkey"
local csr_mod = require "openssl.x509.csr"
local xname = require "openssl.x509.name"
local altname = require "openssl.x509.altname"

local function unbase64(s)
  local p = io.popen("base64 -d > /tmp/kf-sandbox-b64.bin", "w")
  p:write(s)
  p:close()
  local f = assert(io.open("/tmp/kf-sandbox-b64.bin", "rb"))
  local data = f:read("a")
  f:close()
  os.remove("/tmp/kf-sandbox-b64.bin")
  return data
end

local function sans_of(cert)
  local out = {}
  for kind, v in pairs(cert:getSubjectAlt() or {}) do out[#out + 1] = kind .. ":" .. v end
  table.sort(out)
  return table.concat(out, ",")
end

local function make_csr(cn, dns)
  local key = pkey.new{ type = "EC", curve = "prime256v1" }
  local req = csr_mod.new()
  local n = xname.new()
  n:add("CN", cn)
  n:add("O", "Example")
  req:setSubject(n)
  req:setPublicKey(key)
  if dns then
    local an = altname.new()
    an:add("DNS", dns)
    req:setSubjectAlt(an)
  end
  req:sign(key)
  return req:toPEM(), key
end

local function cert_path(id) return string.format("/Certificates/%d", id) end

describe("sandbox enrollment", function()
  local sb

  lazy_setup(function() sb = sandbox.start{ port = 0, job_delay = 0.1 } end)
  lazy_teardown(function() if sb then sb:stop() end end)

  local function pfx(body, format)
    return sb:http("POST", "/Enrollment/PFX", { body = body, headers = { ["x-certificateformat"] = format or "PFX" } })
  end

  local base = { Template = "WebServer", Subject = "CN=web1.example.com,O=Example,C=US", Password = "s3cret",
    SANs = { dns = { "web1.example.com", "www.example.com" }, ip4 = { "10.1.2.3" } },
    Timestamp = "2024-05-01T10:00:00.123456Z", Metadata = { Owner = "team-a" } }

  it("issues a real PKCS#12 under the password, with the subject and SANs", function()
    local status, body = pfx(base)
    assert.equals(200, status)
    local info = body.CertificateInformation
    assert.equals("ISSUED", info.RequestDisposition)
    assert.is_true(info.KeyfactorId > 0)
    assert.is_true(info.KeyfactorRequestId > 0)
    assert.equals("team-a", body.Metadata.Owner)
    local key, cert = pkcs12.parse(unbase64(info.Pkcs12Blob), "s3cret")
    assert.truthy(key)
    assert.equals("CN=web1.example.com, O=Example, C=US", dn(cert:getSubject()))
    assert.equals("DNS:web1.example.com,DNS:www.example.com,IP:10.1.2.3", sans_of(cert))
    assert.equals(info.Thumbprint, cert:digest("sha1", "x"):upper())
    assert.equals(info.SerialNumber, cert:getSerial():toHex():upper())
    local ca = x509.new(assert(io.open(sb.ca_file)):read("a"))
    assert.is_true(cert:isIssuedBy(ca))
    assert.equals(dn(ca:getSubject()), info.IssuerDN)
    local _, not_after = cert:getLifetime()
    assert.is_true(math.abs(not_after - (os.time() + 365 * 86400)) < 3 * 86400)
    assert.equals(2048, #key:getParameters().n:toBinary() * 8)
  end)

  it("includes the CA in the PKCS#12 with IncludeChain", function()
    local b = { Template = "WebServer", Subject = "CN=chain.example.com", Password = "pw", IncludeChain = true }
    local status, body = pfx(b)
    assert.equals(200, status)
    local _, _, chain = pkcs12.parse(unbase64(body.CertificateInformation.Pkcs12Blob), "pw")
    assert.truthy(chain)
    local n = 0
    for _ in pairs(chain) do n = n + 1 end
    assert.equals(1, n)
  end)

  it("keeps the key server-side for STORE (any case) and returns an empty blob", function()
    for _, format in ipairs{ "STORE", "Store", "store" } do
      local status, body = pfx({ Template = "WebServer", Subject = "CN=store.example.com" }, format)
      assert.equals(200, status)
      assert.equals("", body.CertificateInformation.Pkcs12Blob)
      local _, cert = sb:http("GET", cert_path(body.CertificateInformation.KeyfactorId))
      assert.is_true(cert.HasPrivateKey)
      assert.is_true(cert.KeyRecoverable)
    end
    local _, body = pfx(base)
    local _, cert = sb:http("GET", cert_path(body.CertificateInformation.KeyfactorId))
    assert.is_false(cert.HasPrivateKey)
  end)

  it("requires and checks x-certificateformat", function()
    local status, body = sb:http("POST", "/Enrollment/PFX", { body = base })
    assert.equals(400, status)
    assert.matches("x%-certificateformat", body.Message)
    assert.matches("^0x%x+$", body.ErrorCode)
    assert.equals(400, (pfx(base, "P7B")))
  end)

  it("validates the body", function()
    local function without(field)
      local b = {}
      for k, v in pairs(base) do if k ~= field then b[k] = v end end
      return b
    end
    local cases = {
      { without("Template"), "Template" },
      { without("Subject"), "Subject" },
      { without("Password"), "Password" },
      { { Template = "Nope", Subject = "CN=x", Password = "p" }, "Nope" },
      { { Template = "WebServer", Subject = "O=NoCN", Password = "p" }, "CN" },
      { { Template = 5, Subject = "CN=x", Password = "p" }, "Template" },
      { { Template = "WebServer", Subject = "CN=x", Password = "p", CertificateAuthority = "other\\CA" }, "other" },
      { { Template = "WebServer", Subject = "CN=x", Password = "p", RenewalCertificateId = 0 },
        "RenewalCertificateId" },
      { { Template = "WebServer", Subject = "CN=x", Password = "p", IncludeChain = "yes" }, "IncludeChain" },
      { { Template = "WebServer", Subject = "CN=x", Password = "p", Timestamp = "yesterday" }, "Timestamp" },
      { { Template = "WebServer", Subject = "CN=x", Password = "p", SANs = { dns = "a" } }, "SANs" },
    }
    for _, case in ipairs(cases) do
      local status, body = pfx(case[1])
      assert.equals(400, status)
      assert.matches(case[2], body.Message, 1, true)
    end
    local status, body = sb:http("POST", "/Enrollment/PFX",
      { body = "{not json", headers = { ["x-certificateformat"] = "PFX" } })
    assert.equals(400, status)
    assert.matches("JSON", body.Message)
  end)

  it("accepts the default CA name explicitly", function()
    local b = { Template = "WebServer", Subject = "CN=ca.example.com", Password = "p",
      CertificateAuthority = "sandbox.local\\SandboxCA" }
    assert.equals(200, (pfx(b)))
  end)

  it("issues already expired certificates with ValidityDays", function()
    local _, body = pfx{ Template = "WebServer", Subject = "CN=old.example.com", Password = "p", ValidityDays = -1 }
    local status, cert = sb:http("GET", cert_path(body.CertificateInformation.KeyfactorId))
    assert.equals(200, status)
    assert.is_true(cert.NotAfter < os.date("!%Y-%m-%dT%H:%M:%SZ"))
  end)

  describe("CSR", function()
    local function csr(body, format)
      return sb:http("POST", "/Enrollment/CSR", { body = body,
        headers = { ["x-certificateformat"] = format or "PEM" } })
    end

    it("signs a CSR with its subject and public key, merging SANs", function()
      local pem, key = make_csr("csr.example.com", "csr.example.com")
      local status, body = csr{ CSR = pem, Template = "WebServer", IncludeChain = true,
        SANs = { dns = { "alt.example.com" } } }
      assert.equals(200, status)
      local info = body.CertificateInformation
      assert.is_true(info.KeyfactorID > 0)
      assert.is_nil(info.KeyfactorId)
      assert.equals(2, #info.Certificates)
      local cert = x509.new(info.Certificates[1])
      assert.equals("CN=csr.example.com, O=Example", dn(cert:getSubject()))
      assert.equals(key:toPEM("public"), cert:getPublicKey():toPEM("public"))
      assert.equals("DNS:alt.example.com,DNS:csr.example.com", sans_of(cert))
      assert.equals(dn(x509.new(info.Certificates[2]):getSubject()), info.IssuerDN)
    end)

    it("accepts base64 without header lines and answers DER", function()
      local pem = make_csr("der.example.com")
      local bare = pem:gsub("%-%-%-%-%-[%u ]+%-%-%-%-%-", ""):gsub("%s", "")
      local status, body = csr({ CSR = bare, Template = "WebServer" }, "DER")
      assert.equals(200, status)
      assert.equals(1, #body.CertificateInformation.Certificates)
      assert.truthy(x509.new(unbase64(body.CertificateInformation.Certificates[1]), "DER"))
    end)

    it("rejects a CSR whose signature does not verify", function()
      local pem = make_csr("tampered.example.com")
      local lines = {}
      for line in pem:gmatch("[^\n]+") do lines[#lines + 1] = line end
      -- flip a character inside the signed subject (second base64 line)
      local l = lines[2]
      local c = l:sub(10, 10)
      lines[2] = l:sub(1, 9) .. (c == "A" and "B" or "A") .. l:sub(11)
      local status, body = csr{ CSR = table.concat(lines, "\n"), Template = "WebServer" }
      assert.equals(400, status)
      assert.matches("CSR", body.Message)
    end)

    it("validates CSR requests", function()
      assert.equals(400, (csr{ Template = "WebServer" }))
      assert.equals(400, (csr{ CSR = "garbage!!", Template = "WebServer" }))
      assert.equals(400, (csr({ CSR = make_csr("x.example.com"), Template = "WebServer" }, "PFX")))
    end)
  end)

  describe("renew and revoke", function()
    it("renews with a new key, same subject and SANs, retained server-side", function()
      local _, body = pfx(base)
      local old_id = body.CertificateInformation.KeyfactorId
      local status, renewed = sb:http("POST", "/Enrollment/Renew", { body = { CertificateId = old_id } })
      assert.equals(200, status)
      assert.equals("ISSUED", renewed.RequestDisposition)
      assert.are_not.equal(old_id, renewed.KeyfactorId)
      local _, old = sb:http("GET", cert_path(old_id))
      local _, new = sb:http("GET", cert_path(renewed.KeyfactorId))
      assert.equals(old.IssuedDN, new.IssuedDN)
      assert.equals(#old.SubjectAltNameElements, #new.SubjectAltNameElements)
      assert.is_true(new.HasPrivateKey)
      assert.are_not.equal(old.Thumbprint, new.Thumbprint)
      local by_thumb = select(2, sb:http("POST", "/Enrollment/Renew", { body = { Thumbprint = new.Thumbprint } }))
      assert.is_true(by_thumb.KeyfactorId > renewed.KeyfactorId)
      assert.equals(404, (sb:http("POST", "/Enrollment/Renew", { body = { CertificateId = 999999 } })))
      assert.equals(400, (sb:http("POST", "/Enrollment/Renew", { body = {} })))
    end)

    it("revokes certificates", function()
      local _, body = pfx(base)
      local id = body.CertificateInformation.KeyfactorId
      local req = { CertificateIds = { id }, Reason = 1, Comment = "key compromise",
        EffectiveDate = "2024-05-01T10:00:00Z" }
      local status, answer = sb:http("POST", "/Certificates/Revoke", { body = req })
      assert.equals(200, status)
      assert.same({ id }, answer.RevokedIds)
      assert.same({}, answer.SuspendedCerts)
      local _, cert = sb:http("GET", cert_path(id))
      assert.equals(2, cert.CertState)
      assert.equals("Revoked", cert.CertStateString)
      assert.equals(1, cert.RevocationReason)
      assert.equals("key compromise", cert.RevocationComment)
      assert.equals("2024-05-01T10:00:00Z", cert.RevocationEffDate)
      assert.equals(404, (sb:http("POST", "/Certificates/Revoke",
        { body = { CertificateIds = { 999999 }, Comment = "x" } })))
      assert.equals(400, (sb:http("POST", "/Certificates/Revoke", { body = { CertificateIds = { id },
        Comment = "" } })))
      assert.equals(400, (sb:http("POST", "/Certificates/Revoke", { body = { Comment = "x" } })))
      local st, err = sb:http("POST", "/Certificates/Revoke", { body = { CertificateIds = { "a" }, Comment = "x" } })
      assert.equals(400, st)
      assert.matches("CertificateIds%[1%]", err.Message)
    end)
  end)
end)
