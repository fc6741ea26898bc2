-- Enrollment: POST /Enrollment/PFX, /Enrollment/CSR, /Enrollment/Renew, and
-- issuing the certificate of a request (also used when a request is approved).
local util = require "keyfactor.sandbox.util"
local pki = require "keyfactor.sandbox.pki"
local state = require "keyfactor.sandbox.state"
local check = require "keyfactor.sandbox.check"
local certificates = require "keyfactor.sandbox.certificates"
local jobs = require "keyfactor.sandbox.jobs"
local metadata_fields = require "keyfactor.sandbox.metadata"
local csr_mod = require "openssl.x509.csr"

local enrollment = {}

local PFX_FORMATS = { pfx = "PFX", zip = "Zip", store = "STORE" }
local CSR_FORMATS = { pem = "PEM", der = "DER" }

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
local CSR_FIELDS = with_common{ CSR = "string" }
local RENEW_FIELDS = { CertificateId = "int", Thumbprint = "string", CertificateAuthority = "string",
  Template = "string", Timestamp = "date" }

local function check_template(body)
  local name = check.string(body, "Template", true)
  local template = state.template(name)
  if not template then
    util.bad_request("Template '" .. name .. "' was not found or is not available for enrollment")
  end
  return template
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
local function check_common(body)
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
  return {
    template = check_template(body),
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
    key = pki.new_key(request.key_kind)
    public = key
  end
  local cert = pki.issue(sandbox.ca, { subject = request.subject, subject_name = name,
    sans = request.sans, key = public, days = request.days })
  local record = certificates.create(sandbox, cert, {
    request_id = request.id, template = request.template, requester = request.requester,
    metadata = request.metadata, key_pem = request.retain_key and key and key:toPEM("private") or nil,
  })
  request.status = "issued"
  request.cert_id = record.id
  return record, cert, key
end

local function issued_message(request)
  return string.format("The private key was successfully retained. Certificate issued for request %d.", request.id)
end

local function pending_info(request)
  return {
    KeyfactorId = 0, KeyfactorRequestId = request.id, Pkcs12Blob = "", Password = util.null,
    RequestDisposition = "PENDING",
    DispositionMessage = "The request is pending approval by a certificate manager.",
    EnrollmentContext = util.null,
  }
end

---------------------------------------------------------------- PFX
local NO_WORKFLOW = "00000000-0000-0000-0000-000000000000"

-- API version 2 (PFXEnrollmentManagementResponse): the v1 answer's fields
-- plus the workflow ones, and the stores a job was created for.
local function v2_answer(info, metadata, successful)
  info.WorkflowInstanceId, info.WorkflowReferenceId = NO_WORKFLOW, 0
  info.StoreIdsInvalidForRenewal, info.ChainFailedToBuild = util.array(), false
  return { CertificateInformation = info, Metadata = metadata, SuccessfulStores = successful or util.array() }
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
  local format = check.format_header(req, PFX_FORMATS)
  local v2 = (req.headers:get("x-keyfactor-api-version") or ""):match("^2") ~= nil
  local body = check.body(req, v2 and PFX_V2_FIELDS or PFX_FIELDS)
  local common = check_common(body)
  local subject = check.string(body, "Subject", true)
  check_subject(subject)
  local password = check.string(body, "Password", format ~= "STORE")
  if format ~= "STORE" and password == "" then util.fail(400, "missing_field", "Password is required") end
  local renewal = check.int(body, "RenewalCertificateId", false)
  if renewal == 0 then util.bad_request("RenewalCertificateId must be omitted or null when not renewing, not 0") end
  if renewal then certificates.find(sandbox, renewal) end
  check.string(body, "CustomFriendlyName", false)
  local targets = v2 and v2_targets(sandbox, body, renewal) or {}
  local run_at = v2 and check.date(body, "JobTime", false) or nil
  local key_type = v2 and check.string(body, "KeyType", false)
  if key_type and not ({ RSA = true, ECC = true })[key_type:upper()] then
    util.bad_request("KeyType '" .. key_type .. "' is not valid (use RSA or ECC)")
  end
  local template = common.template
  local request = new_request(sandbox, req, {
    kind = "PFX", format = format, template = template.CommonName, subject = subject,
    sans = common.sans, metadata = common.metadata, days = common.days,
    key_kind = key_type and key_type:upper() == "ECC" and "EC" or "RSA",
    -- Keys of approval requests are always kept, so the approved certificate can
    -- be deployed; so are those of certificates going into stores now.
    retain_key = format == "STORE" or template.RequiresApproval or #targets > 0,
  })
  if template.RequiresApproval then
    local info = pending_info(request)
    if v2 then return v2_answer(info, common.metadata) end
    return { CertificateInformation = info, Metadata = common.metadata }
  end
  local record, cert, key = enrollment.issue(sandbox, request)
  local blob = ""
  if format ~= "STORE" then
    blob = util.base64(pki.pkcs12(cert, key, password, common.include_chain and sandbox.ca.cert or nil))
  end
  local info = {
    KeyfactorId = record.id, KeyfactorRequestId = request.id, SerialNumber = record.serial,
    IssuerDN = record.issuer_dn, Thumbprint = record.thumbprint, Pkcs12Blob = blob,
    Password = util.null, RequestDisposition = "ISSUED",
    DispositionMessage = issued_message(request), EnrollmentContext = util.null,
  }
  if not v2 then return { CertificateInformation = info, Metadata = common.metadata } end
  local scheduled = jobs.schedule(sandbox, req, record, targets, password, run_at)
  return v2_answer(info, common.metadata, scheduled.SuccessfulStores)
end

---------------------------------------------------------------- CSR
local function csr_certificates(sandbox, record, format, include_chain)
  local pems = { record.pem }
  if include_chain then pems[2] = sandbox.ca.pem end
  local out = util.array()
  for i, pem in ipairs(pems) do
    if format == "DER" then
      out[i] = (pem:match("%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-(.-)%-%-%-%-%-END"):gsub("%s", ""))
    else
      out[i] = pem
    end
  end
  return out
end

local function enroll_csr(sandbox, req)
  local format = check.format_header(req, CSR_FORMATS)
  local body = check.body(req, CSR_FIELDS)
  local csr_text = check.string(body, "CSR", true)
  local common = check_common(body)
  local csr = pki.parse_csr(csr_text)
  local template = common.template
  local request = new_request(sandbox, req, {
    kind = "CSR", format = format, template = template.CommonName,
    subject = pki.dn_string(csr:getSubject()), csr_pem = csr:toPEM(),
    sans = pki.merge_sans(pki.sans_of(csr), common.sans),
    metadata = common.metadata, days = common.days, retain_key = false,
  })
  if template.RequiresApproval then
    local info = pending_info(request)
    info.KeyfactorId, info.Pkcs12Blob, info.Password = nil, nil, nil
    info.KeyfactorID, info.Certificates = 0, util.array()
    return { CertificateInformation = info, Metadata = common.metadata }
  end
  local record = enrollment.issue(sandbox, request)
  return {
    CertificateInformation = {
      KeyfactorID = record.id, KeyfactorRequestId = request.id, SerialNumber = record.serial,
      IssuerDN = record.issuer_dn, Thumbprint = record.thumbprint,
      Certificates = csr_certificates(sandbox, record, format, common.include_chain),
      RequestDisposition = "ISSUED", DispositionMessage = "The certificate was issued.",
      EnrollmentContext = util.null,
    },
    Metadata = common.metadata,
  }
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
  local request = new_request(sandbox, req, {
    kind = "Renew", format = "STORE", template = template and template.CommonName or old.template,
    subject = old.issued_dn, sans = old.sans, metadata = old.metadata, days = 365,
    key_kind = old.key_type == 3 and "EC" or "RSA", retain_key = true, renewed_id = old.id,
  })
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
