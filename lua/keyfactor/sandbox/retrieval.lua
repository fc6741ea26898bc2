-- A certificate as a file: POST /Certificates/Recover (with the private key
-- the server kept, PFX or PEM, under the caller's password) and
-- POST /Certificates/Download (public: P7B, PEM or DER). Both name the
-- certificate by CertID, Thumbprint, or SerialNumber + IssuerDN, and put the
-- chain (the sandbox CA) in the order ChainOrder asks when IncludeChain is set.
local util = require "keyfactor.sandbox.util"
local pki = require "keyfactor.sandbox.pki"
local check = require "keyfactor.sandbox.check"
local certificates = require "keyfactor.sandbox.certificates"
local collections = require "keyfactor.sandbox.collections"
local x509 = require "openssl.x509"
local pkey = require "openssl.pkey"

local retrieval = {}

local RECOVER_FORMATS = { pfx = "PFX", pem = "PEM" }
local DOWNLOAD_FORMATS = { p7b = "P7B", pem = "PEM", der = "DER" }
local CHAIN_ORDERS = { endentityfirst = "EndEntityFirst", rootfirst = "RootFirst" }

local FIELDS = {
  CertID = "int", Thumbprint = "string", SerialNumber = "string", IssuerDN = "string",
  IncludeChain = "bool", ChainOrder = "string", Password = "string",
}

local function normal_hex(s) return (s:upper():gsub("[%s:]", "")) end

-- The certificate the body names (400 when it names none, 404 when unknown).
local function find(sandbox, body)
  local id = check.int(body, "CertID", false)
  local thumbprint = check.string(body, "Thumbprint", false)
  local serial = check.string(body, "SerialNumber", false)
  local issuer = check.string(body, "IssuerDN", false)
  if id and id ~= 0 then return certificates.find(sandbox, id) end
  local match
  if thumbprint and thumbprint ~= "" then
    local want = normal_hex(thumbprint)
    match = function(c) return c.thumbprint == want end
  elseif serial and serial ~= "" and issuer and issuer ~= "" then
    local want_serial, want_issuer = normal_hex(serial), issuer:gsub("%s", ""):lower()
    match = function(c)
      return c.serial == want_serial and c.issuer_dn:gsub("%s", ""):lower() == want_issuer
    end
  else
    util.fail(400, "missing_field",
      "One of CertID, Thumbprint, or SerialNumber and IssuerDN must be provided")
  end
  for i = #sandbox.state.certificates, 1, -1 do
    local c = sandbox.state.certificates[i]
    if match(c) then return c end
  end
  util.not_found("No certificate matches the given " .. (thumbprint and "Thumbprint" or "SerialNumber and IssuerDN"))
end

-- The certificate and, with IncludeChain, the CA, ordered as ChainOrder asks.
local function chain(sandbox, cert, body)
  local order = check.string(body, "ChainOrder", false)
  local normal = CHAIN_ORDERS[(order or "EndEntityFirst"):lower()]
  if not normal then util.bad_request("ChainOrder '" .. order .. "' is not valid (use EndEntityFirst or RootFirst)") end
  local list = { x509.new(cert.pem, "PEM") }
  if check.bool(body, "IncludeChain") then
    list[#list + 1] = sandbox.ca.cert
    if normal == "RootFirst" then list = { list[2], list[1] } end
  end
  return list
end

local function pems(list)
  local out = {}
  for i, c in ipairs(list) do out[i] = c:toPEM() end
  return table.concat(out)
end

local function file_name(cert, ext)
  return ((cert.issued_cn or cert.thumbprint):gsub("[^%w%.%-_]", "_")) .. "." .. ext
end

local function recover(sandbox, req)
  local format = check.format_header(req, RECOVER_FORMATS, "PFX")
  local body = check.body(req, FIELDS)
  local password = check.string(body, "Password", true)
  if password == "" then util.fail(400, "missing_field", "Password is required") end
  check.int(body, "CollectionId", false)
  local cert = find(sandbox, body)
  collections.check_certificate(sandbox, req, cert)
  if not cert.key_pem then
    util.bad_request(string.format("The private key of certificate %d cannot be recovered: "
      .. "it is not stored in Keyfactor", cert.id))
  end
  local list = chain(sandbox, cert, body)
  local key = pkey.new(cert.key_pem, "PEM")
  local leaf = x509.new(cert.pem, "PEM")
  if format == "PFX" then
    -- a PKCS#12 has no chain order: its key bag says which one is the leaf
    local blob = pki.pkcs12(leaf, key, password, #list > 1 and sandbox.ca.cert or nil)
    return { PFX = util.base64(blob), FileName = file_name(cert, "pfx") }
  end
  -- PEM: the encrypted key, then the certificates in the requested order
  local text = pki.encrypted_key_pem(key, password) .. pems(list)
  return { PFX = util.base64(text), FileName = file_name(cert, "pem") }
end

local function download(sandbox, req)
  local format = check.format_header(req, DOWNLOAD_FORMATS, "P7B")
  local body = check.body(req, FIELDS)
  check.int(body, "CollectionId", false)
  local cert = find(sandbox, body)
  collections.check_certificate(sandbox, req, cert)
  local list = chain(sandbox, cert, body)
  local content
  if format == "P7B" then
    content = pki.p7b(list)
  elseif format == "PEM" then
    content = pems(list)
  else
    content = x509.new(cert.pem, "PEM"):tostring("DER")   -- DER holds one certificate
  end
  return { Content = util.base64(content) }
end

retrieval.routes = {
  { method = "POST", path = "/Certificates/Recover", handler = recover,
    summary = "Certificate with its stored private key (x-certificateformat PFX or PEM)" },
  { method = "POST", path = "/Certificates/Download", handler = download,
    summary = "Certificate and chain (x-certificateformat P7B, PEM or DER)" },
}

return retrieval
