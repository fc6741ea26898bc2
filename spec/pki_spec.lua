-- keyfactor.pki: every output checked with luaossl and the openssl command
-- line, and against what a live sandbox issues.
local fixture = require "support.fixture"
local pki = require "keyfactor.pki"
local pkey = require "openssl.pkey"
local x509 = require "openssl.x509"

-- A fresh directory for this spec run.
local function tempdir()
  local p = io.popen("mktemp -d")
  local dir = p:read("*l")
  p:close()
  return dir
end

local write = require("support.files").write

local read = require("support.files").must

-- Runs a shell command; returns its output (stdout and stderr) and exit code.
local function sh(command)
  local p = io.popen("(" .. command .. ") 2>&1; echo \"rc=$?\"")
  local out = p:read("*a")
  p:close()
  local code = tonumber(out:match("rc=(%d+)%s*$"))
  return out:gsub("rc=%d+%s*$", ""), code
end

local function openssl_ok(command)
  local out, code = sh("openssl " .. command)
  assert.are.equal(0, code, "openssl " .. command .. " failed: " .. out)
  return out
end

local function listing(dir)
  local out = sh("ls -A " .. dir)
  local names = {}
  for name in out:gmatch("[^\n]+") do names[#names + 1] = name end
  table.sort(names)
  return names
end

describe("keyfactor.pki", function()
  local sb, kf, dir, n = nil, nil, nil, 0

  -- A file in the spec's directory holding `text`.
  local function file(text)
    n = n + 1
    local path = dir .. "/f" .. n .. ".pem"
    write(path, text)
    return path
  end

  -- The SubjectPublicKeyInfo PEM of a key file and of a certificate file.
  local function key_pubkey(key_path) return openssl_ok("pkey -in " .. key_path .. " -pubout") end
  local function cert_pubkey(cert_path) return openssl_ok("x509 -in " .. cert_path .. " -noout -pubkey") end

  local function pfx(extra)
    local req = { Template = "WebServer", Subject = "CN=" .. fixture.unique("pfx"), Password = "pfx-pass-1" }
    for k, value in pairs(extra or {}) do req[k] = value end
    return assert(kf:enroll(req)).CertificateInformation
  end

  fixture.live(function(s, k)
    sb, kf = s, k
    dir = tempdir()
  end)
  lazy_teardown(function()
    if dir then sh("rm -rf " .. dir) end
  end)

  describe("key", function()
    it("makes an EC P-256 key by default, PKCS#8 PEM that openssl reads", function()
      local pem = pki.key_pem(pki.key())
      assert.truthy(pem:find("-----BEGIN PRIVATE KEY-----", 1, true))
      local path = file(pem)
      openssl_ok("pkey -in " .. path .. " -noout")
      assert.truthy(openssl_ok("pkey -in " .. path .. " -noout -text"):find("prime256v1", 1, true))
      assert.truthy(pkey.new(pem))
    end)

    it("makes EC keys on secp384r1 (also spelled P-384)", function()
      for _, curve in ipairs { "secp384r1", "P-384" } do
        local path = file(pki.key_pem(pki.key { type = "EC", curve = curve }))
        assert.truthy(openssl_ok("pkey -in " .. path .. " -noout -text"):find("secp384r1", 1, true))
      end
    end)

    it("makes RSA keys of 2048 (default) and 3072 bits", function()
      for bits, opts in pairs { [2048] = { type = "RSA" }, [3072] = { type = "RSA", bits = 3072 } } do
        local path = file(pki.key_pem(pki.key(opts)))
        local text = openssl_ok("pkey -in " .. path .. " -noout -text")
        assert.truthy(text:find("Private%-Key: %(" .. bits .. " bit"), text:sub(1, 80))
      end
    end)

    it("names the function and the field for bad options", function()
      fixture.raises(function() pki.key { type = "RSA", bits = 1024 } end, "pki.key", "opts.bits", "1024")
      fixture.raises(function() pki.key { curve = "secp256k1" } end, "pki.key", "opts.curve", "secp256k1")
      fixture.raises(function() pki.key { type = "DSA" } end, "pki.key", "opts.type")
      fixture.raises(function() pki.key { type = "EC", bits = 2048 } end, "pki.key", "opts.bits")
      fixture.raises(function() pki.key { type = "RSA", curve = "secp384r1" } end, "pki.key", "opts.curve")
      fixture.raises(function() pki.key { size = 2048 } end, "pki.key", "opts.size is not a known field")
      fixture.raises(function() pki.key_pem("not a key") end, "pki.key_pem", "key")
    end)
  end)

  describe("csr", function()
    it("makes a request that openssl verifies, with the subject and every SAN kind", function()
      local key = pki.key()
      local pem = pki.csr { key = key, subject = "CN=web1.example.com,O=Example\\, Inc,C=US",
                            dns = { "web1.example.com", "www.example.com" }, ip = { "10.0.0.5", "::1" },
                            email = { "ops@example.com" }, uri = { "spiffe://example.com/web" } }
      local path = file(pem)
      openssl_ok("req -in " .. path .. " -verify -noout")
      local subject = openssl_ok("req -in " .. path .. " -noout -subject -nameopt RFC2253")
      -- RFC 2253 prints the last RDN first
      assert.truthy(subject:find("C=US,O=Example\\, Inc,CN=web1.example.com", 1, true), subject)
      local text = openssl_ok("req -in " .. path .. " -noout -text")
      for _, san in ipairs { "DNS:web1.example.com", "DNS:www.example.com", "IP Address:10.0.0.5",
                             "IP Address:0:0:0:0:0:0:0:1", "email:ops@example.com",
                             "URI:spiffe://example.com/web" } do
        assert.truthy(text:find(san, 1, true), san .. " missing in\n" .. text)
      end
      -- the request carries this key's public half
      assert.are.equal(key:toPEM("public"), require("openssl.x509.csr").new(pem):getPublicKey():toPEM("public"))
    end)

    it("takes a table subject (CN first, repeated attributes as arrays) and a PEM key", function()
      local key_pem = pki.key_pem(pki.key { type = "RSA" })
      local pem = pki.csr { key = key_pem, digest = "sha384",
                            subject = { C = "US", O = "Example", OU = { "Web", "Ops" }, CN = "t.example.com" } }
      local path = file(pem)
      openssl_ok("req -in " .. path .. " -verify -noout")
      local subject = openssl_ok("req -in " .. path .. " -noout -subject -nameopt RFC2253")
      assert.truthy(subject:find("C=US,O=Example,OU=Ops,OU=Web,CN=t.example.com", 1, true), subject)
      assert.truthy(openssl_ok("req -in " .. path .. " -noout -text"):find("sha384WithRSAEncryption", 1, true))
    end)

    it("names the function and the field for bad input", function()
      local key = pki.key()
      fixture.raises(function() pki.csr { subject = "CN=x" } end, "pki.csr", "key is required")
      fixture.raises(function() pki.csr { key = key } end, "pki.csr", "subject is required")
      fixture.raises(function() pki.csr { key = "nope", subject = "CN=x" } end, "pki.csr", "opts.key")
      fixture.raises(function() pki.csr { key = key, subject = "web1" } end, "pki.csr", "subject \"web1\"")
      fixture.raises(function() pki.csr { key = key, subject = { CN = "x", XYZ = "y" } } end, "pki.csr", "XYZ")
      fixture.raises(function() pki.csr { key = key, subject = "CN=x", ip = { "10.0.0" } } end, "pki.csr", "opts.ip[1]")
      fixture.raises(function() pki.csr { key = key, subject = "CN=x", dns = "a.example.com" } end,
        "pki.csr", "opts.dns must be an array")
      fixture.raises(function() pki.csr { key = key, subject = "CN=x", sans = {} } end, "pki.csr", "opts.sans")
    end)

    it("enrolls against the sandbox; the certificate holds the local key and matches certificate_info", function()
      local key = pki.key()
      local cn = fixture.unique("csr")
      local csr = pki.csr { key = key, subject = "CN=" .. cn, dns = { cn } }
      local r = assert(kf:enroll { CSR = csr, Template = "WebServer", format = "PEM" })
      local info = r.CertificateInformation
      local cert_pem = info.Certificates[1]
      local key_path, cert_path = file(pki.key_pem(key)), file(cert_pem)
      assert.are.equal(key_pubkey(key_path), cert_pubkey(cert_path))
      assert.are.equal(key:toPEM("public"), x509.new(cert_pem, "PEM"):getPublicKey():toPEM("public"))

      local facts = assert(pki.certificate_info(cert_pem))
      assert.are.equal(info.Thumbprint, facts.thumbprint)
      assert.are.equal(info.SerialNumber, facts.serial)
      assert.are.same({ cn }, facts.dns)
      local stored = assert(kf:certificate(info.KeyfactorId))
      assert.are.equal(stored.Thumbprint, facts.thumbprint)
      assert.are.equal(stored.IssuedDN, facts.subject)
      assert.are.equal(stored.IssuerDN, facts.issuer)
    end)
  end)

  describe("split_pkcs12", function()
    it("opens a Pkcs12Blob: the key matches the certificate, the chain holds the sandbox CA", function()
      local info = pfx { IncludeChain = true }
      local parts = assert(pki.split_pkcs12(info.Pkcs12Blob, "pfx-pass-1"))
      assert.truthy(parts.key:find("-----BEGIN PRIVATE KEY-----", 1, true))
      local key_path, cert_path = file(parts.key), file(parts.certificate)
      openssl_ok("pkey -in " .. key_path .. " -noout")
      assert.are.equal(key_pubkey(key_path), cert_pubkey(cert_path))
      assert.are.equal(info.Thumbprint, pki.certificate_info(parts.certificate).thumbprint)
      assert.are.equal(1, #parts.chain)
      local ca = assert(pki.certificate_info(read(sb.ca_file)))
      assert.are.equal(ca.thumbprint, pki.certificate_info(parts.chain[1]).thumbprint)
      -- the leaf verifies against the CA the chain carries
      openssl_ok("verify -CAfile " .. file(parts.chain[1]) .. " " .. cert_path)
    end)

    it("takes raw DER too; without IncludeChain the chain is empty", function()
      local info = pfx()
      local parts = assert(pki.split_pkcs12(fixture.base64_decode(info.Pkcs12Blob), "pfx-pass-1"))
      assert.are.same({}, parts.chain)
      assert.are.equal(info.Thumbprint, pki.certificate_info(parts.certificate).thumbprint)
    end)

    it("returns nil and a clear message without the password for a wrong password", function()
      local info = pfx { Password = "Canary-Secret-77" }
      local parts, err = pki.split_pkcs12(info.Pkcs12Blob, "Wrong-Guess-55")
      assert.is_nil(parts)
      assert.truthy(err:find("wrong password", 1, true), err)
      assert.is_nil(err:find("Wrong-Guess-55", 1, true))
      assert.is_nil(err:find("Canary-Secret-77", 1, true))
      -- still recognised when luaossl left an older error in OpenSSL's queue (pki.csr does)
      pki.csr { key = pki.key(), subject = "CN=x", ip = { "10.0.0.1" } }
      local _, err1 = pki.split_pkcs12(info.Pkcs12Blob, "Wrong-Guess-55")
      assert.truthy(err1:find("wrong password", 1, true), err1)
      local _, err2 = pki.split_pkcs12("bm90IGEgcGtjczEy", "x")
      assert.truthy(err2:find("not a PKCS#12", 1, true), err2)
    end)
  end)

  describe("bundle", function()
    it("puts certificate, chain, key in that order; openssl reads each part", function()
      local info = pfx { IncludeChain = true }
      local parts = assert(pki.split_pkcs12(info.Pkcs12Blob, "pfx-pass-1"))
      local text = pki.bundle(parts)
      local c1 = text:find("BEGIN CERTIFICATE", 1, true)
      local c2 = text:find("BEGIN CERTIFICATE", c1 + 1, true)
      local k = text:find("BEGIN PRIVATE KEY", 1, true)
      assert.truthy(c1 and c2 and k and c1 < c2 and c2 < k)
      local path = file(text)
      assert.are.equal(cert_pubkey(path), key_pubkey(path))       -- first certificate, the key
      local certs = assert(pki.certificates_from_pem(text))
      assert.are.equal(2, #certs)
      assert.are.equal(info.Thumbprint, pki.certificate_info(certs[1]).thumbprint)
    end)

    it("follows opts.order and names missing parts", function()
      local parts = assert(pki.split_pkcs12(pfx().Pkcs12Blob, "pfx-pass-1"))
      local text = pki.bundle { certificate = parts.certificate, key = parts.key, order = { "key", "certificate" } }
      assert.truthy(text:find("BEGIN PRIVATE KEY", 1, true) < text:find("BEGIN CERTIFICATE", 1, true))
      assert.are.equal(parts.certificate, pki.bundle { certificate = parts.certificate, order = { "certificate" } })
      fixture.raises(function() pki.bundle { certificate = parts.certificate, order = { "chain" } } end,
        "pki.bundle", "parts.chain")
      fixture.raises(function() pki.bundle { key = parts.key } end, "pki.bundle", "certificate is required")
    end)
  end)

  describe("files", function()
    it("write_key writes mode 0600 and leaves no temporary file", function()
      local sub = dir .. "/keys"
      sh("mkdir " .. sub)
      local pem = pki.key_pem(pki.key())
      assert.is_true(pki.write_key(sub .. "/web.key", pem))
      assert.are.equal("600", (sh("stat -c %a " .. sub .. "/web.key"):gsub("%s", "")))
      assert.are.equal(pem, read(sub .. "/web.key"))
      assert.is_true(pki.write_key(sub .. "/web.key", pki.key()))     -- replaces it; a key object works too
      openssl_ok("pkey -in " .. sub .. "/web.key -noout")
      assert.are.same({ "web.key" }, listing(sub))
    end)

    it("write_file defaults to 0644, takes a mode, and replaces the file whole", function()
      local sub = dir .. "/certs"
      sh("mkdir " .. sub)
      assert.is_true(pki.write_file(sub .. "/a.pem", "one\n"))
      assert.are.equal("644", (sh("stat -c %a " .. sub .. "/a.pem"):gsub("%s", "")))
      assert.is_true(pki.write_file(sub .. "/a.pem", "two\n", "0640"))
      assert.are.equal("640", (sh("stat -c %a " .. sub .. "/a.pem"):gsub("%s", "")))
      assert.are.equal("two\n", read(sub .. "/a.pem"))
      assert.are.same({ "a.pem" }, listing(sub))
    end)

    it("returns nil, err for an unwritable place and checks its arguments", function()
      local ok, err = pki.write_file(dir .. "/missing/dir/x.pem", "x")
      assert.is_nil(ok)
      assert.truthy(err:find("pki.write_file", 1, true))
      fixture.raises(function() pki.write_file(dir .. "/x.pem", "x", 600) end, "pki.write_file", "mode")
      fixture.raises(function() pki.write_file(nil, "x") end, "pki.write_file", "path")
    end)
  end)

  describe("certificate facts", function()
    it("certificate_info reads PEM, DER, base64 DER, luaossl certificates and kf:certificate tables", function()
      local info = pfx { SANs = { dns = { "a.example.com", "b.example.com" }, ip4 = { "192.0.2.7" } } }
      local cert = assert(kf:certificate(info.KeyfactorId))
      local der = fixture.base64_decode(cert.ContentBytes)
      local luaossl_cert = x509.new(der, "DER")
      for _, form in ipairs { luaossl_cert:toPEM(), der, cert.ContentBytes, luaossl_cert, cert } do
        local facts = assert(pki.certificate_info(form))
        assert.are.equal(cert.Thumbprint, facts.thumbprint)
        assert.are.equal(cert.SerialNumber, facts.serial)
        assert.are.equal(cert.IssuedDN, facts.subject)
        assert.are.equal(cert.IssuerDN, facts.issuer)
        assert.are.equal(cert.NotAfter, os.date("!%Y-%m-%dT%H:%M:%SZ", facts.not_after))
        assert.are.equal(cert.NotBefore, os.date("!%Y-%m-%dT%H:%M:%SZ", facts.not_before))
        table.sort(facts.dns)
        assert.are.same({ "a.example.com", "b.example.com" }, facts.dns)
        assert.are.same({ "192.0.2.7" }, facts.ip)
        assert.is_true(facts.days_left >= 364 and facts.days_left <= 366, tostring(facts.days_left))
      end
      -- the thumbprint is SHA-1 of the DER as openssl computes it
      local fp = openssl_ok("x509 -in " .. file(luaossl_cert:toPEM()) .. " -noout -fingerprint -sha1")
      assert.are.equal(cert.Thumbprint, (fp:match("=([%x:]+)"):gsub(":", "")))
      local none, err = pki.certificate_info("not a certificate")
      assert.is_nil(none)
      assert.truthy(err:find("pki.certificate_info", 1, true))
    end)

    it("needs_renewal is true within the days before expiry and false before", function()
      local r = assert(kf:request("POST", "/Enrollment/PFX", {
        headers = { ["x-certificateformat"] = "PFX" },
        body = { Template = "WebServer", Subject = "CN=" .. fixture.unique("short"), Password = "pfx-pass-1",
                 Timestamp = os.date("!%Y-%m-%dT%H:%M:%SZ"), ValidityDays = 5 } }))
      local parts = assert(pki.split_pkcs12(r.CertificateInformation.Pkcs12Blob, "pfx-pass-1"))
      local facts = pki.certificate_info(parts.certificate)
      assert.is_true(facts.days_left >= 4 and facts.days_left <= 5, tostring(facts.days_left))
      assert.is_true(pki.needs_renewal(parts.certificate, 6))
      assert.is_true(pki.needs_renewal(parts.certificate, 30))
      assert.is_false(pki.needs_renewal(parts.certificate, 4))
      -- a kf:certificate table, and one with only NotAfter
      local cert = assert(kf:certificate(r.CertificateInformation.KeyfactorId))
      assert.is_true(pki.needs_renewal(cert, 6))
      assert.is_false(pki.needs_renewal({ NotAfter = cert.NotAfter }, 4))
      assert.is_true(pki.needs_renewal({ NotAfter = cert.NotAfter }, 6))
      fixture.raises(function() pki.needs_renewal(cert, "30") end, "pki.needs_renewal", "days")
      fixture.raises(function() pki.needs_renewal({}, 30) end, "pki.needs_renewal", "NotAfter")
    end)

    it("certificates_from_pem returns every certificate in order and skips keys", function()
      local info = pfx { IncludeChain = true }
      local parts = assert(pki.split_pkcs12(info.Pkcs12Blob, "pfx-pass-1"))
      local certs = assert(pki.certificates_from_pem(parts.key .. parts.certificate .. "junk\n" .. parts.chain[1]))
      assert.are.equal(2, #certs)
      assert.are.equal(info.Thumbprint, pki.certificate_info(certs[1]).thumbprint)
      assert.are.same({}, pki.certificates_from_pem(""))
      local bad = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
      local none, err = pki.certificates_from_pem(bad)
      assert.is_nil(none)
      assert.truthy(err:find("certificate 1", 1, true))
    end)
  end)
end)
