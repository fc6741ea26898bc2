-- The sandbox CA: creates or loads the CA, the TLS server certificate, issues
-- leaf certificates, builds PKCS#12 archives and verifies CSR signatures.
local pkey = require "openssl.pkey"
local x509 = require "openssl.x509"
local xname = require "openssl.x509.name"
local altname = require "openssl.x509.altname"
local extension = require "openssl.x509.extension"
local csr_mod = require "openssl.x509.csr"
local chain_mod = require "openssl.x509.chain"
local pkcs12 = require "openssl.pkcs12"
local bignum = require "openssl.bignum"
local digest = require "openssl.digest"
local rand = require "openssl.rand"
local kdf = require "openssl.kdf"
local cipher = require "openssl.cipher"
local util = require "keyfactor.sandbox.util"

local pki = {}

pki.CA_NAME = "sandbox.local\\SandboxCA"

local function random_serial()
  local bytes = rand.bytes(16)
  -- clear the top bit so the serial stays positive
  bytes = string.char(bytes:byte(1) & 0x7f | 0x10) .. bytes:sub(2)
  return bignum.fromBinary(bytes)
end

local function ca_name()
  local n = xname.new()
  n:add("CN", "SandboxCA")
  n:add("O", "Keyfactor Sandbox")
  return n
end

local function new_ca()
  local key = pkey.new{ type = "EC", curve = "prime256v1" }
  local cert = x509.new()
  local now = os.time()
  cert:setVersion(3)
  cert:setSerial(random_serial())
  cert:setSubject(ca_name())
  cert:setIssuer(ca_name())
  cert:setPublicKey(key)
  cert:setLifetime(now - 86400, now + 10 * 365 * 86400)
  cert:setBasicConstraints{ CA = true }
  cert:setBasicConstraintsCritical(true)
  cert:addExtension(extension.new("keyUsage", "critical,keyCertSign,cRLSign,digitalSignature"))
  cert:sign(key, "sha256")
  return key, cert
end

-- Loads DIR/ca.pem + DIR/ca-key.pem, or creates and writes them.
function pki.load_or_create_ca(dir)
  local cert_pem = util.read_file(dir .. "/ca.pem")
  local key_pem = util.read_file(dir .. "/ca-key.pem")
  local ca = {}
  if cert_pem and key_pem then
    ca.cert = x509.new(cert_pem)
    ca.key = pkey.new(key_pem)
  else
    ca.key, ca.cert = new_ca()
    util.write_private(dir .. "/ca-key.pem", ca.key:toPEM("private"))
    util.write_private(dir .. "/ca.pem", ca.cert:toPEM())
  end
  ca.pem = ca.cert:toPEM()
  ca.dn = pki.dn_string(ca.cert:getSubject())
  ca.file = dir .. "/ca.pem"
  return ca
end

-- The TLS certificate for the listener: IP SAN 127.0.0.1 (clients connect by IP)
-- and DNS SAN localhost, plus the host it was asked to bind when that differs.
function pki.server_certificate(ca, host)
  local key = pkey.new{ type = "EC", curve = "prime256v1" }
  local sans = { dns = { "localhost" }, ip4 = { "127.0.0.1" } }
  if host and host ~= "127.0.0.1" and host ~= "localhost" then
    if host:match("^[%d.]+$") then table.insert(sans.ip4, host)
    elseif host:find(":", 1, true) then sans.ip6 = { host }
    else table.insert(sans.dns, host) end
  end
  local cert = pki.issue(ca, { subject = "CN=127.0.0.1", sans = sans, key = key, days = 365 })
  return key, cert
end

---------------------------------------------------------------- names
local NAME_KEYS = {
  CN = "CN", O = "O", OU = "OU", L = "L", ST = "ST", S = "ST", C = "C",
  E = "emailAddress", EMAILADDRESS = "emailAddress", DC = "DC",
  SERIALNUMBER = "serialNumber", STREET = "street", T = "title", TITLE = "title",
  G = "GN", GN = "GN", SN = "SN", UID = "UID",
}

-- Splits an RFC 4514-ish DN on unescaped commas. Returns {{key, value}...} or nil, err.
function pki.parse_dn(dn)
  if type(dn) ~= "string" or dn:match("^%s*$") then return nil, "Subject is empty" end
  local parts, current, i = {}, {}, 1
  while i <= #dn do
    local c = dn:sub(i, i)
    if c == "\\" and i < #dn then
      current[#current + 1] = dn:sub(i + 1, i + 1)
      i = i + 2
    else
      if c == "," or c == ";" then
        parts[#parts + 1] = table.concat(current)
        current = {}
      else
        current[#current + 1] = c
      end
      i = i + 1
    end
  end
  parts[#parts + 1] = table.concat(current)
  local rdns = {}
  for _, part in ipairs(parts) do
    local k, v = part:match("^%s*([%w%.]+)%s*=%s*(.-)%s*$")
    if not k then return nil, "Subject '" .. dn .. "' is not a valid distinguished name" end
    local key = NAME_KEYS[k:upper()]
    if not key then return nil, "Subject has an unsupported attribute '" .. k .. "'" end
    if v:match('^".*"$') then v = v:sub(2, -2) end
    rdns[#rdns + 1] = { key, v }
  end
  return rdns
end

local function build_name(rdns)
  local n = xname.new()
  for _, kv in ipairs(rdns) do n:add(kv[1], kv[2]) end
  return n
end

-- "CN=x, O=y, C=z": luaossl's tostring(name) switches between this and the
-- "/CN=x/O=y" form, so DNs are always formatted here.
local SHORT_KEYS = { emailAddress = "E", GN = "G" }
function pki.dn_string(name)
  local parts = {}
  for k, v in pairs(name) do
    local value = v:gsub("([,+\\\"<>;])", "\\%1")
    parts[#parts + 1] = (SHORT_KEYS[k] or k) .. "=" .. value
  end
  return table.concat(parts, ", ")
end

---------------------------------------------------------------- SANs
-- SAN keys of the enrollment body mapped to luaossl altname kinds.
local SAN_KINDS = { dns = "DNS", ip4 = "IP", ip6 = "IP", ip = "IP", rfc822 = "email", uri = "URI" }
pki.SAN_KINDS = SAN_KINDS

-- Checks the SAN types and values of the SANs body field (whose JSON kinds
-- check.body has checked); returns a normalised {dns={..}, ...} table.
function pki.check_sans(sans)
  local out = {}
  if sans == nil or sans == util.null then return out end
  for key, list in pairs(sans) do
    local k = tostring(key):lower()
    if not SAN_KINDS[k] then
      util.fail(400, "bad_request", "SANs." .. tostring(key) .. " is not a supported SAN type")
    end
    out[k] = out[k] or {}
    for _, v in ipairs(list) do
      if k == "ip4" and not v:match("^%d+%.%d+%.%d+%.%d+$") then
        util.fail(400, "bad_request", "SANs.ip4 value '" .. v .. "' is not an IPv4 address")
      end
      table.insert(out[k], v)
    end
  end
  return out
end

local function build_altname(sans)
  local an, count = altname.new(), 0
  for _, k in ipairs{ "dns", "ip4", "ip6", "ip", "rfc822", "uri" } do
    for _, v in ipairs(sans[k] or {}) do
      local ok, err = pcall(an.add, an, SAN_KINDS[k], v)
      if not ok then util.fail(400, "bad_request", "invalid SAN " .. k .. " '" .. v .. "': " .. tostring(err)) end
      count = count + 1
    end
  end
  return count > 0 and an or nil
end

-- SANs of a certificate or CSR as {dns={...}, ip4={...}, ...}.
function pki.sans_of(obj)
  local out = {}
  local an = obj:getSubjectAlt()
  if not an then return out end
  for kind, v in pairs(an) do
    local k = ({ DNS = "dns", email = "rfc822", URI = "uri" })[kind]
    if kind == "IP" then k = v:find(":", 1, true) and "ip6" or "ip4" end
    if k then
      out[k] = out[k] or {}
      table.insert(out[k], v)
    end
  end
  return out
end

function pki.merge_sans(a, b)
  local out = {}
  for _, src in ipairs{ a, b } do
    for k, list in pairs(src) do
      out[k] = out[k] or {}
      for _, v in ipairs(list) do
        local dup = false
        for _, w in ipairs(out[k]) do if w:lower() == v:lower() then dup = true end end
        if not dup then table.insert(out[k], v) end
      end
    end
  end
  return out
end

---------------------------------------------------------------- issuing
-- A new key: kind "RSA" (bits, default 2048) or "EC" (curve, an OpenSSL
-- curve name, default prime256v1).
function pki.new_key(kind, size)
  if kind == "EC" then return pkey.new{ type = "EC", curve = size or "prime256v1" } end
  return pkey.new{ type = "RSA", bits = size or 2048 }
end

-- Issues a certificate. spec: subject (DN string) or subject_name (x509.name),
-- sans, key or public key (pkey), days (may be <= 0 for an expired certificate),
-- server (serverAuth EKU, default true).
function pki.issue(ca, spec)
  local cert = x509.new()
  local now = os.time()
  local days = spec.days or 365
  local not_after = now + math.floor(days * 86400)
  local not_before = math.min(now, not_after - 86400)
  local name = spec.subject_name
  if not name then
    local rdns, err = pki.parse_dn(spec.subject)
    if not rdns then util.bad_request(err) end
    name = build_name(rdns)
  end
  cert:setVersion(3)
  cert:setSerial(random_serial())
  cert:setSubject(name)
  cert:setIssuer(ca.cert:getSubject())
  cert:setPublicKey(spec.key)
  cert:setLifetime(not_before, not_after)
  cert:setBasicConstraints{ CA = false }
  local an = build_altname(spec.sans or {})
  if an then cert:setSubjectAlt(an) end
  cert:addExtension(extension.new("keyUsage", "critical,digitalSignature,keyEncipherment"))
  cert:addExtension(extension.new("extendedKeyUsage", "serverAuth,clientAuth"))
  cert:sign(ca.key, "sha256")
  return cert
end

function pki.pkcs12(cert, key, password, ca_cert)
  local chain = chain_mod.new()
  chain:add(cert)
  if ca_cert then chain:add(ca_cert) end
  return tostring(pkcs12.new{ key = key, certs = chain, password = password })
end

---------------------------------------------------------------- files
-- DER encoding, just what PKCS#7 and PKCS#8 files need (luaossl writes neither).
local function der_length(n)
  if n < 0x80 then return string.char(n) end
  local bytes = ""
  while n > 0 do bytes = string.char(n % 256) .. bytes; n = n // 256 end
  return string.char(0x80 + #bytes) .. bytes
end

local function tlv(tag, content) return string.char(tag) .. der_length(#content) .. content end
local function seq(...) return tlv(0x30, table.concat{ ... }) end
local function oid(hex_bytes)
  return tlv(0x06, (hex_bytes:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)))
end
local function octets(s) return tlv(0x04, s) end
local function small_int(n)   -- 0 <= n < 32768
  local hi, lo = n // 256, n % 256
  return tlv(0x02, (hi == 0 and lo < 0x80) and string.char(lo) or string.char(hi, lo))
end

local OID_SIGNED_DATA, OID_DATA = "2a864886f70d010702", "2a864886f70d010701"
local OID_PBES2, OID_PBKDF2 = "2a864886f70d01050d", "2a864886f70d01050c"
local OID_HMAC_SHA256, OID_AES256_CBC = "2a864886f70d0209", "60864801650304012a"

-- A certificates-only PKCS#7 SignedData (".p7b") holding `certs` in the
-- given order (a SET OF in BER order: tools list them as written).
function pki.p7b(certs)
  local ders = {}
  for i, c in ipairs(certs) do ders[i] = c:tostring("DER") end
  local signed = seq(small_int(1), tlv(0x31, ""), seq(oid(OID_DATA)),
    tlv(0xA0, table.concat(ders)), tlv(0x31, ""))
  return seq(oid(OID_SIGNED_DATA), tlv(0xA0, signed))
end

-- The private key as an encrypted PKCS#8 PEM ("ENCRYPTED PRIVATE KEY"):
-- PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC, as openssl pkcs8 -topk8 writes.
function pki.encrypted_key_pem(key, password)
  local plain = util.unbase64(key:toPEM("private"):match("%-%-%-%-%-BEGIN PRIVATE KEY%-%-%-%-%-(.-)%-%-%-%-%-END"))
  local salt, iv, iterations = rand.bytes(16), rand.bytes(16), 2048
  local secret = kdf.derive{ type = "PBKDF2", md = "sha256", pass = password, salt = salt,
    iter = iterations, outlen = 32 }
  local encrypted = cipher.new("aes-256-cbc"):encrypt(secret, iv):final(plain)
  local params = seq(
    seq(oid(OID_PBKDF2), seq(octets(salt), small_int(iterations), seq(oid(OID_HMAC_SHA256), tlv(0x05, "")))),
    seq(oid(OID_AES256_CBC), octets(iv)))
  local der = seq(seq(oid(OID_PBES2), params), octets(encrypted))
  local b64 = util.base64(der):gsub(string.rep(".", 64), "%0\n")
  return "-----BEGIN ENCRYPTED PRIVATE KEY-----\n" .. b64:gsub("\n$", "") .. "\n-----END ENCRYPTED PRIVATE KEY-----\n"
end

-- A Java KeyStore (JKS, version 2) holding one private-key entry `alias`:
-- the key under Sun's key protector (SHA-1 keystream XOR, salted, with a
-- SHA-1 check), its chain, and the store's SHA-1 integrity digest, as keytool
-- writes them. Passwords are UTF-16BE in both digests.
local OID_JKS_KEY_PROTECTOR = "2b060104012a02110101"   -- 1.3.6.1.4.1.42.2.17.1.1

local function u32(n) return string.pack(">I4", n) end
local function java_utf(s) return string.pack(">s2", s) end
local function sha1(s) return digest.new("sha1"):final(s) end

function pki.jks(cert, key, password, chain, alias)
  local secret = password:gsub(".", "\0%0")      -- UTF-16BE (ASCII passwords)
  local plain = util.unbase64(key:toPEM("private"):match("%-%-%-%-%-BEGIN PRIVATE KEY%-%-%-%-%-(.-)%-%-%-%-%-END"))
  local salt = rand.bytes(20)
  local stream, block = {}, salt
  for _ = 1, (#plain + 19) // 20 do
    block = sha1(secret .. block)
    stream[#stream + 1] = block
  end
  stream = table.concat(stream)
  local xored = {}
  for i = 1, #plain do xored[i] = string.char(plain:byte(i) ~ stream:byte(i)) end
  local protected = salt .. table.concat(xored) .. sha1(secret .. plain)
  local encrypted = seq(seq(oid(OID_JKS_KEY_PROTECTOR), tlv(0x05, "")), octets(protected))
  local certs = { cert }
  for _, c in ipairs(chain or {}) do certs[#certs + 1] = c end
  local parts = { u32(0xFEEDFEED), u32(2), u32(1),
    u32(1), java_utf(alias), string.pack(">i8", os.time() * 1000), u32(#encrypted), encrypted, u32(#certs) }
  for _, c in ipairs(certs) do
    local der = c:tostring("DER")
    parts[#parts + 1] = java_utf("X.509") .. u32(#der) .. der
  end
  local body = table.concat(parts)
  return body .. sha1(secret .. "Mighty Aphrodite" .. body)
end

-- "subject=" and "issuer=" comment lines, as tools write them above a
-- certificate in a PEM file (Command's IncludeSubjectHeader).
function pki.subject_header(cert)
  return "subject=" .. pki.dn_string(cert:getSubject()) .. "\nissuer=" .. pki.dn_string(cert:getIssuer()) .. "\n"
end

---------------------------------------------------------------- facts
function pki.thumbprint(cert)
  return cert:digest("sha1", "x"):upper()
end

function pki.serial_hex(cert)
  local hex = cert:getSerial():toHex():upper()
  if #hex % 2 == 1 then hex = "0" .. hex end
  return hex
end

function pki.der(cert)
  return cert:tostring("DER")
end

-- The named curves the sandbox issues: EC parameters PEM -> OID and size.
local CURVE_OF_PARAMETERS = {
  ["BggqhkjOPQMBBw=="] = { oid = "1.2.840.10045.3.1.7", bits = 256 },   -- P-256
  ["BgUrgQQAIg=="] = { oid = "1.3.132.0.34", bits = 384 },              -- P-384
}

-- Key type as Keyfactor's KeyType enum (1 RSA, 2 DSA, 3 ECC, 4 DH), its
-- name, size in bits and, for ECC, the curve's OID.
function pki.key_info(cert)
  local key = cert:getPublicKey()
  local params = key:getParameters()
  if params.n then return 1, "RSA", params.n:toBinary():len() * 8 end
  if params.group then
    local b64 = tostring(params.group:toPEM()):match("%-%-%-%-%-\n(.-)\n%-%-%-%-%-END")
    local curve = CURVE_OF_PARAMETERS[b64 or ""] or { oid = "1.2.840.10045.3.1.7", bits = 256 }
    return 3, "ECC", curve.bits, curve.oid
  end
  return 0, "Unknown", 0
end

---------------------------------------------------------------- CSR
-- Minimal DER reader: returns tag, content start, content end, next offset.
local function der_read(s, pos)
  local tag = s:byte(pos)
  local len = s:byte(pos + 1)
  if not tag or not len then return nil end
  local start = pos + 2
  if len >= 0x80 then
    local n = len - 0x80
    if n == 0 or n > 4 then return nil end
    len = 0
    for i = 1, n do len = len * 256 + s:byte(pos + 1 + i) end
    start = pos + 2 + n
  end
  if start + len - 1 > #s then return nil end
  return tag, start, start + len - 1, start + len
end

-- Signature algorithm OIDs (DER content bytes, hex) to digest names.
local SIG_DIGESTS = {
  ["2a864886f70d010105"] = "sha1", ["2a864886f70d01010b"] = "sha256",
  ["2a864886f70d01010c"] = "sha384", ["2a864886f70d01010d"] = "sha512",
  ["2a8648ce3d040301"] = "sha1", ["2a8648ce3d040302"] = "sha256",
  ["2a8648ce3d040303"] = "sha384", ["2a8648ce3d040304"] = "sha512",
}

local function hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end

-- Splits a CSR's DER into the signed info, digest name and signature.
local function split_csr(der)
  local tag, s, e = der_read(der, 1)
  if tag ~= 0x30 then return nil, "CSR is not a DER SEQUENCE" end
  local itag, _, _, inext = der_read(der, s)
  if itag ~= 0x30 then return nil, "CSR has no CertificationRequestInfo" end
  local info = der:sub(s, inext - 1)
  local atag, as, _, anext = der_read(der, inext)
  if atag ~= 0x30 then return nil, "CSR has no signature algorithm" end
  local otag, os_, oe = der_read(der, as)
  if otag ~= 0x06 then return nil, "CSR signature algorithm is not an OID" end
  local md = SIG_DIGESTS[hex(der:sub(os_, oe))]
  if not md then return nil, "CSR signature algorithm is not supported" end
  local btag, bs, be = der_read(der, anext)
  if btag ~= 0x03 or be > e then return nil, "CSR has no signature" end
  return info, md, der:sub(bs + 1, be)
end

-- Parses a CSR given as PEM (with or without header lines) and verifies its
-- signature (luaossl has no csr:verify). Returns the csr object or raises 400.
function pki.parse_csr(text)
  if type(text) ~= "string" or text:match("^%s*$") then
    util.fail(400, "missing_field", "CSR is required")
  end
  local b64 = text:match("%-%-%-%-%-BEGIN [%u ]*REQUEST%-%-%-%-%-(.-)%-%-%-%-%-END") or text
  if b64:match("[^%w%+/=%s]") then util.bad_request("CSR is not valid PEM or base64") end
  local ok, der = pcall(util.unbase64, b64)
  if not ok or not der or #der < 10 then util.bad_request("CSR is not valid base64") end
  local okc, csr = pcall(csr_mod.new, der, "DER")
  if not okc then util.bad_request("CSR could not be parsed: " .. tostring(csr)) end
  local info, md, sig = split_csr(der)
  if not info then util.bad_request(md) end
  local pub = csr:getPublicKey()
  local okv, valid = pcall(pub.verify, pub, sig, digest.new(md):update(info))
  if not okv or not valid then util.bad_request("CSR signature does not verify") end
  return csr
end

return pki
