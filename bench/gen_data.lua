--- Writes the canned Keyfactor-shaped JSON the bench's nginx serves.
-- Usage: lua5.4 bench/gen_data.lua DIR
--   DIR/cert.json      one certificate (GET /Certificates/{id})
--   DIR/page1000.json  1,000 certificates (GET /Certificates, pages 1..100)
--   DIR/empty.json     [] (page 101 and later)
--   DIR/deploy.json    a deploy answer (POST /Enrollment/PFX/Deploy)
local cjson = require "cjson"

local dir = assert(arg[1], "usage: gen_data.lua DIR")
-- cjson 2.1.0 encodes {} as an object: a placeholder becomes [] on write.
local EMPTY = "__EMPTY_ARRAY__"

-- A fixed pseudo-random stream, so every run serves the same bytes.
local seed = 12345
local function rnd(n)
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed % n
end
local HEX = "0123456789ABCDEF"
local function hex(n)
  local t = {}
  for i = 1, n do local k = rnd(16) + 1; t[i] = HEX:sub(k, k) end
  return table.concat(t)
end
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64(n)
  local t = {}
  for i = 1, n do local k = rnd(64) + 1; t[i] = B64:sub(k, k) end
  return table.concat(t)
end

local function certificate(id)
  local cn = string.format("host%06d.example.com", id)
  return {
    Id = id, Thumbprint = hex(40), SerialNumber = hex(32),
    IssuedDN = "CN=" .. cn .. ", O=Example, C=US", IssuedCN = cn,
    IssuedOU = cjson.null, IssuedEmail = cjson.null,
    IssuerDN = "CN=Example Issuing CA 1, O=Example, C=US",
    PrincipalId = cjson.null, PrincipalName = cjson.null,
    ImportDate = "2025-01-15T10:20:30Z", NotBefore = "2025-01-15T10:10:30Z",
    NotAfter = "2026-01-15T10:10:30Z",
    CertState = 1, CertStateString = "Active",
    KeySizeInBits = 2048, KeyType = 1, KeyTypeString = "RSA",
    KeyUsage = 160, SigningAlgorithm = "SHA256-RSA", Curve = cjson.null,
    RevocationEffDate = cjson.null, RevocationReason = cjson.null, RevocationComment = cjson.null,
    CertificateAuthorityId = 1, CertificateAuthorityName = "example-ca.example.com\\Example Issuing CA 1",
    TemplateId = 7, TemplateName = "WebServer",
    ArchivedKey = false, HasPrivateKey = false, KeyRecoverable = false,
    CertRequestId = id + 100000, RequesterId = 1, RequesterName = "EXAMPLE\\svc-certs",
    ContentBytes = b64(1200), CertificateKeyId = id, CARowIndex = id, CARecordId = tostring(id),
    Metadata = { Owner = "team-web", CostCenter = "4711" },
    DetailedKeyUsage = {
      CrlSign = false, DataEncipherment = false, DecipherOnly = false, DigitalSignature = true,
      EncipherOnly = false, KeyAgreement = false, KeyCertSign = false, KeyEncipherment = true,
      NonRepudiation = false, HexCode = "a0",
    },
    ExtendedKeyUsages = {
      { Id = 1, Oid = "1.3.6.1.5.5.7.3.1", DisplayName = "Server Authentication" },
      { Id = 2, Oid = "1.3.6.1.5.5.7.3.2", DisplayName = "Client Authentication" },
    },
    SubjectAltNameElements = { { Id = id, Value = cn, Type = 2, ValueHash = hex(40) } },
    CRLDistributionPoints = { { Id = 1, Url = "http://crl.example.com/ca1.crl", UrlHash = hex(40) } },
    LocationsCount = { { Type = "PEM", Count = 1 } },
    SSLLocations = EMPTY,
    Locations = EMPTY,
  }
end

local function write(name, text)
  text = text:gsub('"__EMPTY_ARRAY__"', "[]")
  local f = assert(io.open(dir .. "/" .. name, "wb"))
  f:write(text)
  f:close()
end

write("cert.json", cjson.encode(certificate(42)))
local page = {}
for i = 1, 1000 do page[i] = certificate(i) end
write("page1000.json", cjson.encode(page))
write("empty.json", "[]")
write("deploy.json", cjson.encode {
  SuccessfulStores = { "5a4db0c5-0101-4e5a-9d00-000000000001", "5a4db0c5-0104-4e5a-9d00-000000000004" },
  FailedStores = EMPTY,
})
