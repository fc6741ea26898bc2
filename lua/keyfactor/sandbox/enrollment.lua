-- Enrollment: POST /Enrollment/PFX, /Enrollment/CSR, /Enrollment/Renew, and
-- issuing the certificate of a request (also used when a request is approved).
local util = require "keyfactor.sandbox.util"
local pki = require "keyfactor.sandbox.pki"
local state = require "keyfactor.sandbox.state"
local check = require "keyfactor.sandbox.check"
local certificates = require "keyfactor.sandbox.certificates"
local jobs = require "keyfactor.sandbox.jobs"
local metadata_fields = require "keyfactor.sandbox.metadata"
local patterns = require "keyfactor.sandbox.patterns"
local query = require "keyfactor.sandbox.query"
local security = require "keyfactor.sandbox.security"
local csr_mod = require "openssl.x509.csr"
local x509 = require "openssl.x509"

local enrollment = {}

-- x-certificateformat of PFX enrollment: Command 25 adds PEM, JKS and
-- REPLACE to the 2022 generation's PFX, Zip and STORE.
local PFX_FORMATS = { pfx = "PFX", zip = "Zip", store = "STORE", pem = "PEM", jks = "JKS", replace = "REPLACE" }
local PFX_FORMATS_2022 = { pfx = "PFX", zip = "Zip", store = "STORE" }
local CSR_FORMATS = { pem = "PEM", der = "DER" }
local KEPT = { STORE = true, REPLACE = true }   -- formats that keep the key on the server, no file
local CHAIN_ORDERS = { endentityfirst = "EndEntityFirst", rootfirst = "RootFirst" }

-- Field kinds of the request bodies (check.lua checks every one present).
local COMMON_FIELDS = {
  Template = "string", CertificateAuthority = "string", Timestamp = "date", IncludeChain = "bool",
  Metadata = "object", AdditionalEnrollmentFields = "object", SANs = check.map_of(check.array_of("string")),
  ValidityDays = "number",
}
local function with_common(fields)
  for k, v in pairs(COMMON_FIELDS) do fields[k] = v end
  return fields
end
local PFX_FIELDS = with_common{ Subject = "string", Password = "string", RenewalCertificateId = "int",
  CustomFriendlyName = "string", PopulateMissingValuesFromAD = "bool" }
local STORE_ENTRY = { StoreId = "string", Alias = "string", Overwrite = "bool", Properties = "object" }
local PFX_V2_FIELDS = util.copy(PFX_FIELDS)
for k, v in pairs{ Stores = check.array_of(check.object_of(STORE_ENTRY)), InstallIntoExistingCertificateStores = "bool",
    JobTime = "date", ChainOrder = "string", KeyType = "string", KeyLength = "int", Curve = "string",
    IncludeSubjectHeader = "bool", UseLegacyEncryption = "bool", OwnerRoleId = "int", OwnerRoleName = "string",
    EnrollmentPatternId = "int" } do
  PFX_V2_FIELDS[k] = v
end
-- Command 25's v1 requests (EnrollmentPFXEnrollmentRequest and
-- EnrollmentCSREnrollmentRequest in command-25-models.md); the 2022 server
-- binds only the fields above and ignores these.
local V25_FIELDS = { KeyType = "string", KeyLength = "int", Curve = "string", OwnerRoleId = "int",
  OwnerRoleName = "string", IncludeSubjectHeader = "bool", ChainOrder = "string", UseLegacyEncryption = "bool",
  MicrosoftTargetCSP = "string", FileExtension = "string", EnrollmentPatternId = "int" }
local PFX_25_FIELDS = util.copy(PFX_FIELDS)
for k, v in pairs(V25_FIELDS) do PFX_25_FIELDS[k] = v end
for k, v in pairs{ AlternativeKeyType = "string", AlternativeKeyLength = "int", MicrosoftTargetCSP = "string",
    FileExtension = "string" } do
  PFX_V2_FIELDS[k] = v
end
local CSR_FIELDS = with_common{ CSR = "string" }
local CSR_25_FIELDS = util.copy(CSR_FIELDS)
for k, v in pairs{ OwnerRoleId = "int", OwnerRoleName = "string", IncludeSubjectHeader = "bool",
    EnrollmentPatternId = "int", PrivateKey = "string", RenewalCertificateId = "int", FileExtension = "string" } do
  CSR_25_FIELDS[k] = v
end
local RENEW_FIELDS = { CertificateId = "int", Thumbprint = "string", CertificateAuthority = "string",
  Template = "string", Timestamp = "date" }

local function is_2022(sandbox) return sandbox.generation == "2022" end

-- The template of a request, and the enrollment pattern whose policy holds
-- (Command 25: EnrollmentPatternId, or a Template and its default pattern;
-- the 2022 generation knows templates only).
local function check_template(sandbox, body)
  local pattern_id = not is_2022(sandbox) and check.int(body, "EnrollmentPatternId", false) or nil
  local name = check.string(body, "Template", false)
  if pattern_id then
    local pattern = state.enrollment_pattern(pattern_id)
    if not pattern then util.bad_request("Enrollment pattern with id " .. pattern_id .. " was not found") end
    local template = state.template_by_id(pattern.template)
    if name and state.template(name) ~= template then
      util.bad_request("Template '" .. name .. "' is not the template of enrollment pattern '" .. pattern.Name .. "'")
    end
    return template, pattern
  end
  if not name then
    util.fail(400, "missing_field", is_2022(sandbox) and "Template is required"
      or "EnrollmentPatternId is required (or, as older servers take it, Template)")
  end
  local template = state.template(name)
  if not template then
    util.bad_request("Template '" .. name .. "' was not found or is not available for enrollment")
  end
  if is_2022(sandbox) then return template end
  for _, pattern in ipairs(state.enrollment_patterns) do
    if pattern.template == template.Id then return template, pattern end
  end
  return template
end

-- The security role that will own the certificate (OwnerRoleId or
-- OwnerRoleName): it must exist and the requester must hold it.
local function check_owner(sandbox, req, body)
  local id = check.int(body, "OwnerRoleId", false)
  local name = check.string(body, "OwnerRoleName", false)
  if not id and not name then return nil end
  local found = security.role(sandbox, id, not id and name or nil)
  if not found then
    util.bad_request(id and ("Security role with id " .. id .. " was not found")
      or ("Security role '" .. name .. "' was not found"))
  end
  for _, account in ipairs(found.identities or {}) do
    if account:lower() == req.user.name:lower() then return found end
  end
  util.bad_request(string.format("The owner role '%s' cannot be assigned: %s does not hold it",
    found.name, req.user.name))
end

local function check_ca(body)
  local ca = check.string(body, "CertificateAuthority", false)
  if ca and ca ~= "" and ca:lower() ~= state.CA_NAME:lower() then
    util.bad_request("Certificate authority '" .. ca .. "' was not found (use " .. state.CA_NAME .. ")")
  end
end

-- Numeric fields that reach luaossl (days become an ASN.1 time, a length a
-- key size), bounded first: out of range is a 400 naming the field, not a
-- luaossl error answered 500.
local NUMERIC_RANGES = {
  ValidityDays = { -36500, 36500 },   -- a sandbox extension: up to a century either way
  KeyLength = { 256, 16384 },
}

local function check_ranges(body)
  for name, range in pairs(NUMERIC_RANGES) do
    local v = body[name]
    if type(v) == "number" and not (v >= range[1] and v <= range[2]) then   -- NaN fails too
      util.bad_request(string.format("%s must be a number from %d to %d", name, range[1], range[2]))
    end
  end
end

-- Fields shared by PFX and CSR enrollment.
local function check_common(sandbox, req, body)
  check_ranges(body)
  check_ca(body)
  check.date(body, "Timestamp", false)
  check.bool(body, "IncludeChain")
  -- names and values checked against the metadata fields, as the server does
  local metadata = metadata_fields.validate(check.object(body, "Metadata") or {}, "Metadata")
  for name, v in pairs(metadata) do
    if v == "" then metadata[name] = nil end
  end
  check.object(body, "AdditionalEnrollmentFields")
  local days = body.ValidityDays   -- a sandbox extension: a number (COMMON_FIELDS)
  local template, pattern = check_template(sandbox, body)
  return {
    template = template, pattern = pattern,
    owner = not is_2022(sandbox) and check_owner(sandbox, req, body) or nil,
    subject_header = not is_2022(sandbox) and body.IncludeSubjectHeader == true,
    sans = pki.check_sans(body.SANs),
    metadata = metadata,
    include_chain = body.IncludeChain == true,
    days = type(days) == "number" and days or 365,
  }
end

local function check_subject(subject)
  local rdns, err = pki.parse_dn(subject)
  if not rdns then util.bad_request(err) end
  for _, kv in ipairs(rdns) do
    if kv[1] == "CN" and kv[2] ~= "" then return end
  end
  util.bad_request("Subject must contain a CN")
end

local function new_request(sandbox, req, fields)
  fields.status = fields.status or "pending"
  fields.submitted = util.now()
  fields.requester = req.user.name
  local request = state.add_request(sandbox.state, fields)
  request.ca_request_id = tostring(1000 + request.id)
  return request
end

-- Issues the certificate of `request`. Returns the certificate record, the
-- x509 object and the private key (nil for CSR requests).
function enrollment.issue(sandbox, request)
  local key, public, name
  if request.csr_pem then
    local csr = csr_mod.new(request.csr_pem)
    public, name = csr:getPublicKey(), csr:getSubject()
  else
    key = pki.new_key(request.key_kind, request.key_size)
    public = key
  end
  local cert = pki.issue(sandbox.ca, { subject = request.subject, subject_name = name,
    sans = request.sans, key = public, days = request.days })
  local record = certificates.create(sandbox, cert, {
    request_id = request.id, template = request.template, requester = request.requester,
    metadata = request.metadata, key_pem = request.retain_key and key and key:toPEM("private") or nil,
  })
  record.owner_role = request.owner_role
  request.status = "issued"
  request.cert_id = record.id
  return record, cert, key
end

local function issued_message(request)
  return string.format("The private key was successfully retained. Certificate issued for request %d.", request.id)
end

-- The workflow instance that waits for the request's approval
-- (workflow_instances.lua, which needs enrollment.issue: required here late).
local function start_approval(sandbox, request)
  return require("keyfactor.sandbox.workflow_instances").start(sandbox, request)
end

local function pending_info(request)
  return {
    KeyfactorId = 0, KeyfactorRequestId = request.id, Pkcs12Blob = "", Password = util.null,
    SerialNumber = util.null, IssuerDN = util.null, Thumbprint = util.null,   -- no certificate yet
    RequestDisposition = "PENDING",
    DispositionMessage = "The request is pending approval by a certificate manager.",
    EnrollmentContext = util.null,
  }
end

---------------------------------------------------------------- PFX
local NO_WORKFLOW = "00000000-0000-0000-0000-000000000000"

-- The workflow fields Command 25 adds to CertificateInformation (v1 and
-- v2; the 2022 v1 answer has none); `pkcs12` adds the PFX answer's own two.
local function workflow_fields(info, pkcs12)
  info.WorkflowInstanceId, info.WorkflowReferenceId = NO_WORKFLOW, 0
  if pkcs12 then info.StoreIdsInvalidForRenewal, info.ChainFailedToBuild = util.array(), false end
  return info
end

-- API version 2 (PFXEnrollmentManagementResponse): the v1 answer's fields
-- plus the workflow ones, and the stores a job was created for.
local function v2_answer(info, metadata, successful)
  workflow_fields(info, true)
  return { CertificateInformation = info, Metadata = metadata, SuccessfulStores = successful or util.array() }
end

-- The key the request asks for, under its pattern's policy; the 2022
-- generation's v1 request has no key fields (RSA 2048).
local function key_spec(sandbox, body, v2, common)
  if is_2022(sandbox) and not v2 then return { kind = "RSA", size = 2048 } end
  local whose = common.pattern and ("enrollment pattern '" .. common.pattern.Name .. "'")
    or ("template '" .. common.template.CommonName .. "'")
  local alternative = v2 and check.string(body, "AlternativeKeyType", false)
  if alternative then
    util.bad_request("The alternative key type '" .. alternative .. "' is not allowed by " .. whose)
  end
  return patterns.key_spec(body, whose)
end

-- The certificate and, with IncludeChain, the CA, in ChainOrder.
local function chain_of(sandbox, cert, include_chain, order)
  local list = { cert }
  if include_chain then
    list[2] = sandbox.ca.cert
    if order == "RootFirst" then list = { list[2], list[1] } end
  end
  return list
end

-- The file of a PFX enrollment in `format` (Pkcs12Blob holds it, base64):
-- a PKCS#12; PEM: the key as encrypted PKCS#8 then the certificates (with
-- IncludeSubjectHeader, each after its subject and issuer lines); JKS: a
-- Java KeyStore whose one entry is named after the friendly name or the CN.
local function pfx_file(sandbox, format, cert, key, password, body, common, record)
  local ca = common.include_chain and sandbox.ca.cert or nil
  if format == "PEM" then
    local order = CHAIN_ORDERS[(check.string(body, "ChainOrder", false) or "EndEntityFirst"):lower()]
    local out = { pki.encrypted_key_pem(key, password) }
    for _, c in ipairs(chain_of(sandbox, cert, common.include_chain, order)) do
      out[#out + 1] = (common.subject_header and pki.subject_header(c) or "") .. c:toPEM()
    end
    return table.concat(out)
  elseif format == "JKS" then
    local alias = check.string(body, "CustomFriendlyName", false) or record.issued_cn or "1"
    return pki.jks(cert, key, password, ca and { ca } or nil, alias:lower())
  end
  return pki.pkcs12(cert, key, password, ca)
end

-- The stores of a v2 enrollment: Stores, plus with
-- InstallIntoExistingCertificateStores those holding the renewed certificate.
local function v2_targets(sandbox, body, renewal)
  local targets = {}
  for i, entry in ipairs(check.entries(body, "Stores", false, STORE_ENTRY) or {}) do
    targets[i] = { id = check.string(entry, "StoreId", true, string.format("Stores[%d].StoreId", i)),
      alias = entry.Alias ~= util.null and entry.Alias or nil, overwrite = entry.Overwrite == true }
  end
  if renewal and check.bool(body, "InstallIntoExistingCertificateStores") then
    for _, loc in ipairs(certificates.locations(sandbox, certificates.find(sandbox, renewal))) do
      targets[#targets + 1] = { id = loc.CertStoreId, alias = loc.Alias, overwrite = true }
    end
  end
  return targets
end

local function enroll_pfx(sandbox, req)
  local format = check.format_header(req, is_2022(sandbox) and PFX_FORMATS_2022 or PFX_FORMATS)
  local v2 = (req.headers:get("x-keyfactor-api-version") or ""):match("^2") ~= nil
  local body = check.body(req, v2 and PFX_V2_FIELDS or is_2022(sandbox) and PFX_FIELDS or PFX_25_FIELDS)
  local chain_order = (v2 or not is_2022(sandbox)) and check.string(body, "ChainOrder", false)
  if chain_order and not CHAIN_ORDERS[chain_order:lower()] then
    util.bad_request("ChainOrder '" .. chain_order .. "' is not valid (use EndEntityFirst or RootFirst)")
  end
  local common = check_common(sandbox, req, body)
  local subject = check.string(body, "Subject", true)
  check_subject(subject)
  local password = check.string(body, "Password", not KEPT[format])
  if not KEPT[format] and password == "" then util.fail(400, "missing_field", "Password is required") end
  local renewal = check.int(body, "RenewalCertificateId", false)
  if renewal == 0 then util.bad_request("RenewalCertificateId must be omitted or null when not renewing, not 0") end
  if renewal then certificates.find(sandbox, renewal) end
  check.string(body, "CustomFriendlyName", false)
  local targets = v2 and v2_targets(sandbox, body, renewal) or {}
  local run_at = v2 and check.date(body, "JobTime", false) or nil
  local key = key_spec(sandbox, body, v2, common)
  local template = common.template
  local request = new_request(sandbox, req, {
    kind = "PFX", format = format, template = template.CommonName, subject = subject,
    sans = common.sans, metadata = common.metadata, days = common.days,
    key_kind = key.kind, key_size = key.size, owner_role = common.owner and common.owner.id,
    -- Keys of approval requests are always kept, so the approved certificate can
    -- be deployed; so are those of certificates going into stores now.
    retain_key = KEPT[format] or template.RequiresApproval or #targets > 0,
  })
  local v25 = not is_2022(sandbox)
  if template.RequiresApproval then
    local info = pending_info(request)
    local instance = start_approval(sandbox, request)
    if v2 then
      local answer = v2_answer(info, common.metadata)
      info.WorkflowInstanceId, info.WorkflowReferenceId = instance.id, request.id
      return answer
    end
    return { CertificateInformation = v25 and workflow_fields(info, true) or info, Metadata = common.metadata }
  end
  local record, cert, private = enrollment.issue(sandbox, request)
  local blob = ""
  if not KEPT[format] then
    blob = util.base64(pfx_file(sandbox, format, cert, private, password, body, common, record))
  end
  local info = {
    KeyfactorId = record.id, KeyfactorRequestId = request.id, SerialNumber = record.serial,
    IssuerDN = record.issuer_dn, Thumbprint = record.thumbprint, Pkcs12Blob = blob,
    Password = util.null, RequestDisposition = "ISSUED",
    DispositionMessage = issued_message(request), EnrollmentContext = util.null,
  }
  if not v2 then
    return { CertificateInformation = v25 and workflow_fields(info, true) or info, Metadata = common.metadata }
  end
  local scheduled = jobs.schedule(sandbox, req, record, targets, password, run_at)
  return v2_answer(info, common.metadata, scheduled.SuccessfulStores)
end

---------------------------------------------------------------- CSR
local function csr_certificates(sandbox, record, format, common)
  local out = util.array()
  for i, c in ipairs(chain_of(sandbox, x509.new(record.pem, "PEM"), common.include_chain)) do
    if format == "DER" then
      out[i] = util.base64(c:tostring("DER"))
    else
      out[i] = (common.subject_header and pki.subject_header(c) or "") .. c:toPEM()
    end
  end
  return out
end

local function enroll_csr(sandbox, req)
  local format = check.format_header(req, CSR_FORMATS)
  local body = check.body(req, is_2022(sandbox) and CSR_FIELDS or CSR_25_FIELDS)
  if not is_2022(sandbox) then query.bool_param(req.params, "forceEnroll") end   -- checked; no duplicate policy here
  local csr_text = check.string(body, "CSR", true)
  local common = check_common(sandbox, req, body)
  local csr = pki.parse_csr(csr_text)
  local template = common.template
  local request = new_request(sandbox, req, {
    kind = "CSR", format = format, template = template.CommonName,
    subject = pki.dn_string(csr:getSubject()), csr_pem = csr:toPEM(),
    sans = pki.merge_sans(pki.sans_of(csr), common.sans),
    metadata = common.metadata, days = common.days, retain_key = false,
    owner_role = common.owner and common.owner.id,
  })
  local v25 = not is_2022(sandbox)
  if template.RequiresApproval then
    local info = pending_info(request)
    start_approval(sandbox, request)
    info.KeyfactorId, info.Pkcs12Blob, info.Password = nil, nil, nil
    info.KeyfactorID, info.Certificates = 0, util.array()
    return { CertificateInformation = v25 and workflow_fields(info) or info, Metadata = common.metadata }
  end
  local record = enrollment.issue(sandbox, request)
  local info = {
    KeyfactorID = record.id, KeyfactorRequestId = request.id, SerialNumber = record.serial,
    IssuerDN = record.issuer_dn, Thumbprint = record.thumbprint,
    Certificates = csr_certificates(sandbox, record, format, common),
    RequestDisposition = "ISSUED", DispositionMessage = "The certificate was issued.",
    EnrollmentContext = util.null,
  }
  return { CertificateInformation = v25 and workflow_fields(info) or info, Metadata = common.metadata }
end

---------------------------------------------------------------- Renew
local function find_by_thumbprint(sandbox, thumbprint)
  local want = thumbprint:upper():gsub("[%s:]", "")
  for i = #sandbox.state.certificates, 1, -1 do
    local cert = sandbox.state.certificates[i]
    if cert.thumbprint == want then return cert end
  end
  util.not_found("Certificate with thumbprint " .. thumbprint .. " was not found")
end

-- The size of a successor's key, as the old one's: RSA bits, or the EC curve.
local function successor_key_size(old)
  if old.key_type == 3 then return old.key_bits == 384 and "secp384r1" or "prime256v1" end
  return old.key_bits
end

local function renew(sandbox, req)
  local body = check.body(req, RENEW_FIELDS)
  local id = check.int(body, "CertificateId", false)
  local thumbprint = check.string(body, "Thumbprint", false)
  check_ca(body)
  check.date(body, "Timestamp", false)
  local template_name = check.string(body, "Template", false)
  if not id and not thumbprint then util.fail(400, "missing_field", "CertificateId or Thumbprint is required") end
  local old = id and certificates.find(sandbox, id) or find_by_thumbprint(sandbox, thumbprint)
  local template = template_name and state.template(template_name)
  if template_name and not template then util.bad_request("Template '" .. template_name .. "' was not found") end
  template = template or state.template(old.template)
  -- the metadata is copied (the new certificate's own, from now on)
  local request = new_request(sandbox, req, {
    kind = "Renew", format = "STORE", template = template and template.CommonName or old.template,
    subject = old.issued_dn, sans = old.sans, metadata = util.copy(old.metadata or {}), days = 365,
    -- the successor's key is of the same type and size
    key_kind = old.key_type == 3 and "EC" or "RSA",
    key_size = successor_key_size(old),
    retain_key = true, renewed_id = old.id,
  })
  if template and template.RequiresApproval then
    -- as an enrollment: no certificate yet (KeyfactorId 0) until approved
    local info = pending_info(request)
    return { KeyfactorId = 0, KeyfactorRequestId = request.id, Thumbprint = util.null, SerialNumber = util.null,
      IssuerDN = util.null, RequestDisposition = info.RequestDisposition,
      DispositionMessage = info.DispositionMessage, Password = util.null }
  end
  local record = enrollment.issue(sandbox, request)
  return {
    KeyfactorId = record.id, KeyfactorRequestId = request.id, Thumbprint = record.thumbprint,
    SerialNumber = record.serial, IssuerDN = record.issuer_dn, RequestDisposition = "ISSUED",
    DispositionMessage = issued_message(request), Password = util.null,
  }
end

-- A failed enrollment leaves no trace: the requests, certificates and jobs
-- the handler added before it failed are taken back, then the error is
-- answered (no phantom pending request, no certificate without an answer).
function enrollment.all_or_nothing(handler)
  return function(sandbox, req, ...)
    local s = sandbox.state
    local mark = { next_job = s.next_job, next_item = s.next_item }
    for _, list in ipairs { "requests", "certificates", "jobs" } do mark[list] = #s[list] end
    local results = table.pack(pcall(handler, sandbox, req, ...))
    if results[1] then return table.unpack(results, 2, results.n) end
    for _, list in ipairs { "requests", "certificates", "jobs" } do
      for i = #s[list], mark[list] + 1, -1 do s[list][i] = nil end
    end
    s.next_job, s.next_item = mark.next_job, mark.next_item
    error(results[2], 0)
  end
end

enrollment.routes = {
  { method = "POST", path = "/Enrollment/PFX", handler = enrollment.all_or_nothing(enroll_pfx),
    summary = "Enroll with a server-generated key (PFX)" },
  { method = "POST", path = "/Enrollment/CSR", handler = enrollment.all_or_nothing(enroll_csr),
    summary = "Enroll from a CSR" },
  { method = "POST", path = "/Enrollment/Renew", handler = enrollment.all_or_nothing(renew),
    summary = "Renew a certificate" },
}

return enrollment
