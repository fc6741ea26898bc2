-- POST /Certificates/Recover and /Certificates/Download: real PKCS#12, PEM,
-- P7B and DER files, parsed back with luaossl and the openssl command.
local sandbox = require "keyfactor.sandbox"
local fixture = require "support.fixture"
local x509 = require "openssl.x509"
local pkcs12 = require "openssl.pkcs12"

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Runs the openssl command on `input`; returns its standard output.
local function openssl(args, input, env)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(input)
  f:close()
  local p = assert(io.popen(string.format("%s openssl %s -in %s 2>&1", env or "", args, shell_quote(path))))
  local out = p:read("a")
  local ok = p:close()
  os.remove(path)
  return out, ok
end

local function subjects(text)
  local out = {}
  for line in text:gmatch("[^\n]+") do
    local cn = line:match("^subject=.-CN%s*=%s*([^,/]+)")
    if cn then out[#out + 1] = cn end
  end
  return out
end

local function pem_certs(text)
  local out = {}
  for pem in text:gmatch("%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-.-%-%-%-%-%-END CERTIFICATE%-%-%-%-%-") do
    out[#out + 1] = x509.new(pem, "PEM")
  end
  return out
end

local function cn(cert) return fixture.cn(cert) end

-- The certificates of a luaossl chain (a STACK_OF(X509), iterated with pairs).
local function chain_list(chain)
  local out = {}
  for _, c in pairs(chain or {}) do out[#out + 1] = c end
  return out
end

describe("sandbox recover and download", function()
  local sb

  lazy_setup(function() sb = sandbox.start{ port = 0, job_delay = 0.05 } end)
  lazy_teardown(function() if sb then sb:stop() end end)

  local function enroll(format, name)
    local _, body = sb:http("POST", "/Enrollment/PFX", { headers = { ["x-certificateformat"] = format },
      body = { Template = "WebServer", Subject = "CN=" .. name, Password = "enroll-pw" } })
    return body.CertificateInformation, math.tointeger(body.CertificateInformation.KeyfactorId)
  end

  local function recover(body, format)
    return sb:http("POST", "/Certificates/Recover", { body = body,
      headers = format and { ["x-certificateformat"] = format } or nil })
  end

  local function download(body, format)
    return sb:http("POST", "/Certificates/Download", { body = body,
      headers = format and { ["x-certificateformat"] = format } or nil })
  end

  describe("Recover", function()
    it("answers a PKCS#12 under the given password whose key matches the certificate", function()
      local info, id = enroll("STORE", "recover.example.com")
      local status, answer = recover({ CertID = id, Password = "Recover-pw1", IncludeChain = true })
      assert.equals(200, status)
      assert.equals("recover.example.com.pfx", answer.FileName)
      local key, cert, chain = pkcs12.parse(fixture.base64_decode(answer.PFX), "Recover-pw1")
      assert.equals(info.Thumbprint, cert:digest("sha1", "x"):upper())
      assert.equals(cert:getPublicKey():toPEM("public"), key:toPEM("public"))
      local list = chain_list(chain)
      assert.equals(1, #list)
      assert.equals("SandboxCA", cn(list[1]))
      assert.has_error(function() pkcs12.parse(fixture.base64_decode(answer.PFX), "wrong") end)
      -- without the chain: only the certificate
      local _, bare = recover({ CertID = id, Password = "pw" }, "PFX")
      local _, _, none = pkcs12.parse(fixture.base64_decode(bare.PFX), "pw")
      assert.equals(0, #chain_list(none))
    end)

    it("names the certificate by thumbprint or by serial number and issuer", function()
      local info, id = enroll("STORE", "lookup.example.com")
      local _, by_thumb = recover({ Thumbprint = info.Thumbprint:lower(), Password = "pw" })
      local _, c1 = pkcs12.parse(fixture.base64_decode(by_thumb.PFX), "pw")
      assert.equals(info.Thumbprint, c1:digest("sha1", "x"):upper())
      local _, cert = sb:http("GET", "/Certificates/" .. id)
      local _, by_serial = recover({ SerialNumber = cert.SerialNumber, IssuerDN = cert.IssuerDN, Password = "pw" })
      local _, c2 = pkcs12.parse(fixture.base64_decode(by_serial.PFX), "pw")
      assert.equals(info.Thumbprint, c2:digest("sha1", "x"):upper())
    end)

    it("answers PEM: the key encrypted under the password, then the chain in order", function()
      local _, id = enroll("STORE", "pem.example.com")
      local status, answer = recover({ CertID = id, Password = "Pem-pw", IncludeChain = true,
        ChainOrder = "RootFirst" }, "PEM")
      assert.equals(200, status)
      assert.equals("pem.example.com.pem", answer.FileName)
      local text = fixture.base64_decode(answer.PFX)
      assert.truthy(text:find("-----BEGIN ENCRYPTED PRIVATE KEY-----", 1, true))
      assert.falsy(text:find("-----BEGIN PRIVATE KEY-----", 1, true))
      local certs = pem_certs(text)
      assert.same({ "SandboxCA", "pem.example.com" }, { cn(certs[1]), cn(certs[2]) })
      local key_pem = text:match("%-%-%-%-%-BEGIN ENCRYPTED.-END ENCRYPTED PRIVATE KEY%-%-%-%-%-\n")
      local public, ok = openssl("pkey -pubout -passin env:KF_PW", key_pem, "KF_PW=Pem-pw")
      assert.is_true(ok, public)
      assert.equals(certs[2]:getPublicKey():toPEM("public"), public)
      local _, bad = openssl("pkey -pubout -passin env:KF_PW", key_pem, "KF_PW=wrong")
      assert.is_falsy(bad)
    end)

    it("refuses with Keyfactor's error body when the server kept no key", function()
      local _, pfx_id = enroll("PFX", "nokey.example.com")
      local status, err = recover({ CertID = pfx_id, Password = "pw" })
      assert.equals(400, status)
      assert.matches("^0x%x+$", err.ErrorCode)
      assert.matches("private key", err.Message)
      local key, req = fixture.csr("csr.example.com")
      assert(key)
      local _, csr = sb:http("POST", "/Enrollment/CSR", { headers = { ["x-certificateformat"] = "PEM" },
        body = { Template = "WebServer", CSR = req:toPEM() } })
      local csr_id = math.tointeger(csr.CertificateInformation.KeyfactorID)
      assert.equals(400, (recover({ CertID = csr_id, Password = "pw" })))
    end)

    it("validates the request", function()
      local _, id = enroll("STORE", "validate.example.com")
      local cases = {
        { { CertID = id }, 400, "Password" },
        { { CertID = id, Password = "" }, 400, "Password" },
        { { Password = "pw" }, 400, "CertID" },
        { { SerialNumber = "01", Password = "pw" }, 400, "IssuerDN" },
        { { CertID = 999999, Password = "pw" }, 404, "999999" },
        { { Thumbprint = string.rep("AB", 20), Password = "pw" }, 404, "Thumbprint" },
        { { CertID = "1", Password = "pw" }, 400, "CertID" },
        { { CertID = id, Password = "pw", ChainOrder = "Sideways" }, 400, "ChainOrder" },
      }
      for _, case in ipairs(cases) do
        local status, body = recover(case[1])
        assert.equals(case[2], status)
        assert.matches(case[3], body.Message, 1, true)
      end
      assert.equals(400, (recover({ CertID = id, Password = "pw" }, "P7B")))
    end)
  end)

  describe("Download", function()
    it("answers a P7B (the default) with the chain in the order asked", function()
      local _, id = enroll("PFX", "p7b.example.com")
      local status, answer = download({ CertID = id, IncludeChain = true })
      assert.equals(200, status)
      local der = fixture.base64_decode(answer.Content)
      assert.same({ "p7b.example.com", "SandboxCA" }, subjects((openssl("pkcs7 -inform DER -print_certs", der))))
      local _, root_first = download({ CertID = id, IncludeChain = true, ChainOrder = "RootFirst" }, "P7B")
      assert.same({ "SandboxCA", "p7b.example.com" },
        subjects((openssl("pkcs7 -inform DER -print_certs", fixture.base64_decode(root_first.Content)))))
      local _, leaf_only = download({ CertID = id })
      assert.same({ "p7b.example.com" },
        subjects((openssl("pkcs7 -inform DER -print_certs", fixture.base64_decode(leaf_only.Content)))))
    end)

    it("answers PEM and DER", function()
      local info, id = enroll("PFX", "formats.example.com")
      local _, pem = download({ CertID = id, IncludeChain = true }, "PEM")
      local certs = pem_certs(fixture.base64_decode(pem.Content))
      assert.same({ "formats.example.com", "SandboxCA" }, { cn(certs[1]), cn(certs[2]) })
      fixture.assert_issued_by_ca(sb, certs[1])
      local _, der = download({ Thumbprint = info.Thumbprint, IncludeChain = true }, "DER")
      local cert = x509.new(fixture.base64_decode(der.Content), "DER")
      assert.equals(info.Thumbprint, cert:digest("sha1", "x"):upper())
      assert.equals(400, (download({ CertID = id }, "PFX")))
      assert.equals(400, (download({})))
    end)
  end)
end)
