-- Certificate records: creation from issued X.509 objects, the
-- CertificateRetrievalResponse shape, GET /Certificates (query + paging),
-- GET /Certificates/{id}, /Certificates/Locations/{id}, POST /Certificates/Revoke.
local util = require "keyfactor.sandbox.util"
local pki = require "keyfactor.sandbox.pki"
local query = require "keyfactor.sandbox.query"
local state = require "keyfactor.sandbox.state"
local check = require "keyfactor.sandbox.check"
local stores = require "keyfactor.sandbox.stores"

local certificates = {}

local STATE_NAMES = { [0] = "Unknown", [1] = "Active", [2] = "Revoked" }
-- SubjectAltNameElements Type: the X.509 GeneralName choice numbers.
local SAN_TYPES = { rfc822 = 1, dns = 2, uri = 6, ip4 = 7, ip6 = 7 }
local REVOCATION_REASONS = { [-1] = true, [0] = true, [1] = true, [2] = true, [3] = true,
  [4] = true, [5] = true, [6] = true, [7] = true, [8] = true, [999] = true }

local function name_part(name, key)
  for k, v in pairs(name) do
    if k == key then return v end
  end
end

-- Builds and stores the record of a freshly issued certificate.
-- info: request_id, template, key_pem (retained key or nil), requester, metadata.
function certificates.create(sandbox, cert, info)
  local subject = cert:getSubject()
  local key_type, key_type_name, key_bits, curve = pki.key_info(cert)
  local not_before, not_after = cert:getLifetime()
  local record = {
    thumbprint = pki.thumbprint(cert),
    serial = pki.serial_hex(cert),
    issued_dn = pki.dn_string(subject),
    issued_cn = name_part(subject, "CN"),
    issued_ou = name_part(subject, "OU"),
    issued_email = name_part(subject, "emailAddress"),
    issuer_dn = pki.dn_string(cert:getIssuer()),
    not_before = math.floor(not_before),
    not_after = math.floor(not_after),
    import_date = util.now(),
    pem = cert:toPEM(),
    key_pem = info.key_pem,
    template = info.template,
    request_id = info.request_id,
    state = 1,
    sans = pki.sans_of(cert),
    key_type = key_type, key_type_name = key_type_name, key_bits = key_bits, curve = curve,
    signing_alg = cert:getSignatureName(),
    metadata = info.metadata or {},
    requester = info.requester,
  }
  return state.add_certificate(sandbox.state, record)
end

function certificates.find(sandbox, id)
  local cert = state.certificate(sandbox.state, id)
  if not cert then util.not_found("Certificate with ID " .. tostring(id) .. " was not found") end
  return cert
end

function certificates.is_expired(cert)
  return cert.not_after < os.time()
end

---------------------------------------------------------------- rendering
local function der_base64(cert)
  local body = cert.pem:match("%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-(.-)%-%-%-%-%-END")
  return (body:gsub("%s", ""))
end

local function san_elements(cert)
  local out, n = util.array(), 0
  for _, kind in ipairs{ "dns", "ip4", "ip6", "rfc822", "uri" } do
    for _, v in ipairs(cert.sans[kind] or {}) do
      n = n + 1
      out[#out + 1] = { Id = cert.id * 100 + n, Value = v, Type = SAN_TYPES[kind],
        ValueHash = util.sha1_hex(v:lower()) }
    end
  end
  return out
end

-- Locations come from completed store inventories, never from pending jobs.
function certificates.locations(sandbox, cert)
  local out = util.array()
  for _, st in ipairs(sandbox.state.stores) do
    for _, item in ipairs(st.inventory) do
      if item.cert_id == cert.id then
        out[#out + 1] = { StoreMachine = st.ClientMachine, StorePath = st.StorePath,
          StoreType = st.CertStoreType, Alias = item.alias, ChainLevel = 0, CertStoreId = st.Id }
      end
    end
  end
  return out
end

local function locations_count(sandbox, locations)
  local counts, order = {}, {}
  for _, loc in ipairs(locations) do
    local t = stores.type_name(loc.StoreType, sandbox)
    if not counts[t] then order[#order + 1] = t end
    counts[t] = (counts[t] or 0) + 1
  end
  local out = util.array()
  for _, t in ipairs(order) do out[#out + 1] = { Type = t, Count = counts[t] } end
  return out
end

local DETAILED_KEY_USAGE = {
  CrlSign = false, DataEncipherment = false, DecipherOnly = false, DigitalSignature = true,
  EncipherOnly = false, KeyAgreement = false, KeyCertSign = false, KeyEncipherment = true,
  NonRepudiation = false, HexCode = "a0",
}

-- CertificateRetrievalResponse (keyfactor-api.md §6.1).
function certificates.render(sandbox, cert, opts)
  opts = opts or {}
  local template = state.template(cert.template) or {}
  local locations = certificates.locations(sandbox, cert)
  local revoked = cert.state == 2
  return {
    Id = cert.id, Thumbprint = cert.thumbprint, SerialNumber = cert.serial,
    IssuedDN = cert.issued_dn, IssuedCN = cert.issued_cn or util.null,
    IssuedOU = cert.issued_ou or util.null, IssuedEmail = cert.issued_email or util.null,
    IssuerDN = cert.issuer_dn, PrincipalId = util.null, PrincipalName = util.null,
    ImportDate = util.iso(cert.import_date), NotBefore = util.iso(cert.not_before),
    NotAfter = util.iso(cert.not_after),
    CertState = cert.state, CertStateString = STATE_NAMES[cert.state],
    KeySizeInBits = cert.key_bits, KeyType = cert.key_type, KeyTypeString = cert.key_type_name,
    KeyUsage = 160, SigningAlgorithm = cert.signing_alg,
    Curve = cert.key_type == 3 and (cert.curve or "1.2.840.10045.3.1.7") or util.null,
    RevocationEffDate = revoked and util.iso(cert.revocation_date) or util.null,
    RevocationReason = revoked and cert.revocation_reason or util.null,
    RevocationComment = revoked and cert.revocation_comment or util.null,
    CertificateAuthorityId = state.CA_ID, CertificateAuthorityName = state.CA_NAME,
    TemplateId = template.Id or 0, TemplateName = template.DisplayName or cert.template or "",
    ArchivedKey = cert.key_pem ~= nil, HasPrivateKey = cert.key_pem ~= nil,
    KeyRecoverable = cert.key_pem ~= nil,
    CertRequestId = cert.request_id, RequesterId = 1,
    RequesterName = cert.requester or "SANDBOX\\admin",
    ContentBytes = der_base64(cert), CertificateKeyId = cert.id, CARowIndex = cert.id,
    CARecordId = tostring(cert.id),
    Metadata = opts.include_metadata == false and {} or (cert.metadata or {}),
    DetailedKeyUsage = util.copy(DETAILED_KEY_USAGE),
    ExtendedKeyUsages = util.array{
      { Id = 1, Oid = "1.3.6.1.5.5.7.3.1", DisplayName = "Server Authentication" },
      { Id = 2, Oid = "1.3.6.1.5.5.7.3.2", DisplayName = "Client Authentication" },
    },
    SubjectAltNameElements = san_elements(cert),
    CRLDistributionPoints = util.array(),
    LocationsCount = locations_count(sandbox, locations),
    SSLLocations = util.array(),
    Locations = opts.include_locations and locations or util.array(),
  }
end

---------------------------------------------------------------- query fields
local field = query.field

certificates.fields = {
  id = field(function(c) return c.id end, "number"),
  thumbprint = field(function(c) return c.thumbprint end),
  serialnumber = field(function(c) return c.serial end),
  issueddn = field(function(c) return c.issued_dn end),
  issuedcn = field(function(c) return c.issued_cn end),
  issuedou = field(function(c) return c.issued_ou end),
  issuedemail = field(function(c) return c.issued_email end),
  issuerdn = field(function(c) return c.issuer_dn end),
  certrequestid = field(function(c) return c.request_id end, "number"),
  notafter = field(function(c) return c.not_after end, "date"),
  notbefore = field(function(c) return c.not_before end, "date"),
  importdate = field(function(c) return c.import_date end, "date"),
  certstate = field(function(c) return c.state end, "number"),
  templatename = field(function(c) return c.template end),
  templateid = field(function(c) return (state.template(c.template) or {}).Id end, "number"),
  keysizeinbits = field(function(c) return c.key_bits end, "number"),
  keytype = field(function(c) return c.key_type end, "number"),
  signingalgorithm = field(function(c) return c.signing_alg end),
  hasprivatekey = field(function(c) return c.key_pem ~= nil end, "bool"),
  certificateauthorityname = field(function() return state.CA_NAME end),
  requestername = field(function(c) return c.requester end),
  revocationcomment = field(function(c) return c.revocation_comment end),
}

---------------------------------------------------------------- handlers
local function render_opts(req)
  return {
    include_locations = query.bool_param(req.params, "includeLocations"),
    include_metadata = true,
  }
end

-- collectionId: read through a collection (collections.lua requires this
-- module, so it is required late).
local function collections() return require "keyfactor.sandbox.collections" end

local function get_one(sandbox, req, id)
  local cert = certificates.find(sandbox, check.path_int(id, "id"))
  collections().check_certificate(sandbox, req, cert)
  return certificates.render(sandbox, cert, render_opts(req))
end

local function list(sandbox, req)
  local p = req.params
  local include_revoked = query.bool_param(p, "pq.includeRevoked")
  local include_expired = query.bool_param(p, "pq.includeExpired")
  local candidates = {}
  local in_collection = collections().filter(sandbox, req) or function() return true end
  for _, cert in ipairs(sandbox.state.certificates) do
    if (include_revoked or cert.state ~= 2) and (include_expired or not certificates.is_expired(cert))
        and in_collection(cert) then
      candidates[#candidates + 1] = cert
    end
  end
  local opts = render_opts(req)
  return query.page(candidates, p, "pq", certificates.fields,
    function(cert) return certificates.render(sandbox, cert, opts) end)
end

-- CertificateLocationsResponse: the locations grouped by store type, the
-- group named by the type's short name.
local function get_locations(sandbox, _, id)
  local cert = certificates.find(sandbox, check.path_int(id, "id"))
  local by_type, details = {}, util.array()
  for _, loc in ipairs(certificates.locations(sandbox, cert)) do
    local group = by_type[loc.StoreType]
    if not group then
      group = { StoreType = stores.type_name(loc.StoreType, sandbox), StoreTypeId = loc.StoreType,
        StoreCount = 0, Locations = util.array() }
      by_type[loc.StoreType] = group
      details[#details + 1] = group
    end
    group.StoreCount = group.StoreCount + 1
    table.insert(group.Locations, { StoreId = loc.CertStoreId, StoreTypeId = loc.StoreType,
      ClientMachine = loc.StoreMachine, StorePath = loc.StorePath, Alias = loc.Alias })
  end
  return { Details = details }
end

local REVOKE_FIELDS = { CertificateIds = check.array_of("int"), Reason = "int", Comment = "string",
  EffectiveDate = "date", CollectionId = "int" }

local function revoke(sandbox, req)
  local body = check.body(req, REVOKE_FIELDS)
  local ids = check.int_array(body, "CertificateIds", true)
  local reason = check.int(body, "Reason", false) or 0
  if not REVOCATION_REASONS[reason] then
    util.bad_request("Reason " .. reason .. " is not a valid revocation reason")
  end
  local comment = check.string(body, "Comment", true)
  if comment == "" then util.fail(400, "missing_field", "Comment is required") end
  local effective = check.date(body, "EffectiveDate", false) or util.now()
  check.int(body, "CollectionId", false)
  if #ids == 0 then util.fail(400, "missing_field", "CertificateIds must not be empty") end
  local certs = {}
  for i, id in ipairs(ids) do certs[i] = certificates.find(sandbox, id) end
  local revoked = util.array()
  for _, cert in ipairs(certs) do
    cert.state = 2
    cert.revocation_reason = reason
    cert.revocation_comment = comment
    cert.revocation_date = effective
    revoked[#revoked + 1] = cert.id
  end
  return { RevokedIds = revoked, SuspendedCerts = util.array() }
end

certificates.routes = {
  { method = "GET", path = "/Certificates", handler = list,
    summary = "Certificates matching a query, paged" },
  { method = "GET", path = "/Certificates/Locations/{id:int}", handler = get_locations,
    summary = "Where a certificate is installed" },
  { method = "GET", path = "/Certificates/{id:int}", handler = get_one,
    summary = "One certificate by id" },
  { method = "POST", path = "/Certificates/Revoke", handler = revoke,
    summary = "Revoke certificates by id" },
}

return certificates
