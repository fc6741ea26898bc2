--- Local keys and files: make keys and CSRs on this host, open PKCS#12
-- answers, write PEM files safely, read certificate facts.
--
--     local pki = require "keyfactor.pki"
--     local key = pki.key{ type = "EC" }                       -- P-256
--     local csr = pki.csr{ key = key, subject = "CN=web1.example.com,O=Example",
--                          dns = { "web1.example.com" } }
--     local r = assert(kf:enroll{ CSR = csr, Template = "WebServer", format = "PEM" })
--     pki.write_key("/etc/ssl/private/web1.key", pki.key_pem(key))   -- mode 0600
--     pki.write_file("/etc/ssl/web1.pem", r.CertificateInformation.Certificates[1])
--
-- The private key never leaves the host.  Needs luaossl (Debian
-- lua-luaossl, rock "luaossl"): an optional dependency, only this module uses it.
--
-- Mistakes in the arguments raise a Lua error naming the function and the
-- field; bad data (a wrong PKCS#12 password, text that is not a certificate,
-- a file that cannot be written) returns `nil, message`.
-- Pure Lua over luaossl: runs on Lua 5.1 to 5.4 and LuaJIT.
-- @module keyfactor.pki

local pkey = require "openssl.pkey"
local x509 = require "openssl.x509"
local csr_mod = require "openssl.x509.csr"
local name_mod = require "openssl.x509.name"
local altname = require "openssl.x509.altname"
local pkcs12 = require "openssl.pkcs12"
local base64 = require "keyfactor.util.base64"
local dates = require "keyfactor.util.dates"
local files = require "keyfactor.util.files"
local v = require "keyfactor.api.validate"

local pki = {}

-- -------------------------------------------------------------------------
-- Small helpers
-- -------------------------------------------------------------------------

-- Iterates a luaossl name/altname/chain through its __pairs metamethod
-- (called directly: Lua 5.1 and LuaJIT do not honour __pairs).
local function each(object)
  return getmetatable(object).__pairs(object)
end

pki.base64_decode = base64.decode
local looks_base64 = base64.looks

-- luaossl's classes are registered metatables (luaL_newmetatable), found by
-- name in the registry on every Lua version (this luaossl has no pkey.type).
local REGISTRY = debug.getregistry()
local function class(name)
  return function(value) return type(value) == "userdata" and getmetatable(value) == REGISTRY[name] end
end
local is_key, is_cert = class "EVP_PKEY*", class "X509*"

-- -------------------------------------------------------------------------
-- Keys
-- -------------------------------------------------------------------------

local CURVES = { ["prime256v1"] = "prime256v1", ["P-256"] = "prime256v1",
                 ["secp384r1"] = "secp384r1", ["P-384"] = "secp384r1",
                 ["secp521r1"] = "secp521r1", ["P-521"] = "secp521r1" }

local KEY_OPTS = v.record {
  type = v.one_of { "EC", "RSA" },
  bits = function(value, path)
    value = v.integer(value, path)
    if value ~= 2048 and value ~= 3072 and value ~= 4096 then
      v.fail(path, "must be 2048, 3072 or 4096, not " .. tostring(value))
    end
    return value
  end,
  curve = function(value, path)
    local curve = type(value) == "string" and CURVES[value]
    if not curve then
      v.fail(path, "must be \"prime256v1\" (\"P-256\"), \"secp384r1\" (\"P-384\") or \"secp521r1\" (\"P-521\"), not "
        .. (type(value) == "string" and '"' .. value .. '"' or type(value)))
    end
    return curve
  end,
}

--- Generates a private key (a luaossl pkey).
--
--     pki.key()                                -- EC P-256
--     pki.key{ type = "EC", curve = "secp384r1" }
--     pki.key{ type = "RSA", bits = 3072 }     -- bits 2048 (default), 3072, 4096
--
-- @tparam[opt] table opts the options below
-- @tparam[opt="EC"] string opts.type "EC" or "RSA"
-- @tparam[opt="prime256v1"] string opts.curve EC only: "prime256v1" (P-256), "secp384r1", "secp521r1"
-- @tparam[opt=2048] integer opts.bits RSA only: 2048, 3072 or 4096
-- @return the key (a luaossl pkey), for pki.csr, pki.key_pem, pki.write_key
function pki.key(opts)
  opts = v.check("pki.key", KEY_OPTS, opts or {}, "opts")
  local kind = opts.type or "EC"
  if kind == "EC" then
    if opts.bits then v.raise("pki.key", "opts.bits is for RSA keys; EC keys take opts.curve") end
    return pkey.new { type = "EC", curve = opts.curve or "prime256v1" }
  end
  if opts.curve then v.raise("pki.key", "opts.curve is for EC keys; RSA keys take opts.bits") end
  return pkey.new { type = "RSA", bits = opts.bits or 2048 }
end

local function check_key(where, key, path)
  if type(key) == "string" then
    local ok, parsed = pcall(pkey.new, key)
    if not ok then v.raise(where, path .. " is not a PEM private key") end
    key = parsed
  end
  if not is_key(key) then
    v.raise(where, path .. " must be a key from pki.key() or a PEM private key, not " .. type(key))
  end
  return key
end

--- The private key as unencrypted PKCS#8 PEM ("BEGIN PRIVATE KEY").
-- luaossl cannot encrypt it with a passphrase, so this module does not
-- offer that: protect the file instead (pki.write_key gives mode 0600).
-- @param key a key from pki.key (a luaossl pkey)
-- @treturn string the PEM text
function pki.key_pem(key)
  return check_key("pki.key_pem", key, "key"):toPEM("private")
end

-- -------------------------------------------------------------------------
-- Certificate signing requests
-- -------------------------------------------------------------------------

-- Attribute spellings accepted in subjects, as OpenSSL's short names.
local NAME_KEYS = {
  CN = "CN", O = "O", OU = "OU", L = "L", ST = "ST", S = "ST", C = "C",
  E = "emailAddress", EMAIL = "emailAddress", EMAILADDRESS = "emailAddress", DC = "DC",
  SERIALNUMBER = "serialNumber", STREET = "street", T = "title", TITLE = "title",
  G = "GN", GN = "GN", GIVENNAME = "GN", SN = "SN", SURNAME = "SN", UID = "UID",
}
-- Order of the attributes of a table subject (as Keyfactor shows DNs).
local NAME_ORDER = { "CN", "emailAddress", "UID", "serialNumber", "title", "GN", "SN",
                     "OU", "O", "street", "L", "ST", "C", "DC" }

-- "CN=a,O=b\,c" -> {{"CN","a"}, {"O","b,c"}}; commas escaped with a backslash.
local function parse_dn(where, dn)
  local rdns, current, i = {}, {}, 1
  local function finish()
    local part = table.concat(current)
    local k, value = part:match("^%s*([%w%.]+)%s*=%s*(.-)%s*$")
    if not k then v.raise(where, "subject \"" .. dn .. "\" is not a distinguished name like \"CN=host,O=Org\"") end
    rdns[#rdns + 1] = { NAME_KEYS[k:upper()] or k, value }
    current = {}
  end
  while i <= #dn do
    local c = dn:sub(i, i)
    if c == "\\" and i < #dn then
      current[#current + 1] = dn:sub(i + 1, i + 1)
      i = i + 2
    else
      if c == "," or c == ";" then finish() else current[#current + 1] = c end
      i = i + 1
    end
  end
  finish()
  return rdns
end

local function subject_rdns(where, subject)
  if type(subject) == "string" then
    if subject:find("^%s*$") then v.raise(where, "subject must not be empty") end
    return parse_dn(where, subject)
  end
  if type(subject) ~= "table" then
    v.raise(where, "subject must be a string like \"CN=host,O=Org\" or a table {CN = ...}, not " .. type(subject))
  end
  local by_key, keys = {}, {}
  for k, value in pairs(subject) do
    if type(k) ~= "string" then v.raise(where, "subject keys must be attribute names like CN, O") end
    local canonical = NAME_KEYS[k:upper()] or k
    if by_key[canonical] then v.raise(where, "subject." .. k .. " is given twice") end
    by_key[canonical] = value
    keys[#keys + 1] = canonical
  end
  local rank = {}
  for i, k in ipairs(NAME_ORDER) do rank[k] = i end
  table.sort(keys, function(a, b)
    local ra, rb = rank[a] or #NAME_ORDER + 1, rank[b] or #NAME_ORDER + 1
    if ra ~= rb then return ra < rb end
    return a < b
  end)
  local rdns = {}
  for _, k in ipairs(keys) do
    local value = by_key[k]
    if type(value) == "string" then value = { value } end
    if type(value) ~= "table" then
      v.raise(where, "subject." .. k .. " must be a string or an array of strings, not " .. type(value))
    end
    for _, item in ipairs(value) do
      if type(item) ~= "string" then v.raise(where, "subject." .. k .. " must hold strings") end
      rdns[#rdns + 1] = { k, item }
    end
  end
  if #rdns == 0 then v.raise(where, "subject must not be empty") end
  return rdns
end

local SAN_KINDS = { dns = "DNS", ip = "IP", email = "email", uri = "URI" }

local CSR_OPTS = v.record({
  key = function(value) return value end,      -- checked by check_key
  subject = function(value) return value end,  -- checked by subject_rdns
  dns = v.array(v.nonempty), ip = v.array(v.nonempty), email = v.array(v.nonempty),
  uri = v.array(v.nonempty), digest = v.one_of { "sha256", "sha384", "sha512" },
}, { "key", "subject" })

--- Makes a signed PKCS#10 request and returns it as PEM, ready for
-- `kf:enroll{CSR = pem, Template = ..., format = "PEM"}`.
--
--     pki.csr{ key = key,                                        -- pki.key() or PEM text
--              subject = "CN=web1.example.com,O=Example,C=US",   -- or {CN = ..., O = ...}
--              dns = { "web1.example.com" }, ip = { "10.0.0.5" },
--              email = { "ops@example.com" }, uri = { "spiffe://example.com/web" },
--              digest = "sha256" }                               -- or "sha384", "sha512"
--
-- A string subject keeps its order; a table one is written CN, OU, O, L,
-- ST, C (values may be arrays for repeated attributes such as OU).
-- @tparam table opts the options below
-- @param opts.key the private key: a pki.key() or its PEM text
-- @param opts.subject the subject: a DN string ("CN=a,O=b") or a table ({CN = "a", O = "b"})
-- @tparam[opt] {string,...} opts.dns DNS names (SANs)
-- @tparam[opt] {string,...} opts.ip IP addresses (SANs)
-- @tparam[opt] {string,...} opts.email e-mail addresses (SANs)
-- @tparam[opt] {string,...} opts.uri URIs (SANs)
-- @tparam[opt="sha256"] string opts.digest "sha256", "sha384" or "sha512"
-- @treturn string the CSR as PEM ("BEGIN CERTIFICATE REQUEST")
function pki.csr(opts)
  local where = "pki.csr"
  opts = v.check(where, CSR_OPTS, opts, "opts")
  local key = check_key(where, opts.key, "opts.key")
  local name = name_mod.new()
  for _, rdn in ipairs(subject_rdns(where, opts.subject)) do
    local ok = pcall(name.add, name, rdn[1], rdn[2])
    if not ok then v.raise(where, "opts.subject has an unknown attribute \"" .. rdn[1] .. "\"") end
  end
  local req = csr_mod.new()
  req:setVersion(1)
  req:setSubject(name)
  local alt, count = altname.new(), 0
  for _, field in ipairs { "dns", "ip", "email", "uri" } do
    for i, value in ipairs(opts[field] or {}) do
      local ok = pcall(alt.add, alt, SAN_KINDS[field], value)
      if not ok then v.raise(where, "opts." .. field .. "[" .. i .. "] is not valid: \"" .. value .. "\"") end
      count = count + 1
    end
  end
  if count > 0 then req:setSubjectAlt(alt) end
  req:setPublicKey(key)
  req:sign(key, opts.digest or "sha256")
  return req:toPEM()
end

-- -------------------------------------------------------------------------
-- Certificates
-- -------------------------------------------------------------------------

local PEM_BLOCK = "%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-.-%-%-%-%-%-END CERTIFICATE%-%-%-%-%-"

--- Every certificate of a PEM text (a chain file, a bundle), in order, as
-- luaossl certificates.  Other PEM blocks (keys) are skipped.
-- @tparam string text PEM text with one or more "BEGIN CERTIFICATE" blocks
-- @treturn table the array of luaossl certificates; or nil, message when a
-- certificate block does not parse
function pki.certificates_from_pem(text)
  if type(text) ~= "string" then v.raise("pki.certificates_from_pem", "text must be a string, not " .. type(text)) end
  local certs = {}
  for block in text:gmatch(PEM_BLOCK) do
    local ok, cert = pcall(x509.new, block, "PEM")
    if not ok then return nil, "pki.certificates_from_pem: certificate " .. (#certs + 1) .. " does not parse" end
    certs[#certs + 1] = cert
  end
  return certs
end

-- A luaossl certificate from a luaossl certificate, PEM, DER, base64 DER,
-- or a Keyfactor certificate table (its ContentBytes); nil, message when
-- the data is not a certificate.
local function to_cert(where, value)
  if is_cert(value) then return value end
  if type(value) == "table" then
    if type(value.ContentBytes) ~= "string" then
      v.raise(where, "a certificate table needs ContentBytes (base64 DER)")
    end
    value = value.ContentBytes
  end
  if type(value) ~= "string" then
    v.raise(where, "certificate must be PEM, DER, a luaossl certificate or a Keyfactor certificate, not "
      .. type(value))
  end
  local ok, cert
  if value:find("-----BEGIN CERTIFICATE-----", 1, true) then
    ok, cert = pcall(x509.new, value:match(PEM_BLOCK) or value, "PEM")
  else
    local der = value
    if looks_base64(value) then der = base64.decode(value) or value end
    ok, cert = pcall(x509.new, der, "DER")
  end
  if not ok then return nil, where .. ": not a certificate (PEM, DER or base64 DER expected)" end
  return cert
end

local function dn_string(name)
  local parts = {}
  for k, value in each(name) do
    parts[#parts + 1] = k .. "=" .. value:gsub("([,+\\\"<>;])", "\\%1")
  end
  return table.concat(parts, ", ")
end

--- Facts about a certificate, as a table.
-- The certificate may be PEM, DER, base64 DER, a luaossl certificate, or a
-- table from kf:certificate with ContentBytes:
--
--     { subject = "CN=web1.example.com, O=Example", issuer = "CN=SandboxCA, ...",
--       serial = "32F7F2...",                            -- upper-case hex, even length
--       not_before = 1700000000, not_after = 1731536000, -- seconds since the epoch
--       days_left = 364,                                 -- whole days until not_after (negative once expired)
--       dns = {...}, ip = {...}, email = {...}, uri = {...},
--       thumbprint = "41C4E6E5..." }                     -- SHA-1 of the DER, as Keyfactor's Thumbprint
--
-- @param certificate PEM, DER, base64 DER, a luaossl certificate, or a
-- Keyfactor certificate table with `ContentBytes`
-- @treturn table the facts above; or nil, message when the data is not a certificate
function pki.certificate_info(certificate)
  local cert, err = to_cert("pki.certificate_info", certificate)
  if not cert then return nil, err end
  local not_before, not_after = cert:getLifetime()
  local serial = cert:getSerial():toHex():upper()
  if #serial % 2 == 1 then serial = "0" .. serial end
  local info = {
    subject = dn_string(cert:getSubject()), issuer = dn_string(cert:getIssuer()),
    serial = serial, not_before = math.floor(not_before), not_after = math.floor(not_after),
    dns = {}, ip = {}, email = {}, uri = {},
    thumbprint = cert:digest("sha1", "x"):upper(),
  }
  info.days_left = math.floor((info.not_after - os.time()) / 86400)
  local alt = cert:getSubjectAlt()
  if alt then
    local field = { DNS = "dns", IP = "ip", email = "email", URI = "uri" }
    for kind, value in each(alt) do
      local list = info[field[kind]]
      if list then list[#list + 1] = value end
    end
  end
  return info
end

--- True when `certificate` expires within `days` days from now (or has
-- expired).
-- @param certificate anything pki.certificate_info takes, or a Keyfactor
-- certificate table with only `NotAfter` ("2027-11-25T13:24:19Z")
-- @tparam number days how close the expiry may be
-- @treturn boolean true when it is due (data that is not a certificate raises)
function pki.needs_renewal(certificate, days)
  days = v.check("pki.needs_renewal", v.number, days, "days")
  local not_after
  if type(certificate) == "table" and not is_cert(certificate) and certificate.ContentBytes == nil then
    not_after = dates.epoch(certificate.NotAfter)
    if not not_after then
      v.raise("pki.needs_renewal", "certificate table needs ContentBytes or NotAfter (ISO 8601)")
    end
  else
    local info, err = pki.certificate_info(certificate)
    if not info then v.raise("pki.needs_renewal", err) end
    not_after = info.not_after
  end
  return not_after - os.time() < days * 86400
end

-- -------------------------------------------------------------------------
-- PKCS#12
-- -------------------------------------------------------------------------

-- True when `der` is exactly one DER SEQUENCE (as a PKCS#12 file is).
local function der_sequence(der)
  if der:byte(1) ~= 0x30 or #der < 2 then return false end
  local first = der:byte(2)
  if first < 0x80 then return #der == 2 + first end
  local count, length = first - 0x80, 0
  if count < 1 or count > 4 or #der < 2 + count then return false end
  for i = 1, count do length = length * 256 + der:byte(2 + i) end
  return #der == 2 + count + length
end

--- Opens a PKCS#12 file: the `Pkcs12Blob` of a PFX enrollment (base64) or
-- raw DER.  The password never appears in a message.
-- @tparam string blob base64 or DER
-- @tparam string password the PFX password given at enrollment
-- @treturn table `{key = PKCS#8 PEM, certificate = PEM, chain = {PEM, ...}}`
-- (`chain` holds the other certificates, e.g. the CA with IncludeChain = true;
-- the key field is nil for a file without one); or nil, message for a wrong password
-- or data that is not PKCS#12
function pki.split_pkcs12(blob, password)
  local where = "pki.split_pkcs12"
  v.check(where, v.nonempty, blob, "blob")
  if password ~= nil then v.check(where, v.string, password, "password") end
  local der = blob
  if looks_base64(blob) then
    der = base64.decode(blob)
    if not der then return nil, where .. ": blob is not valid base64" end
  end
  local ok, key, cert, chain = pcall(pkcs12.parse, der, password)
  if not ok then
    -- luaossl may report an older error left in OpenSSL's queue, so its
    -- message alone cannot tell a wrong password; well-formed DER can.
    if tostring(key):find("mac verify", 1, true) or der_sequence(der) then
      return nil, where .. ": wrong password (the PKCS#12 integrity check failed)"
    end
    return nil, where .. ": not a PKCS#12 file"
  end
  if not cert then return nil, where .. ": the PKCS#12 file holds no certificate" end
  local out = { key = key and key:toPEM("private") or nil, certificate = cert:toPEM(), chain = {} }
  if chain then
    for _, c in each(chain) do out.chain[#out.chain + 1] = c:toPEM() end
  end
  return out
end

-- -------------------------------------------------------------------------
-- Files
-- -------------------------------------------------------------------------

local function pem_text(where, value, field)
  if is_cert(value) then return value:toPEM() end
  if is_key(value) then return value:toPEM("private") end
  if type(value) ~= "string" then v.raise(where, field .. " must be PEM text, not " .. type(value)) end
  return value
end

local BUNDLE_PARTS = v.one_of { "certificate", "chain", "key" }
local BUNDLE_OPTS = v.record({
  certificate = function(value) return value end, key = function(value) return value end,
  chain = function(value, path)
    if type(value) ~= "string" and type(value) ~= "table" then
      v.fail(path, "must be PEM text or an array of PEM texts, not " .. type(value))
    end
    return value
  end,
  order = v.array(BUNDLE_PARTS, { min = 1 }),
}, { "certificate" })

--- One PEM text of several parts, each ending in a newline.
-- Default order: certificate, chain (in the given order), key — what
-- HAProxy's `crt` file and Postfix's `smtpd_tls_chain_files` take
-- (HAProxy accepts any order).  nginx's `ssl_certificate` wants
-- `order = {"certificate", "chain"}` with the key in its own file.
--
--     pki.bundle{ certificate = pem, chain = { ca_pem }, key = key_pem }
--     pki.bundle{ certificate = pem, chain = { ca_pem }, order = { "certificate", "chain" } }
--
-- @tparam table parts PEM texts or luaossl objects (the table pki.split_pkcs12 returns works as is)
-- @param parts.certificate the certificate
-- @param[opt] parts.chain an array of chain certificates
-- @param[opt] parts.key the private key
-- @tparam[opt] {string,...} parts.order the parts in the order wanted
-- @treturn string the PEM text
function pki.bundle(parts)
  local where = "pki.bundle"
  parts = v.check(where, BUNDLE_OPTS, parts, "parts")
  local texts = {}
  local function add(text)
    if text ~= "" then texts[#texts + 1] = text:find("\n$") and text or text .. "\n" end
  end
  for _, part in ipairs(parts.order or { "certificate", "chain", "key" }) do
    local value = parts[part]
    if part == "chain" and type(value) == "table" and not is_cert(value) then
      for i, item in ipairs(value) do add(pem_text(where, item, "parts.chain[" .. i .. "]")) end
    elseif value ~= nil then
      add(pem_text(where, value, "parts." .. part))
    elseif parts.order then
      v.raise(where, "parts." .. part .. " is listed in parts.order but not given")
    end
  end
  return table.concat(texts)
end

--- Writes `data` to `path` atomically: a temporary file in the same
-- directory (made by mktemp(1), so mode 0600 from the start), chmod to
-- `mode`, the data, then os.rename over `path` — readers see the old file or
-- the new one, never half of one.  Not fsync'ed.
-- @tparam string path the file to (over)write
-- @tparam string data its new contents
-- @tparam[opt="0644"] string mode octal permission text
-- @return true; or nil, message (the temporary file removed)
function pki.write_file(path, data, mode)
  local where = "pki.write_file"
  v.check(where, v.nonempty, path, "path")
  data = pem_text(where, data, "data")
  return files.write(path, data, mode, where)
end

--- Writes a private key with mode 0600 (as pki.write_file, atomically).
-- @tparam string path the key file
-- @param key PEM text or a pki.key()
-- @return true; or nil, message
function pki.write_key(path, key)
  if is_key(key) then key = key:toPEM("private") end
  return pki.write_file(path, key, "0600")
end

return pki
