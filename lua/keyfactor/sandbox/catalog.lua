-- Read-only catalog endpoints: templates, the CA, enrollment context and
-- GET /Status/Endpoints (the clients' login check).
local util = require "keyfactor.sandbox.util"
local state = require "keyfactor.sandbox.state"
local query = require "keyfactor.sandbox.query"
local check = require "keyfactor.sandbox.check"

local catalog = {}

local function render_template(t)
  return {
    Id = t.Id, CommonName = t.CommonName, TemplateName = t.TemplateName, DisplayName = t.DisplayName,
    FriendlyName = t.DisplayName, Oid = t.Oid, KeySize = t.KeySize, KeyType = t.KeyType,
    ForestRoot = "sandbox.local", ConfigurationTenant = "sandbox.local",
    -- AllowedEnrollmentTypes is a flag set (1 PFX, 2 CSR, 4 Auto), but the generated
    -- SDKs map it to a closed enum of single values: 3 (PFX|CSR) breaks them.
    KeyRetention = 0, KeyRetentionDays = 0, AllowedEnrollmentTypes = 1, KeyUsage = 160,
    KeyArchival = false, UseAllowedRequesters = false, RequiresApproval = t.RequiresApproval,
    AllowedRequesters = util.array(), EnrollmentFields = util.array(), TemplateRegexes = util.array(),
    ExtendedKeyUsages = util.array{ { Id = 1, Oid = "1.3.6.1.5.5.7.3.1", DisplayName = "Server Authentication" } },
  }
end

local field = query.field

local template_fields = {
  id = field(function(t) return t.Id end, "number"),
  commonname = field(function(t) return t.CommonName end),
  templatename = field(function(t) return t.TemplateName end),
  displayname = field(function(t) return t.DisplayName end),
  requiresapproval = field(function(t) return t.RequiresApproval end, "bool"),
}

local function list_templates(_, req)
  return query.page(state.templates, req.params, "sq", template_fields, render_template)
end

local function get_template(_, _, id)
  local n = check.path_int(id, "id")
  for _, t in ipairs(state.templates) do
    if t.Id == n then return render_template(t) end
  end
  util.not_found("Template " .. id .. " was not found")
end

local function render_ca()
  return {
    Id = state.CA_ID, LogicalName = "SandboxCA", HostName = "sandbox.local",
    ForestRoot = "sandbox.local", ConfigurationTenant = "sandbox.local", CAType = 0,
    Standalone = false, Remote = false, Delegate = false, DelegateEnrollment = false,
    RFCEnforcement = false, EnforceUniqueDN = false, SubscriberTerms = false,
    UseAllowedRequesters = false, AllowedEnrollmentTypes = 3, KeyRetention = 0,
    -- Agent is the gateway of a remote CA: a .NET Guid, never null; a local
    -- CA has none, which the server writes as the empty GUID.
    KeyRetentionDays = 0, Agent = "00000000-0000-0000-0000-000000000000", Properties = "{}",
    AllowedRequesters = util.array(),
    LastScan = util.null,
  }
end

local function list_cas() return util.array{ render_ca() } end

local function get_ca(_, _, id)
  if check.path_int(id, "id") ~= state.CA_ID then util.not_found("Certificate authority " .. id .. " was not found") end
  return render_ca()
end

local function context()
  local templates = util.array()
  for _, t in ipairs(state.templates) do
    templates[#templates + 1] = {
      Id = t.Id, Name = t.CommonName, DisplayName = t.DisplayName, Forest = "sandbox.local",
      KeySize = t.KeySize, KeyType = t.KeyType, RequiresApproval = t.RequiresApproval,
      RFCEnforcement = false,
      CAs = util.array{ { Name = state.CA_NAME, RFCEnforcement = false, SubscriberTerms = false } },
      EnrollmentFields = util.array(), MetadataFields = util.array(), Regexes = util.array(),
      ExtendedKeyUsages = util.array(), Curve = util.null,
    }
  end
  return { Templates = templates, StandaloneCAs = util.array() }
end

catalog.routes = {
  { method = "GET", path = "/Templates", handler = list_templates,
    summary = "Certificate templates, paged" },
  { method = "GET", path = "/Templates/{id:int}", handler = get_template,
    summary = "One template by id" },
  { method = "GET", path = "/CertificateAuthority", handler = list_cas,
    summary = "Certificate authorities" },
  { method = "GET", path = "/CertificateAuthority/{id:int}", handler = get_ca,
    summary = "One certificate authority by id" },
  { method = "GET", path = "/Enrollment/PFX/Context/My", handler = context,
    summary = "Templates the caller may enroll with (PFX)" },
  { method = "GET", path = "/Enrollment/CSR/Context/My", handler = context,
    summary = "Templates the caller may enroll with (CSR)" },
}

return catalog
