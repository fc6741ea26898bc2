-- Enrollment patterns (Keyfactor Command 25): GET /EnrollmentPatterns (paged,
-- QueryString) and /EnrollmentPatterns/{id}, and what enrollment asks of a
-- pattern: its template, and the key algorithms its policy allows.
local util = require "keyfactor.sandbox.util"
local state = require "keyfactor.sandbox.state"
local query = require "keyfactor.sandbox.query"

local patterns = {}

local function algorithm(bits, curves)
  return { BitLengths = util.array(bits or {}), Curves = util.array(curves or {}) }
end

-- Policies.KeyInfo: every allowed algorithm; the others allow nothing
-- (nested objects are never null in Command's answers).
local function key_info()
  local bits, oids = {}, {}
  for i, curve in ipairs(state.CURVES) do bits[i], oids[i] = curve.bits, curve.oid end
  local none = function() return algorithm() end
  return { RSA = algorithm(state.RSA_BITS), ECDSA = algorithm(bits, oids), Ed448 = none(), Ed25519 = none(),
    MLDSA44 = none(), MLDSA65 = none(), MLDSA87 = none() }
end

-- The answer (EnrollmentPatternResponse in command-25-models.md).
function patterns.render(pattern)
  local t = state.template_by_id(pattern.template)
  return {
    Id = pattern.Id, Name = pattern.Name, Description = pattern.Description,
    Template = { Id = t.Id, TemplateName = t.TemplateName, CommonName = t.CommonName,
      ConfigurationTenant = "sandbox.local", RequiresApproval = t.RequiresApproval, FriendlyName = t.DisplayName },
    TemplateDefault = true, UseADPermissions = false, AssociatedRoles = util.array(),
    CertificateAuthorities = util.array{ { Id = state.CA_ID, LogicalName = "SandboxCA", HostName = "sandbox.local",
      ConfigurationTenant = "sandbox.local" } },
    -- a flag set (1 PFX, 2 CSR, 4 Auto) read as a closed enum by the SDKs, as for templates
    AllowedEnrollmentTypes = 1,
    Regexes = util.array(), MetadataFields = util.array(), RestrictCAs = false,
    Policies = { AllowKeyReuse = false, AllowWildcards = true, RFCEnforcement = false,
      CertificateOwnerRole = 0, DefaultCertificateOwnerRoleId = util.null, DefaultCertificateOwnerRoleName = util.null,
      KeyInfo = key_info() },
    Defaults = util.array(), EnrollmentFields = util.array(),
  }
end

local field = query.field
local FIELDS = {
  id = field(function(p) return p.Id end, "number"),
  name = field(function(p) return p.Name end),
  description = field(function(p) return p.Description end),
  templateid = field(function(p) return p.template end, "number"),
}

local function list(_, req)
  return query.page(state.enrollment_patterns, req.params, "", FIELDS, patterns.render)
end

local function get_one(_, _, id)
  local pattern = state.enrollment_pattern(id)
  if not pattern then util.not_found("Enrollment pattern with id " .. id .. " was not found") end
  return patterns.render(pattern)
end

-- The key an enrollment asks for, checked against the pattern's policy (or,
-- enrolling by template, the same policy): {kind = "RSA", size = bits} or
-- {kind = "EC", size = OpenSSL curve name}. `name` says whose policy it is.
function patterns.key_spec(body, name)
  local key_type = body.KeyType ~= util.null and body.KeyType or nil
  local length = util.integer(body.KeyLength)
  local curve = body.Curve ~= util.null and body.Curve or nil
  local kind = (key_type or (curve and "ECC") or "RSA"):upper()
  if kind == "ECC" or kind == "ECDSA" or kind == "EC" then
    local wanted = curve or (length and length ~= 0 and length) or "1.2.840.10045.3.1.7"
    for _, c in ipairs(state.CURVES) do
      local match = wanted == c.oid or wanted == c.bits
      for _, n in ipairs(c.names) do match = match or tostring(wanted):lower() == n:lower() end
      if match then return { kind = "EC", size = c.openssl, bits = c.bits } end
    end
    util.bad_request(string.format("The %s '%s' is not allowed by %s (allowed curves: P-256 %s, P-384 %s)",
      curve and "curve" or "key length", tostring(wanted), name, state.CURVES[1].oid, state.CURVES[2].oid))
  end
  if kind ~= "RSA" then
    util.bad_request(string.format("The key type '%s' is not allowed by %s (allowed: RSA, ECC)", key_type, name))
  end
  if curve then util.bad_request("Curve '" .. curve .. "' was given for an RSA key") end
  local bits = (length and length ~= 0) and length or 2048
  for _, allowed in ipairs(state.RSA_BITS) do
    if bits == allowed then return { kind = "RSA", size = bits, bits = bits } end
  end
  util.bad_request(string.format("The key length %d is not allowed for RSA by %s (allowed: %s)", bits, name,
    table.concat(state.RSA_BITS, ", ")))
end

patterns.routes = {
  { method = "GET", path = "/EnrollmentPatterns", handler = list, since = "25",
    summary = "Enrollment patterns, paged (QueryString, PageReturned, ReturnLimit, SortField, SortAscending)" },
  { method = "GET", path = "/EnrollmentPatterns/{id:int}", handler = get_one, since = "25",
    summary = "One enrollment pattern by id" },
}

return patterns
