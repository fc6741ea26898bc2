--- The endpoint table: one declarative entry per `kf:` call.
--
-- The client's methods (keyfactor.api.calls), their validation, the REPL's help
-- and completion, the CLI and the API reference are all made from these
-- entries.  Documentation fields (pinned): name, method, path ({id} for path
-- parameters), summary, group, params (ordered {name, type, required, doc}),
-- returns, example, kind ("call", "iterator", "lookup", "helper").
--
-- What the client needs to make the method:
--   params[i].check    validate.* checker for the field
--   params[i].at       where it goes: "body" (default), "header", "path", "query", "whole"
--                      (the value is the whole body), "local" (checked, never sent);
--                      for helpers: "arg" (a positional argument), "opts" (a field of opts)
--   params[i].header   header name for at = "header" (`x-certificateformat`)
--   params[i].default  a value or a function() -> value used when the field is absent
--   params[i].secret   redacted from errors
--   params[i].field    the name it is sent under, when not its own (body or query)
--   params[i].absent   "check": a missing positional argument is reported by its
--                      checker ("id must be an integer, not nil"), not as "is required"
--   args               the Lua arguments in order: a param name (a positional
--                      argument) or "req" / "opts" (a table of the other params).
--                      Derived from params when absent (endpoints.signature): the
--                      "path"/"arg" params in order, then "req" if a field goes in the
--                      body or a header, else "opts" if any goes in the query or stays local.
--                      The help, the reference's headings and the methods all use it.
--   headers            extra headers always sent ({"x-keyfactor-api-version: 2"})
--   answer             the expected answer's shape: "object", "array", "none" (204), "any"
--   partial            the rule by which a 2xx answer listing failed items is a
--                      failure of kind "partial" (keyfactor.outcome): "stores", "approval" or nil
--   prefix             for iterators: the paging query-string prefix ("" for the
--                      bare QueryString, PageReturned, ... of newer endpoints)
--   rules              cross-field rules: functions(values) -> error text or nil,
--                      run after the fields' own checks and defaults
--   hand               true when client.lua writes the method by hand
-- @module keyfactor.api.endpoints

local query_language = require "keyfactor.query"
local v = require "keyfactor.api.validate"

local endpoints = {}

local now_iso = require("keyfactor.util.dates").iso

local SANS = v.map(v.array(v.string))
local METADATA = v.map(function(value, path)
  if type(value) ~= "string" and type(value) ~= "number" and type(value) ~= "boolean" then
    v.fail(path, "must be a string, number or boolean, not " .. type(value))
  end
  return value
end)

local STORE_TARGET = v.record({
  StoreId = v.guid, Alias = v.string, Overwrite = v.boolean, Properties = v.table,
}, { "StoreId" })

local STORE_TYPE_SETTINGS = v.record({
  StoreTypeId = v.integer, Alias = v.string, Overwrite = v.boolean, Properties = v.table,
}, { "StoreTypeId" })

local STORE_ENTRY = v.record({
  CertificateStoreId = v.guid, Alias = v.string, JobFields = v.table, Overwrite = v.boolean,
  EntryPassword = v.table, PfxPassword = v.string, IncludePrivateKey = v.boolean,
}, { "CertificateStoreId" })

-- A request id or an array of them (approve, deny).
local REQUEST_IDS = function(value, path)
  if type(value) ~= "table" then return { v.integer(value, path) } end
  return v.array(v.integer, { min = 1 })(value, path)
end

local SCHEDULE = v.record {
  Immediate = v.boolean, Interval = v.table, Daily = v.table, Weekly = v.table,
  Monthly = v.table, ExactlyOnce = v.table,
}

local function p(name, type_name, check, doc, extra)
  local param = { name = name, type = type_name, check = check, doc = doc, at = "body" }
  for k, value in pairs(extra or {}) do param[k] = value end
  return param
end
local function req(param) param.required = true; return param end

-- Ids are the API's Int32.
local INT32_MAX = 2147483647

-- Shared parameter lists
local GUID_PATH = req(p("id", "GUID", v.guid, "store id", { at = "path" }))
local INT_PATH = req(p("id", "integer", v.integer, "id", { at = "path" }))

local LIST = {
  p("query", "string", v.string, "Keyfactor query language filter", { at = "local" }),
  p("page_size", "integer", v.integer_in(1), "items per page (default 100)", { at = "local" }),
  p("sort", "string", v.nonempty, "field to sort by", { at = "local" }),
  p("ascending", "boolean", v.boolean, "sort order (default true)", { at = "local" }),
  p("prefetch", "boolean", v.boolean, "fetch the next page while this one is used", { at = "local" }),
}
local function list_params(extra)
  local out = {}
  for _, param in ipairs(LIST) do out[#out + 1] = param end
  for _, param in ipairs(extra or {}) do out[#out + 1] = param end
  return out
end

local IDENTIFIERS = {
  p("CertID", "integer", v.integer, "certificate id (or Thumbprint, or SerialNumber + IssuerDN)"),
  p("Thumbprint", "string", v.nonempty, "SHA-1 thumbprint, hex"),
  p("SerialNumber", "string", v.nonempty, "serial number, hex (with IssuerDN)"),
  p("IssuerDN", "string", v.nonempty, "issuer DN (with SerialNumber)"),
  p("IncludeChain", "boolean", v.boolean, "include the issuing chain"),
}
local IDENTIFIED = { "CertID", "Thumbprint", "SerialNumber",
  text = "CertID, Thumbprint or SerialNumber + IssuerDN is required" }

local function with(list, extra)
  local out = {}
  for _, param in ipairs(list) do out[#out + 1] = param end
  for _, param in ipairs(extra) do out[#out + 1] = param end
  return out
end

-- The params of `list` named in `names`, in that order.
local function pick(list, names)
  local by_name, out = {}, {}
  for _, param in ipairs(list) do by_name[param.name] = param end
  for i, name in ipairs(names) do out[i] = assert(by_name[name], name) end
  return out
end

-- Copies of the params of `list`, none required (an update names what it changes).
local function optional(list)
  local out = {}
  for i, param in ipairs(list) do
    local copy = {}
    for k, value in pairs(param) do copy[k] = value end
    copy.required = nil
    out[i] = copy
  end
  return out
end

-- Command 25 chooses the template through an enrollment pattern: the
-- pattern by id (EnrollmentPatternId) or by name or id (EnrollmentPattern,
-- resolved through GET /EnrollmentPatterns before the call); older servers
-- take the template's name (Template). One of them is required.
local PATTERN_FIELDS = {
  p("EnrollmentPatternId", "integer", v.integer, "enrollment pattern id (Command 25)"),
  p("EnrollmentPattern", "string or integer", function(value, path)
    if type(value) == "number" then return v.integer(value, path) end
    return v.nonempty(value, path)
  end, "enrollment pattern name (or id), looked up by the client: sent as EnrollmentPatternId",
    { at = "local" }),
  p("Template", "string", v.nonempty, "template short name (servers before Command 25; the v2 request)"),
}
local TEMPLATE_CHOICE = { "EnrollmentPatternId", "EnrollmentPattern", "Template",
  text = "EnrollmentPatternId, EnrollmentPattern (a pattern name) or Template is required" }

local OWNER_FIELDS = {
  p("OwnerRoleId", "integer", v.integer, "security role that will own the certificate (or OwnerRoleName)"),
  p("OwnerRoleName", "string", v.nonempty, "security role that will own the certificate, by name"),
}

local PFX_FIELDS = with(PATTERN_FIELDS, with({
  p("CertificateAuthority", "string", v.nonempty, "host\\logical CA name"),
  req(p("Subject", "string", v.nonempty, "subject DN, e.g. CN=web1.example.com")),
  p("Password", "string", v.string, "password of the file (required unless format is STORE or REPLACE)",
    { secret = true }),
  p("Timestamp", "ISO 8601 time", v.time, "request time (default now)", { default = now_iso }),
  p("SANs", "table", SANS, "SAN type -> array of strings, e.g. {dns = {\"a.example.com\"}}"),
  p("Metadata", "table", METADATA, "metadata field -> value"),
  p("AdditionalEnrollmentFields", "table", v.table, "custom enrollment fields of the template or pattern"),
  p("IncludeChain", "boolean", v.boolean, "include the chain"),
  p("ChainOrder", "string", v.one_of { "EndEntityFirst", "RootFirst" }, "order of the chain (PEM; with Stores)"),
  p("IncludeSubjectHeader", "boolean", v.boolean, "PEM: a subject/issuer comment above each certificate"),
  p("RenewalCertificateId", "integer", v.integer_in(1, INT32_MAX), "id of the certificate this one renews"),
  p("CustomFriendlyName", "string", v.string, "friendly name (the PFX's; the JKS alias)"),
  p("PopulateMissingValuesFromAD", "boolean", v.boolean, "fill subject parts from AD"),
  p("KeyType", "string", v.one_of { "RSA", "ECC", "Ed25519", "Ed448" },
    "key algorithm the server generates: RSA (default) or ECC, as the pattern allows"),
  p("KeyLength", "integer", v.integer_in(512, 16384), "RSA key size in bits (e.g. 2048, 3072, 4096)"),
  p("Curve", "string", v.nonempty, "ECC curve, as the pattern lists it (an OID such as 1.2.840.10045.3.1.7)"),
  p("UseLegacyEncryption", "boolean", v.boolean, "PKCS#12 with the legacy (3DES) encryption"),
  p("MicrosoftTargetCSP", "string", v.nonempty, "Microsoft cryptographic service provider"),
  p("FileExtension", "string", v.nonempty, "file extension of the downloadable certificate"),
}, with(OWNER_FIELDS, {
  p("Stores", "array of store targets", v.array(STORE_TARGET, { min = 1 }),
    "deploy into these stores in the same call (API version 2): {StoreId, Alias, Overwrite, Properties}"),
  p("InstallIntoExistingCertificateStores", "boolean", v.boolean, "with Stores: also where the renewed one is"),
  p("JobTime", "ISO 8601 time", v.time, "with Stores: when the deployment jobs run"),
  p("AlternativeKeyType", "string", v.nonempty, "with Stores (v2): alternative key, ML-DSA-44, -65 or -87"),
  p("AlternativeKeyLength", "integer", v.integer_in(1), "with Stores (v2): alternative key size"),
  p("CSR", "string", v.nonempty, "a PEM CSR: POST /Enrollment/CSR instead (key stays with you; "
    .. "then forceEnroll = true is also taken: the query parameter)"),
  p("format", "string", v.one_of { "PFX", "Zip", "PEM", "JKS", "STORE", "REPLACE", "DER" },
    "x-certificateformat: PFX (default), Zip, PEM, JKS, STORE (key kept for a later deploy), REPLACE; "
      .. "with CSR: PEM (default), DER",
    { at = "header", header = "x-certificateformat", default = "PFX" }),
})))

-- A CSR enrollment takes the PFX one's fields that do not concern the key
-- the server would make or the file it would send, plus its own.
local CSR_FIELDS = with({ req(p("CSR", "string", v.nonempty, "a PEM CSR")) }, with(pick(PFX_FIELDS, {
  "EnrollmentPatternId", "EnrollmentPattern", "Template", "CertificateAuthority", "Timestamp", "SANs", "Metadata",
  "AdditionalEnrollmentFields", "IncludeChain", "IncludeSubjectHeader", "RenewalCertificateId", "FileExtension",
}), with({
  p("forceEnroll", "boolean", v.boolean, "query forceEnroll: enroll even where the server would refuse a repeat",
    { at = "query" }),
  p("format", "string", v.one_of { "PEM", "DER" }, "x-certificateformat: PEM (default) or DER",
    { at = "header", header = "x-certificateformat", default = "PEM" }),
}, OWNER_FIELDS)))

-- Rules across enroll's fields, checked before anything is sent (a mistake
-- raises; nothing reaches the server).
-- Each returns the error text, or nil.
local V2_ONLY = { "InstallIntoExistingCertificateStores", "JobTime", "AlternativeKeyType", "AlternativeKeyLength" }
local ENROLL_RULES = {
  function(values)
    if values.CSR then return nil end
    local format = values.format or "PFX"
    if format == "DER" then return "format \"DER\" is for a CSR enrollment (set CSR)" end
    if format ~= "STORE" and format ~= "REPLACE" and (values.Password == nil or values.Password == "") then
      return "Password is required for format \"" .. format .. "\""
    end
  end,
  function(values)
    if values.CSR or values.Stores then return nil end
    for _, name in ipairs(V2_ONLY) do
      if values[name] ~= nil then return name .. " needs Stores (API version 2)" end
    end
  end,
  function(values)
    if values.EnrollmentPatternId ~= nil and values.EnrollmentPattern ~= nil then
      return "give EnrollmentPatternId or EnrollmentPattern, not both"
    end
  end,
  function(values)
    if values.OwnerRoleId ~= nil and values.OwnerRoleName ~= nil then
      return "give OwnerRoleId or OwnerRoleName, not both"
    end
  end,
  function(values)
    if values.KeyType == "RSA" and values.Curve ~= nil then return "Curve is for KeyType \"ECC\", not RSA" end
  end,
}

-- A certificate store as create_store takes it; update_store takes the same
-- fields, with the store's Id, none of the others required.
local STORE_FIELDS = {
  req(p("ClientMachine", "string", v.nonempty, "machine the orchestrator manages")),
  req(p("StorePath", "string", v.nonempty, "path of the store on that machine")),
  req(p("CertStoreType", "integer", v.integer, "store type id")),
  p("ContainerId", "integer", v.integer, "container id"),
  p("AgentId", "GUID", v.guid, "orchestrator (agent) id"),
  p("Approved", "boolean", v.boolean, "approved store"),
  p("CreateIfMissing", "boolean", v.boolean, "create the store on the machine"),
  p("Properties", "string", v.string, "store properties (JSON text)"),
  p("AgentAssigned", "boolean", v.boolean, "an agent is assigned"),
  p("InventorySchedule", "table", SCHEDULE, "inventory schedule"),
  p("Password", "table", v.table, "store password {SecretValue = ...}"),
}

-- kf:certificate's id: an integer, or a lookup table whose values come
-- back as query-language literals (the method joins them with AND).
local LOOKUP_FIELDS = { "Thumbprint", "SerialNumber", "IssuedCN", "IssuedDN", "CertRequestId", "Id" }
endpoints.LOOKUP_FIELDS = LOOKUP_FIELDS
local LOOKUP
do
  local fields = {}
  for _, name in ipairs(LOOKUP_FIELDS) do
    fields[name] = function(value, path)
      if type(value) == "string" then v.nonempty(value, path) end
      return query_language.literal(value, path)
    end
  end
  LOOKUP = v.record(fields)
end
local function certificate_ref(value, path)
  if type(value) == "table" then return LOOKUP(value, "lookup") end
  return v.integer(value, path)
end
local CERTIFICATE_RULES = {
  function(values)
    if type(values.id) == "table" and next(values.id) == nil then
      return "lookup needs one of " .. table.concat(LOOKUP_FIELDS, ", ")
    end
  end,
}

-- kf:wait_deployed: a certificate id or several; the stores as a GUID, an
-- array of GUIDs (the same for every certificate), or cert id -> GUIDs.
local STORE_IDS = v.array(v.guid, { min = 1 })
local function cert_ids(value, path)
  if type(value) == "table" then return v.array(v.integer, { min = 1 })(value, path) end
  return v.integer(value, path)
end
local function store_ids(value, path)
  local _, first = next(type(value) == "table" and value or {})
  if type(first) == "table" then   -- cert id -> GUIDs
    local out = {}
    for id, stores in pairs(value) do out[id] = STORE_IDS(stores, path .. "[" .. tostring(id) .. "]") end
    return out
  end
  return STORE_IDS(type(value) == "string" and { value } or value, path)
end
local WAIT_RULES = {
  function(values)
    local ids, stores = values.cert_id, values.store_ids
    if type(stores[1]) == "string" then return nil end
    if type(ids) ~= "table" then return "store_ids must be an array, not a table of certificate ids" end
    for _, id in ipairs(ids) do
      if stores[id] == nil then return "store_ids[" .. id .. "] must be an array, not nil" end
    end
  end,
}

local function table_or_string(value, path)
  if type(value) ~= "table" and type(value) ~= "string" then
    v.fail(path, "must be a table or a string, not " .. type(value))
  end
  return value
end

local ENTRIES = {
  ---------------------------------------------------------------- Enrollment
  {
    name = "enroll", method = "POST", path = "/Enrollment/PFX", group = "Enrollment", kind = "call",
    hand = true, answer = "object", partial = "stores",
    summary = "Enroll for a certificate (server-generated key, or your CSR); with Stores, deploy it too",
    params = PFX_FIELDS, args = { "req" }, one_of = { TEMPLATE_CHOICE }, rules = ENROLL_RULES,
    returns = "the answer: CertificateInformation (KeyfactorId, Pkcs12Blob or Certificates, ...); "
      .. "with Stores also SuccessfulStores",
    example = 'local e = assert(kf:enroll{EnrollmentPattern = "WebServer", Subject = "CN=web1.example.com",\n'
      .. '  Password = "pfx-secret", SANs = {dns = {"web1.example.com"}}, KeyType = "ECC"})\n'
      .. "print(e.CertificateInformation.KeyfactorId)",
    csr = { path = "/Enrollment/CSR", params = CSR_FIELDS },
    stores_headers = { "x-keyfactor-api-version: 2" },
  },
  {
    name = "enrollment_patterns", method = "GET", path = "/EnrollmentPatterns", group = "Enrollment",
    kind = "iterator", prefix = "", answer = "array",
    summary = "Iterate over enrollment patterns (Command 25), a page at a time",
    params = list_params(), args = { "opts" },
    returns = "an iterator over patterns {Id, Name, Template = {Id, TemplateName, ...}, Policies, ...}",
    example = 'for pattern in kf:enrollment_patterns{query = \'Name -eq "WebServer"\'} do\n'
      .. "  print(pattern.Id, pattern.Name, pattern.Template.TemplateName)\nend",
  },
  {
    name = "enrollment_pattern", method = "GET", path = "/EnrollmentPatterns/{id}", group = "Enrollment",
    kind = "call", answer = "object", summary = "One enrollment pattern (Command 25)",
    params = { req(p("id", "integer", v.integer, "enrollment pattern id", { at = "path" })) }, args = { "id" },
    returns = "the pattern table", example = "print(kf:enrollment_pattern(1).Policies.KeyInfo.RSA.BitLengths[1])",
  },
  {
    name = "deploy", method = "POST", path = "/Enrollment/PFX/Deploy", group = "Enrollment", kind = "call",
    answer = "object", partial = "stores",
    summary = "Deploy an enrolled certificate (format STORE) into certificate stores",
    params = {
      p("Stores", "array of store targets", v.array(STORE_TARGET, { min = 1 }),
        "{StoreId, Alias, Overwrite, Properties} (or the legacy StoreIds)"),
      p("StoreIds", "array of GUIDs", v.array(v.guid, { min = 1 }), "legacy: store ids"),
      p("StoreTypes", "array of store type settings", v.array(STORE_TYPE_SETTINGS),
        "legacy: {StoreTypeId, Alias, Overwrite, Properties}"),
      p("CertificateId", "integer", v.integer, "certificate id (or RequestId)"),
      p("RequestId", "integer", v.integer, "certificate request id"),
      p("Password", "string", v.string, "the password given at enrollment (default \"\")",
        { secret = true, default = "" }),
      p("JobTime", "ISO 8601 time", v.time, "when the jobs run (an os.time() number is accepted)"),
    },
    one_of = { { "Stores", "StoreIds", text = "Stores (or the legacy StoreIds) is required" },
               { "CertificateId", "RequestId", text = "CertificateId or RequestId is required" } },
    returns = "{SuccessfulStores, FailedStores}; nil, err (kind \"partial\") when a store failed",
    example = 'assert(kf:deploy{CertificateId = id, Stores = {{StoreId = store, Alias = "web1"}}})',
  },
  {
    name = "renew", method = "POST", path = "/Enrollment/Renew", group = "Enrollment", kind = "call",
    answer = "object",
    summary = "Renew a certificate by id or thumbprint (the new one stays on the server)",
    params = {
      p("CertificateId", "integer", v.integer, "certificate id (or Thumbprint)"),
      p("Thumbprint", "string", v.nonempty, "certificate thumbprint"),
      p("CertificateAuthority", "string", v.nonempty, "CA, when not the original one"),
      p("Template", "string", v.nonempty, "template, when not the original one"),
      p("Timestamp", "ISO 8601 time", v.time, "request time (default now)", { default = now_iso }),
    },
    one_of = { { "CertificateId", "Thumbprint", text = "CertificateId or Thumbprint is required" } },
    returns = "the answer, flat (no CertificateInformation): KeyfactorId (the new certificate's id), "
      .. "KeyfactorRequestId, Thumbprint, SerialNumber, IssuerDN, RequestDisposition, DispositionMessage; "
      .. "KeyfactorId 0 (PENDING) while a template's approval is awaited. The new certificate stays on the "
      .. "server: deploy it, or kf:replace the old one with it (keyfactor.renewal renews and redeploys in one go)",
    example = "local r = assert(kf:renew{CertificateId = 42})\nprint(r.KeyfactorId)",
  },
  {
    name = "replace", method = "POST", path = "/Enrollment/PFX/Replace", group = "Enrollment", kind = "call",
    answer = "object", partial = "stores",
    summary = "Put a new certificate into every store that holds an existing one",
    params = {
      req(p("ExistingCertificateId", "integer", v.integer, "the certificate being replaced")),
      p("CertificateId", "integer", v.integer, "the new certificate (or RequestId)"),
      p("RequestId", "integer", v.integer, "the new certificate's request id"),
      p("Password", "string", v.string, "the new certificate's PFX password (default \"\")",
        { secret = true, default = "" }),
      p("JobTime", "ISO 8601 time", v.time, "when the jobs run"),
    },
    one_of = { { "CertificateId", "RequestId", text = "CertificateId or RequestId is required" } },
    returns = "{SuccessfulStores, FailedStores}; nil, err (kind \"partial\") when a store failed",
    example = "assert(kf:replace{ExistingCertificateId = old, CertificateId = new})",
  },
  ---------------------------------------------------------------- Certificates
  {
    name = "certificate", method = "GET", path = "/Certificates/{id}", group = "Certificates", kind = "lookup",
    hand = true, answer = "object",
    summary = "Read one certificate by id, or by a lookup table such as {Thumbprint = ...}",
    params = {
      req(p("id", "integer or lookup table", certificate_ref,
        "id, or {Thumbprint=}, {SerialNumber=}, {IssuedCN=}, ...", { at = "path", absent = "check" })),
      p("includeLocations", "boolean", v.boolean, "opts: the stores holding it", { at = "query" }),
      p("includeMetadata", "boolean", v.boolean, "opts: metadata", { at = "query" }),
      p("includeHasPrivateKey", "boolean", v.boolean, "opts: whether the key is kept", { at = "query" }),
      p("verbose", "integer", v.integer, "opts: detail level", { at = "query" }),
      p("collectionId", "integer", v.integer, "opts: collection", { at = "query" }),
    },
    rules = CERTIFICATE_RULES,
    returns = "the certificate table (tostring: one line): Id, IssuedCN, IssuedDN, Thumbprint, SerialNumber, "
      .. "NotBefore, NotAfter (ISO 8601 text), ...; with includeLocations, Locations: one entry per store "
      .. "holding it, {CertStoreId, Alias, StoreMachine, StorePath, StoreType, ChainLevel}; the store is "
      .. "CertStoreId here, while kf:deploy's Stores entries name it StoreId",
    example = "local c = assert(kf:certificate(42, {includeLocations = true}))\n"
      .. "local targets = {}      -- deploy a renewal where the old one is\n"
      .. "for _, loc in ipairs(c.Locations) do\n"
      .. "  targets[#targets + 1] = {StoreId = loc.CertStoreId, Alias = loc.Alias}\n"
      .. "end\n"
      .. 'print(kf:certificate{Thumbprint = "AB12..."})',
  },
  {
    name = "certificates", method = "GET", path = "/Certificates", group = "Certificates", kind = "iterator",
    prefix = "pq", answer = "array", mark = "certificate",
    summary = "Iterate over certificates, a page at a time",
    params = list_params {
      p("includeRevoked", "boolean", v.boolean, "also revoked ones", { at = "query", field = "pq.includeRevoked" }),
      p("includeExpired", "boolean", v.boolean, "also expired ones", { at = "query", field = "pq.includeExpired" }),
      p("includeLocations", "boolean", v.boolean, "the stores holding each", { at = "query" }),
      p("includeMetadata", "boolean", v.boolean, "metadata", { at = "query" }),
      p("includeHasPrivateKey", "boolean", v.boolean, "whether the key is kept", { at = "query" }),
      p("verbose", "integer", v.integer, "detail level", { at = "query" }),
      p("collectionId", "integer", v.integer, "collection", { at = "query" }),
    },
    returns = "an iterator over certificate tables, as kf:certificate's (raises the error table if a page fails)",
    example = 'for cert in kf:certificates{query = \'IssuedCN -contains "web"\'} do print(cert) end\n'
      .. "-- expiring within 30 days (NotAfter is compared as an ISO 8601 UTC time)\n"
      .. 'local soon = os.date("!%Y-%m-%dT%H:%M:%SZ", os.time() + 30 * 86400)\n'
      .. 'for cert in kf:certificates{query = \'NotAfter -le "\' .. soon .. \'"\'} do\n'
      .. "  print(cert.Id, cert.IssuedCN, cert.NotAfter)\n"
      .. "end",
  },
  {
    name = "revoke", method = "POST", path = "/Certificates/Revoke", group = "Certificates", kind = "call",
    answer = "any",
    summary = "Revoke certificates",
    params = {
      req(p("CertificateIds", "array of integers", v.array(v.integer, { min = 1 }), "certificate ids")),
      p("Reason", "integer", v.integer, "CRL reason code (default 0, unspecified)", { default = 0 }),
      req(p("Comment", "string", v.nonempty, "why")),
      p("EffectiveDate", "ISO 8601 time", v.time, "when (default now)", { default = now_iso }),
      p("CollectionId", "integer", v.integer, "collection"),
    },
    returns = "the answer",
    example = 'assert(kf:revoke{CertificateIds = {42}, Comment = "key compromised", Reason = 1})',
  },
  {
    name = "recover", method = "POST", path = "/Certificates/Recover", group = "Certificates", kind = "call",
    answer = "object",
    summary = "Recover a certificate with its private key (kept by the server) as PKCS#12 or PEM",
    params = with(IDENTIFIERS, {
      req(p("Password", "string", v.nonempty, "password for the PKCS#12", { secret = true })),
      p("format", "string", v.one_of { "PFX", "PEM" }, "x-certificateformat: PFX (default) or PEM",
        { at = "header", header = "x-certificateformat", default = "PFX" }),
      p("collectionId", "integer", v.integer, "read through this collection (collection-scoped accounts)",
        { at = "query" }),
    }),
    one_of = { IDENTIFIED },
    returns = "{PFX = base64, FileName = ...}",
    example = 'local r = assert(kf:recover{CertID = 42, Password = "pfx-secret", IncludeChain = true})\n'
      .. "local key, cert, chain = pki.open_pkcs12(r.PFX, \"pfx-secret\")",
  },
  {
    name = "download", method = "POST", path = "/Certificates/Download", group = "Certificates", kind = "call",
    answer = "object",
    summary = "Download a certificate (and its chain) as P7B, PEM or DER",
    params = with(IDENTIFIERS, {
      p("ChainOrder", "string", v.one_of { "EndEntityFirst", "RootFirst" }, "chain order (with IncludeChain)"),
      p("format", "string", v.one_of { "P7B", "PEM", "DER" }, "x-certificateformat: P7B (default), PEM, DER",
        { at = "header", header = "x-certificateformat", default = "P7B" }),
      p("collectionId", "integer", v.integer, "read through this collection (collection-scoped accounts)",
        { at = "query" }),
    }),
    one_of = { IDENTIFIED },
    returns = "{Content = base64}",
    example = 'local d = assert(kf:download{CertID = 42, IncludeChain = true, format = "PEM"})',
  },
  {
    name = "set_metadata", method = "PUT", path = "/Certificates/Metadata", group = "Certificates", kind = "call",
    answer = "none",
    summary = "Set metadata fields of a certificate",
    params = {
      req(p("id", "integer", v.integer, "certificate id", { field = "Id" })),
      req(p("fields", "table", METADATA, "metadata field -> value", { field = "Metadata" })),
      p("collectionId", "integer", v.integer, "opts: through this collection (collection-scoped accounts)",
        { at = "query" }),
    },
    args = { "id", "fields", "opts" },
    returns = "true",
    example = 'assert(kf:set_metadata(42, {Owner = "web team", TicketNumber = 1234}))',
  },
  {
    name = "metadata_fields", method = "GET", path = "/MetadataFields", group = "Certificates", kind = "call",
    answer = "array", prefix = "pq", all_pages = true,
    summary = "The metadata fields defined on the server",
    params = {}, returns = "an array of {Id, Name, DataType, Options, ...}",
    example = "for _, f in ipairs(assert(kf:metadata_fields())) do print(f.Name, f.DataType) end",
  },
  ---------------------------------------------------------------- Stores
  {
    name = "stores", method = "GET", path = "/CertificateStores", group = "Stores", kind = "iterator",
    prefix = "certificateStoreQuery", answer = "array", mark = "store",
    summary = "Iterate over certificate stores",
    params = list_params(), args = { "opts" },
    returns = "an iterator over store tables",
    example = "for store in kf:stores{query = 'ContainerId -eq 1'} do print(store) end",
  },
  {
    name = "store", method = "GET", path = "/CertificateStores/{id}", group = "Stores", kind = "call",
    answer = "object", mark = "store",
    summary = "Read one certificate store", params = { GUID_PATH }, args = { "id" },
    returns = "the store table", example = "print(kf:store(store_id))",
  },
  {
    name = "create_store", method = "POST", path = "/CertificateStores", group = "Stores", kind = "call",
    answer = "object", mark = "store",
    summary = "Create a certificate store",
    params = STORE_FIELDS,
    returns = "the new store",
    example = 'local s = assert(kf:create_store{ClientMachine = "web9.example.com",\n'
      .. '  StorePath = "/etc/ssl/web9.pem", CertStoreType = 101, ContainerId = 1, AgentId = agent})',
  },
  {
    name = "update_store", method = "PUT", path = "/CertificateStores", group = "Stores", kind = "call",
    answer = "object", mark = "store",
    summary = "Update a certificate store",
    params = with({ req(p("Id", "GUID", v.guid, "store id")) }, optional(STORE_FIELDS)),
    returns = "the updated store",
    example = "assert(kf:update_store{Id = store_id, ContainerId = 2})",
  },
  {
    name = "delete_store", method = "DELETE", path = "/CertificateStores/{id}", group = "Stores", kind = "call",
    answer = "none", summary = "Delete a certificate store", params = { GUID_PATH }, args = { "id" },
    returns = "true", example = "assert(kf:delete_store(store_id))",
  },
  {
    name = "inventory", method = "GET", path = "/CertificateStores/{id}/Inventory", group = "Stores",
    kind = "iterator", prefix = "query", answer = "array",
    summary = "Iterate over what a store holds (its last inventory)",
    params = with({ GUID_PATH }, list_params()), args = { "id", "opts" },
    returns = "an iterator over {Name, Certificates, Parameters}",
    example = "for item in kf:inventory(store_id) do print(item.Name, #item.Certificates) end",
  },
  {
    name = "add_to_stores", method = "POST", path = "/CertificateStores/Certificates/Add", group = "Stores",
    kind = "call", answer = "array",
    summary = "Schedule jobs that add a certificate to stores",
    params = {
      req(p("CertificateId", "integer", v.integer, "certificate id")),
      req(p("CertificateStores", "array of store entries", v.array(STORE_ENTRY, { min = 1 }),
        "{CertificateStoreId, Alias, Overwrite, PfxPassword, IncludePrivateKey, JobFields}")),
      p("Schedule", "table", SCHEDULE, "when (default {Immediate = true})", { default = function()
        return { Immediate = true } end }),
      p("CollectionId", "integer", v.integer, "collection"),
    },
    returns = "an array of job ids",
    example = 'assert(kf:add_to_stores{CertificateId = 42, CertificateStores = {{CertificateStoreId = store,\n'
      .. '  Alias = "web1"}}})',
  },
  {
    name = "remove_from_stores", method = "POST", path = "/CertificateStores/Certificates/Remove",
    group = "Stores", kind = "call", answer = "array",
    summary = "Schedule jobs that remove a certificate (by alias) from stores",
    params = {
      req(p("CertificateStores", "array of store entries", v.array(STORE_ENTRY, { min = 1 }),
        "{CertificateStoreId, Alias}")),
      p("Schedule", "table", SCHEDULE, "when (default {Immediate = true})", { default = function()
        return { Immediate = true } end }),
      p("CollectionId", "integer", v.integer, "collection"),
    },
    returns = "an array of job ids",
    example = 'assert(kf:remove_from_stores{CertificateStores = {{CertificateStoreId = store, Alias = "web1"}}})',
  },
  ---------------------------------------------------------------- Catalog
  {
    name = "store_types", method = "GET", path = "/CertificateStoreTypes", group = "Catalog", kind = "call",
    answer = "array", prefix = "cstquery", all_pages = true,
    summary = "All certificate store types", params = {},
    returns = "an array of store types",
    example = "for _, t in ipairs(assert(kf:store_types())) do print(t.ShortName) end",
  },
  {
    name = "store_type", method = "GET", path = "/CertificateStoreTypes/{id}", group = "Catalog", kind = "lookup",
    hand = true, answer = "object",
    summary = "One store type, by integer id or by short name (/CertificateStoreTypes/Name/{name})",
    params = { req(p("id", "integer or string", function(value, path)
      if type(value) == "string" then return v.nonempty(value, path) end
      return v.integer(value, path)
    end, "id, or short name such as \"PEM\"", { at = "path", absent = "check" })) },
    args = { "id" }, returns = "the store type table",
    example = 'print(kf:store_type("PEM").StoreType)',
  },
  {
    name = "create_store_type", method = "POST", path = "/CertificateStoreTypes", group = "Catalog",
    kind = "call", answer = "object",
    summary = "Create a certificate store type",
    params = {
      req(p("Name", "string", v.nonempty, "display name")),
      req(p("ShortName", "string", v.nonempty, "short name")),
      p("Capability", "string", v.string, "orchestrator capability"),
      p("LocalStore", "boolean", v.boolean, "a local store"),
      p("SupportedOperations", "table", v.table, "{Add, Remove, Enrollment, Discovery, Create}"),
      p("Properties", "array", v.array(v.table), "custom properties"),
      p("EntryParameters", "array", v.array(v.table), "entry parameters"),
      p("PasswordOptions", "table", v.table, "password options"),
      p("StorePathType", "string", v.string, "store path type"),
      p("StorePathValue", "string", v.string, "store path value"),
      p("PrivateKeyAllowed", "integer", v.integer_in(0, 2), "0 forbidden, 1 optional, 2 required"),
      p("ServerRequired", "boolean", v.boolean, "needs a server"),
      p("PowerShell", "boolean", v.boolean, "PowerShell based"),
      p("BlueprintAllowed", "boolean", v.boolean, "blueprints allowed"),
      p("CustomAliasAllowed", "integer", v.integer_in(0, 2), "0 forbidden, 1 optional, 2 required"),
    },
    returns = "the new store type",
    example = 'local t = assert(kf:create_store_type{Name = "My Type", ShortName = "MyType"})',
  },
  {
    name = "delete_store_type", method = "DELETE", path = "/CertificateStoreTypes/{id}", group = "Catalog",
    kind = "call", answer = "none", summary = "Delete a certificate store type",
    params = { INT_PATH }, args = { "id" }, returns = "true", example = "assert(kf:delete_store_type(t.StoreType))",
  },
  {
    name = "containers", method = "GET", path = "/CertificateStoreContainers", group = "Catalog", kind = "call",
    answer = "array", prefix = "pq", all_pages = true,
    summary = "All certificate store containers", params = {},
    returns = "an array of containers", example = "for _, c in ipairs(assert(kf:containers())) do print(c.Name) end",
  },
  {
    name = "container", method = "GET", path = "/CertificateStoreContainers/{id}", group = "Catalog",
    kind = "call", answer = "object", summary = "One certificate store container",
    params = { INT_PATH }, args = { "id" }, returns = "the container table", example = "print(kf:container(1).Name)",
  },
  {
    name = "templates", method = "GET", path = "/Templates", group = "Catalog", kind = "call",
    answer = "array", prefix = "sq", all_pages = true,
    summary = "All certificate templates", params = {},
    returns = "an array of templates",
    example = "for _, t in ipairs(assert(kf:templates())) do print(t.CommonName) end",
  },
  {
    name = "template", method = "GET", path = "/Templates/{id}", group = "Catalog", kind = "call",
    answer = "object", summary = "One certificate template", params = { INT_PATH }, args = { "id" },
    returns = "the template table", example = "print(kf:template(1).TemplateName)",
  },
  {
    name = "certificate_authorities", method = "GET", path = "/CertificateAuthority", group = "Catalog",
    kind = "call", answer = "array", prefix = "pq", all_pages = true,
    summary = "All certificate authorities", params = {},
    returns = "an array of CAs",
    example = "for _, ca in ipairs(assert(kf:certificate_authorities())) do print(ca.LogicalName) end",
  },
  ---------------------------------------------------------------- Workflow
  {
    name = "pending", method = "GET", path = "/Workflow/Certificates/Pending", group = "Workflow",
    kind = "iterator", prefix = "pagedQuery", answer = "array",
    summary = "Iterate over certificate requests waiting for approval",
    params = list_params(), args = { "opts" },
    returns = "an iterator over requests {Id, CommonName, ...}",
    example = "for r in kf:pending() do print(r.Id, r.CommonName) end",
  },
  {
    name = "denied", method = "GET", path = "/Workflow/Certificates/Denied", group = "Workflow",
    kind = "iterator", prefix = "pagedQuery", answer = "array",
    summary = "Iterate over denied certificate requests",
    params = list_params(), args = { "opts" },
    returns = "an iterator over requests", example = "for r in kf:denied() do print(r.Id, r.Comment) end",
  },
  {
    name = "workflow_request", method = "GET", path = "/Workflow/Certificates/{id}", group = "Workflow",
    kind = "call", answer = "object", summary = "One certificate request in the workflow",
    params = { req(p("id", "integer", v.integer, "certificate request id", { at = "path" })) }, args = { "id" },
    returns = "the request table", example = "print(kf:workflow_request(7).State)",
  },
  {
    name = "approve", method = "POST", path = "/Workflow/Certificates/Approve", group = "Workflow",
    kind = "call", answer = "object", partial = "approval",
    summary = "Approve pending certificate requests",
    params = { req(p("ids", "integer or array of integers", REQUEST_IDS, "request ids", { at = "whole" })) },
    args = { "ids" },
    returns = "{Successes, Failures, Denials}; nil, err (kind \"partial\") when one failed",
    example = "assert(kf:approve({7, 8}))",
  },
  {
    name = "deny", method = "POST", path = "/Workflow/Certificates/Deny", group = "Workflow",
    kind = "call", answer = "object", partial = "approval",
    summary = "Deny pending certificate requests",
    params = {
      req(p("ids", "integer or array of integers", REQUEST_IDS, "request ids", { field = "CertificateRequestIds" })),
      req(p("comment", "string", v.nonempty, "why", { field = "Comment" })),
    },
    args = { "ids", "comment" },
    returns = "{Successes, Failures, Denials}; nil, err (kind \"partial\") when one failed",
    example = 'assert(kf:deny(7, "not ours"))',
  },
  ---------------------------------------------------------------- Agents
  {
    name = "agents", method = "GET", path = "/Agents", group = "Agents", kind = "iterator",
    prefix = "pq", answer = "array", summary = "Iterate over orchestrators (agents)",
    params = list_params(), args = { "opts" },
    returns = "an iterator over agents {AgentId, ClientMachine, Status, ...}",
    example = "for a in kf:agents() do print(a.AgentId, a.ClientMachine) end",
  },
  {
    name = "agent", method = "GET", path = "/Agents/{id}", group = "Agents", kind = "call",
    answer = "object", summary = "One orchestrator (agent)",
    params = { req(p("id", "GUID", v.guid, "agent id", { at = "path" })) }, args = { "id" },
    returns = "the agent table", example = "print(kf:agent(agent_id).ClientMachine)",
  },
  {
    name = "approve_agents", method = "POST", path = "/Agents/Approve", group = "Agents", kind = "call",
    answer = "none", summary = "Approve orchestrators",
    params = { req(p("ids", "array of GUIDs", v.array(v.guid, { min = 1 }), "agent ids", { at = "whole" })) },
    args = { "ids" }, returns = "true", example = "assert(kf:approve_agents{agent_id})",
  },
  {
    name = "disapprove_agents", method = "POST", path = "/Agents/Disapprove", group = "Agents", kind = "call",
    answer = "none", summary = "Disapprove orchestrators",
    params = { req(p("ids", "array of GUIDs", v.array(v.guid, { min = 1 }), "agent ids", { at = "whole" })) },
    args = { "ids" }, returns = "true", example = "assert(kf:disapprove_agents{agent_id})",
  },
  {
    name = "reset_agent", method = "POST", path = "/Agents/{id}/Reset", group = "Agents", kind = "call",
    answer = "none", summary = "Reset an orchestrator",
    params = { req(p("id", "GUID", v.guid, "agent id", { at = "path" })) }, args = { "id" },
    returns = "true", example = "assert(kf:reset_agent(agent_id))",
  },
  {
    name = "job_history", method = "GET", path = "/OrchestratorJobs/JobHistory", group = "Agents",
    kind = "iterator", prefix = "pq", answer = "array",
    summary = "Iterate over orchestrator job history (Result 3 = failure)",
    params = list_params(), args = { "opts" },
    returns = "an iterator over {JobId, JobType, ClientMachine, StorePath, Result, Message, ...}",
    example = "for j in kf:job_history{query = 'Result -eq 3'} do print(j.ClientMachine, j.Message) end",
  },
  ---------------------------------------------------------------- Other
  {
    name = "wait_deployed", method = "GET", path = "/Certificates/{id}", group = "Other", kind = "helper",
    hand = true,
    summary = "Wait until certificates are in their stores; fail fast when a job failed",
    params = {
      req(p("cert_id", "integer or array of integers", cert_ids, "certificate id(s)",
        { at = "arg", absent = "check" })),
      req(p("store_ids", "GUID or array of GUIDs (or cert id -> GUIDs)", store_ids, "stores",
        { at = "arg", absent = "check" })),
      p("timeout", "number", v.number, "opts: seconds (default 60)", { at = "opts" }),
      p("interval", "number", v.number, "opts: seconds between polls (default 1)", { at = "opts" }),
      p("concurrency", "integer", v.integer_in(1), "opts: certificates polled at once (default 16)", { at = "opts" }),
    },
    rules = WAIT_RULES,
    returns = "true, or nil, err (kind \"timeout\" with err.missing, or \"job\" with err.store, err.message)",
    example = "assert(kf:wait_deployed(42, {store1, store2}, {timeout = 120}))",
  },
  {
    name = "parallel", method = nil, path = nil, group = "Other", kind = "helper", hand = true,
    summary = "Run functions concurrently over one connection pool",
    params = {
      req(p("fns", "array of functions", v.array(v.callable), "each called as fn(kf, i)",
        { at = "arg", absent = "check" })),
      p("concurrency", "integer", v.integer_in(1), "opts: transfers at once (default 16)", { at = "opts" }),
      p("progress", "boolean or function", function(value, path)
        if type(value) ~= "boolean" and type(value) ~= "function" then
          v.fail(path, "must be a boolean or a function, not " .. type(value))
        end
        return value
      end, "opts: progress line, or function(done, total, failed)", { at = "opts" }),
    },
    returns = "values, errors: two arrays in input order",
    example = "local values, errs = kf:parallel({\n  function(kf) return kf:certificate(1) end,\n"
      .. "  function(kf) return kf:certificate(2) end,\n})",
  },
  {
    name = "set_driver", method = nil, path = nil, group = "Other", kind = "helper", hand = true,
    summary = "Set how the client waits: block, or yield to a host's event loop",
    params = {
      req(p("driver", "table", nil, "active, poll, sleep[, wait] (keyfactor.driver)", { at = "arg" })),
    },
    returns = "the client (attach() of keyfactor.cqueues, .haproxy and .ngx calls it)",
    example = 'kf:set_driver(require("keyfactor.cqueues").driver())',
  },
  {
    name = "sleep", method = nil, path = nil, group = "Other", kind = "helper", hand = true,
    summary = "Sleep the way the client waits (its driver; inside kf:parallel, the run's)",
    params = {
      req(p("seconds", "number", nil, "how long, 0 or more", { at = "arg" })),
    },
    returns = "nothing",
    example = "kf:sleep(0.5)",
  },
  {
    name = "request", method = "any", path = "any", group = "Other", kind = "helper", hand = true,
    summary = "Call any endpoint",
    params = {
      req(p("method", "string", function(value, path) return v.nonempty(value, path):upper() end,
        "GET, POST, ...", { at = "arg", absent = "check" })),
      req(p("path", "string", function(value, path)
        if v.nonempty(value, path):sub(1, 1) ~= "/" then v.fail(path, "must start with \"/\"") end
        return value
      end, "relative to the base URL", { at = "arg", absent = "check" })),
      p("query", "table or string", table_or_string, "opts: query parameters", { at = "opts" }),
      p("body", "table or string", table_or_string, "opts: table -> JSON", { at = "opts" }),
      p("headers", "table", v.headers, "opts: name -> value", { at = "opts" }),
      p("raw", "boolean", v.boolean, "opts: the body undecoded", { at = "opts" }),
    },
    returns = "decoded body, status, headers; or nil, err",
    example = 'local t = assert(kf:request("GET", "/Templates"))',
  },
  {
    name = "status", method = "GET", path = "/Status/Endpoints", group = "Other", kind = "helper",
    answer = "array", summary = "Login check: the endpoints the server offers", params = {},
    returns = "an array of endpoint strings", example = "assert(kf:status())",
  },
  {
    name = "close", group = "Other", kind = "helper", hand = true,
    summary = "Release the connection pool (also __close)", params = {},
    returns = "nothing", example = "kf:close()",
  },
}

---------------------------------------------------------------------------
-- Calls automation needs (Command 10+ / 25): workflow instances, job
-- control, PAM providers, security roles and identities, certificate
-- collections. Kept as one block, spliced in before the "Other" group.
---------------------------------------------------------------------------
local INSTANCE_PATH = req(p("id", "GUID", v.guid, "workflow instance id", { at = "path" }))

-- "<step unique name>.<signal name>", as the instance's Signals name them.
local function signal_key(value, path)
  v.nonempty(value, path)
  if not value:match("^[^%.]+%.[^%.]+") then
    v.fail(path, "must be \"<step unique name>.<signal name>\", e.g. \"RequireApproval.Approve\"")
  end
  return value
end

-- An integer id, or a name (collections answer to both).
local function id_or_name(value, path)
  if type(value) == "number" then return v.integer(value, path) end
  return v.nonempty(value, path)
end

-- CSSCMSCoreEnumsDuplicateSubjectType: 0 none, 1 CN, 2 DN, 4 principal.
local function DUPLICATION_FIELD(value, path)
  local n = v.integer(value, path)
  if n ~= 0 and n ~= 1 and n ~= 2 and n ~= 4 then v.fail(path, "must be 0, 1, 2 or 4, not " .. n) end
  return n
end

local JOB_SELECTION_TEXT = "select the jobs with JobAuditIds or Query"
-- Finished jobs chosen by their JobHistoryId or a job history query
-- (reschedule_jobs, acknowledge_jobs).
local FINISHED_JOBS = {
  p("JobAuditIds", "array of integers", v.array(v.integer, { min = 1 }), "JobHistoryId of the jobs"),
  p("Query", "string", v.nonempty, "job history query, e.g. 'Result -eq 3'"),
}

local ROLE_IDENTITY = v.record({ AccountName = v.nonempty, SID = v.string }, { "AccountName" })
local PAM_TYPE_PARAM = v.record { Id = v.integer, Name = v.string, DisplayName = v.string, InstanceLevel = v.boolean }
local PAM_PARAM_VALUE = v.record {
  Id = v.integer, Value = v.string, InstanceId = v.integer, InstanceGuid = v.string,
  ProviderTypeParam = PAM_TYPE_PARAM,
}
local PAM_PARAM_VALUES = v.array(PAM_PARAM_VALUE)

-- A PAM provider as create_pam_provider takes it; update_pam_provider
-- takes the same with the provider's Id.
local PAM_FIELDS = {
  req(p("Name", "string", v.nonempty, "provider name")),
  req(p("ProviderType", "table", v.record({ Id = v.guid }, { "Id" }), "{Id = provider type GUID}")),
  p("ProviderTypeParamValues", "array", PAM_PARAM_VALUES,
    "{Value, ProviderTypeParam = {Name = ...}}: the provider's parameters, all of them on an update "
      .. "(values redacted from errors)", { secret = "Value" }),
  p("Remote", "boolean", v.boolean, "served by a remote orchestrator"),
  p("Area", "integer", v.integer, "secured area kind (v1)"),
  p("SecuredAreaId", "integer", v.integer, "secured area id (v1)"),
}

local function collection_fields(extra)
  return with(extra, {
    p("Description", "string", v.string, "what the collection holds"),
    p("Query", "string", v.string, "the saved certificate query (Keyfactor query language)"),
    p("DuplicationField", "integer", DUPLICATION_FIELD,
      "0 none, 1 CN, 2 distinguished name, 4 principal: show only the newest of duplicates"),
    p("ShowOnDashboard", "boolean", v.boolean, "shown on the dashboard"),
    p("Favorite", "boolean", v.boolean, "a favourite"),
  })
end

local function role_fields(extra)
  return with(extra, {
    p("EmailAddress", "string", v.string, "email address of the role"),
    p("Enabled", "boolean", v.boolean, "the role is enabled"),
    p("Private", "boolean", v.boolean, "the role is private"),
    p("Permissions", "array of strings", v.array(v.nonempty), "\"Area:Permission\", e.g. \"Certificates:Read\""),
    p("PermissionSetId", "GUID", v.guid, "permission set of the role"),
    p("Identities", "array of identities", v.array(ROLE_IDENTITY), "{AccountName, SID}: who holds the role"),
  })
end

local AUTOMATION = {
  ---------------------------------------------------------------- Workflow instances
  {
    name = "workflow_instances", method = "GET", path = "/Workflow/Instances", group = "Workflow",
    kind = "iterator", prefix = "pq", answer = "array",
    paths = { assigned_to_me = "/Workflow/Instances/AssignedToMe", mine = "/Workflow/Instances/My" },
    summary = "Iterate over workflow instances (approvals as Command 10+ runs them)",
    params = list_params {
      p("assigned_to_me", "boolean", v.boolean, "only those waiting on you: GET /Workflow/Instances/AssignedToMe",
        { at = "local" }),
      p("mine", "boolean", v.boolean, "only those you started: GET /Workflow/Instances/My", { at = "local" }),
    },
    returns = "an iterator over {Id, Status, CurrentStepUniqueName, Title, ReferenceId, Definition, ...}",
    example = "for i in kf:workflow_instances{assigned_to_me = true} do print(i.Id, i.Title, i.ReferenceId) end",
  },
  {
    name = "workflow_instance", method = "GET", path = "/Workflow/Instances/{id}", group = "Workflow",
    kind = "call", answer = "object", summary = "One workflow instance, with the signals its step waits for",
    params = { INSTANCE_PATH }, args = { "id" },
    returns = "{Id, Status, CurrentStepUniqueName, Signals = {{SignalName, StepSignalId, SignalReceived}}, "
      .. "ReferenceId, InitialData, CurrentStateData, ...}",
    example = "local i = assert(kf:workflow_instance(id))\nprint(i.CurrentStepUniqueName, i.Signals[1].SignalName)",
  },
  {
    name = "signal", method = "POST", path = "/Workflow/Instances/{id}/Signals", group = "Workflow",
    kind = "call", answer = "none", summary = "Send a signal to a workflow instance (approve, deny, ...)",
    params = {
      INSTANCE_PATH,
      req(p("key", "string", signal_key, "\"<step unique name>.<signal name>\"", { field = "SignalKey" })),
      p("data", "table", v.table, "data sent with the signal, e.g. {Comment = \"...\"}", { field = "Data" }),
    },
    args = { "id", "key", "data" },
    returns = "true",
    example = 'local i = assert(kf:workflow_instance(id))\n'
      .. 'assert(kf:signal(id, i.CurrentStepUniqueName .. ".Approve", {Comment = "ok"}))',
  },
  ---------------------------------------------------------------- Job control
  {
    name = "scheduled_jobs", method = "GET", path = "/OrchestratorJobs/ScheduledJobs", group = "Agents",
    kind = "iterator", prefix = "pq", answer = "array",
    summary = "Iterate over orchestrator jobs waiting to run",
    params = list_params(), args = { "opts" },
    returns = "an iterator over {Id, ClientMachine, Target, Schedule, Requested, JobType}",
    example = "for j in kf:scheduled_jobs{query = 'JobType -eq \"Management\"'} do print(j.Id, j.Target) end",
  },
  {
    name = "reschedule_jobs", method = "POST", path = "/OrchestratorJobs/Reschedule", group = "Agents",
    kind = "call", answer = "none", summary = "Run finished (failed) jobs again, by job history id or query",
    params = FINISHED_JOBS,
    one_of = { { "JobAuditIds", "Query", text = JOB_SELECTION_TEXT } },
    returns = "true",
    example = "assert(kf:reschedule_jobs{JobAuditIds = {failed.JobHistoryId}})",
  },
  {
    name = "unschedule_jobs", method = "POST", path = "/OrchestratorJobs/Unschedule", group = "Agents",
    kind = "call", answer = "none", summary = "Take jobs that have not run yet off the schedule",
    params = {
      p("JobIds", "array of GUIDs", v.array(v.guid, { min = 1 }), "Id of the scheduled jobs"),
      p("Query", "string", v.nonempty, "scheduled job query"),
    },
    one_of = { { "JobIds", "Query", text = "select the jobs with JobIds or Query" } },
    returns = "true",
    example = "assert(kf:unschedule_jobs{JobIds = {job.Id}})",
  },
  {
    name = "acknowledge_jobs", method = "POST", path = "/OrchestratorJobs/Acknowledge", group = "Agents",
    kind = "call", answer = "none",
    summary = "Acknowledge finished jobs (failures seen to), by job history id or query",
    params = FINISHED_JOBS,
    one_of = { { "JobAuditIds", "Query", text = JOB_SELECTION_TEXT } },
    returns = "true",
    example = "assert(kf:acknowledge_jobs{Query = 'Result -eq 3'})",
  },
  {
    name = "schedule_inventory", method = "POST", path = "/CertificateStores/Schedule", group = "Stores",
    kind = "call", answer = "none", summary = "Set the inventory schedule of certificate stores",
    params = {
      req(p("StoreIds", "array of GUIDs", v.array(v.guid, { min = 1 }), "store ids")),
      req(p("Schedule", "table", SCHEDULE,
        "{Immediate = true}, {Interval = {Minutes = 60}}, {Daily = {Time = ...}}, ...")),
    },
    returns = "true",
    example = "assert(kf:schedule_inventory{StoreIds = {store_id}, Schedule = {Interval = {Minutes = 30}}})",
  },
  ---------------------------------------------------------------- PAM providers
  {
    name = "pam_provider_types", method = "GET", path = "/PamProviders/Types", group = "Security",
    kind = "call", answer = "array", summary = "The PAM provider types (and their parameters)", params = {},
    returns = "an array of {Id, Name, Parameters = {{Id, Name, DisplayName, DataType, InstanceLevel}}}",
    example = "for _, t in ipairs(assert(kf:pam_provider_types())) do print(t.Id, t.Name) end",
  },
  {
    name = "pam_providers", method = "GET", path = "/PamProviders", group = "Security",
    kind = "iterator", prefix = "pq", answer = "array", summary = "Iterate over PAM providers",
    params = list_params(), args = { "opts" },
    returns = "an iterator over {Id, Name, Area, ProviderType, ProviderTypeParamValues, SecuredAreaId, Remote}",
    example = "for pam in kf:pam_providers() do print(pam.Id, pam.Name) end",
  },
  {
    name = "pam_provider", method = "GET", path = "/PamProviders/{id}", group = "Security", kind = "call",
    answer = "object", summary = "One PAM provider", args = { "id" },
    -- the API: an Int32 from 0 (GET /PamProviders/{id})
    params = { req(p("id", "integer", v.integer_in(0, INT32_MAX), "provider id", { at = "path" })) },
    returns = "the provider table", example = "print(kf:pam_provider(1).Name)",
  },
  {
    name = "create_pam_provider", method = "POST", path = "/PamProviders", group = "Security", kind = "call",
    answer = "object", summary = "Create a PAM provider",
    params = PAM_FIELDS,
    returns = "the new provider",
    example = 'local pam = assert(kf:create_pam_provider{Name = "vault", ProviderType = {Id = type_id},\n'
      .. '  ProviderTypeParamValues = {{Value = "https://vault:8200", ProviderTypeParam = {Name = "Host"}}}})',
  },
  {
    name = "update_pam_provider", method = "PUT", path = "/PamProviders", group = "Security", kind = "call",
    answer = "object", summary = "Update a PAM provider",
    -- the provider's Id, then create_pam_provider's fields (the parameter list replaces the old one)
    params = with({ req(p("Id", "integer", v.integer, "provider id")) }, PAM_FIELDS),
    returns = "the updated provider",
    example = 'assert(kf:update_pam_provider{Id = pam.Id, Name = "vault-2", ProviderType = {Id = type_id}})',
  },
  {
    name = "delete_pam_provider", method = "DELETE", path = "/PamProviders/{id}", group = "Security", kind = "call",
    answer = "none", summary = "Delete a PAM provider", params = { INT_PATH }, args = { "id" },
    returns = "true", example = "assert(kf:delete_pam_provider(pam.Id))",
  },
  ---------------------------------------------------------------- Security roles and identities
  {
    name = "security_roles", method = "GET", path = "/Security/Roles", group = "Security",
    kind = "iterator", prefix = "pq", answer = "array", summary = "Iterate over security roles",
    params = list_params(), args = { "opts" },
    returns = "an iterator over {Id, Name, Description, Enabled, Permissions, Identities, ...}",
    example = "for r in kf:security_roles{query = 'Name -eq \"Administrator\"'} do print(r.Id, #r.Identities) end",
  },
  {
    name = "security_role", method = "GET", path = "/Security/Roles/{id}", group = "Security", kind = "call",
    answer = "object", summary = "One security role", params = { INT_PATH }, args = { "id" },
    returns = "the role table", example = "print(kf:security_role(1).Name)",
  },
  {
    name = "create_security_role", method = "POST", path = "/Security/Roles", group = "Security", kind = "call",
    answer = "object", summary = "Create a security role",
    params = role_fields {
      req(p("Name", "string", v.nonempty, "role name")),
      req(p("Description", "string", v.string, "what the role is for")),
    },
    returns = "the new role",
    example = 'local role = assert(kf:create_security_role{Name = "CertBot", Description = "renewals",\n'
      .. '  Permissions = {"Certificates:Read"}, Identities = {{AccountName = "DOMAIN\\\\svc-certs"}}})',
  },
  {
    name = "update_security_role", method = "PUT", path = "/Security/Roles", group = "Security", kind = "call",
    answer = "object", summary = "Update a security role (the lists given replace the old ones)",
    params = role_fields {
      req(p("Id", "integer", v.integer, "role id")),
      req(p("Name", "string", v.nonempty, "role name")),
      req(p("Description", "string", v.string, "what the role is for")),
    },
    returns = "the updated role",
    example = 'assert(kf:update_security_role{Id = role.Id, Name = "CertBot", Description = "renewals",\n'
      .. '  Permissions = {"Certificates:Read", "Certificates:Recover"}})',
  },
  {
    name = "delete_security_role", method = "DELETE", path = "/Security/Roles/{id}", group = "Security",
    kind = "call", answer = "none", summary = "Delete a security role", params = { INT_PATH }, args = { "id" },
    returns = "true", example = "assert(kf:delete_security_role(role.Id))",
  },
  {
    name = "security_identities", method = "GET", path = "/Security/Identities", group = "Security",
    kind = "iterator", prefix = "pq", answer = "array",
    summary = "Iterate over security identities (accounts and groups)",
    params = list_params(), args = { "opts" },
    returns = "an iterator over {Id, AccountName, IdentityType, Roles, Valid, SID}",
    example = "for i in kf:security_identities() do print(i.Id, i.AccountName) end",
  },
  {
    name = "create_security_identity", method = "POST", path = "/Security/Identities", group = "Security",
    kind = "call", answer = "object", summary = "Add an account (or group) as a security identity",
    params = { req(p("AccountName", "string", v.nonempty, "DOMAIN\\user")) },
    returns = "the new identity {Id, AccountName, IdentityType, Roles, Valid, SID}",
    example = 'local who = assert(kf:create_security_identity{AccountName = "DOMAIN\\\\svc-certs"})',
  },
  {
    name = "delete_security_identity", method = "DELETE", path = "/Security/Identities/{id}", group = "Security",
    kind = "call", answer = "none", summary = "Delete a security identity", params = { INT_PATH }, args = { "id" },
    returns = "true", example = "assert(kf:delete_security_identity(who.Id))",
  },
  ---------------------------------------------------------------- Certificate collections
  {
    name = "collections", method = "GET", path = "/CertificateCollections", group = "Certificates",
    kind = "iterator", prefix = "pq", answer = "array", summary = "Iterate over certificate collections",
    params = list_params(), args = { "opts" },
    returns = "an iterator over {Id, Name, Description, Query, EstimatedCertCount, ...}",
    example = "for c in kf:collections() do print(c.Id, c.Name, c.Query) end",
  },
  {
    name = "collection", method = "GET", path = "/CertificateCollections/{id}", group = "Certificates",
    kind = "call", answer = "object", summary = "One certificate collection, by id or by name",
    params = { req(p("id", "integer or string", id_or_name, "collection id, or its name", { at = "path" })) },
    args = { "id" }, returns = "the collection table",
    example = 'print(kf:collection("Web servers").Query)',
  },
  {
    name = "create_collection", method = "POST", path = "/CertificateCollections", group = "Certificates",
    kind = "call", answer = "object", summary = "Create a certificate collection (a saved query)",
    params = collection_fields {
      req(p("Name", "string", v.nonempty, "collection name")),
      p("CopyFromId", "integer", v.integer, "copy the query and description of this collection"),
    },
    returns = "the new collection",
    example = 'local c = assert(kf:create_collection{Name = "Web servers",\n'
      .. '  Query = \'IssuedCN -endswith ".example.com"\'})',
  },
  {
    name = "update_collection", method = "PUT", path = "/CertificateCollections", group = "Certificates",
    kind = "call", answer = "object", summary = "Update a certificate collection",
    params = collection_fields {
      req(p("Id", "integer", v.integer, "collection id")),
      req(p("Name", "string", v.nonempty, "collection name")),
    },
    returns = "the updated collection",
    example = 'assert(kf:update_collection{Id = c.Id, Name = "Web servers", Query = \'IssuedCN -contains "web"\'})',
  },
  {
    name = "delete_collection", method = "DELETE", path = "/CertificateCollections/{id}", group = "Certificates",
    kind = "call", answer = "none", summary = "Delete a certificate collection", params = { INT_PATH },
    args = { "id" }, returns = "true", example = "assert(kf:delete_collection(c.Id))",
  },
}

-- The block above goes before the "Other" helpers, in documentation order.
do
  local at = #ENTRIES + 1
  for i, entry in ipairs(ENTRIES) do
    if entry.group == "Other" then at = i; break end
  end
  for i, entry in ipairs(AUTOMATION) do table.insert(ENTRIES, at + i - 1, entry) end
end

--- The Lua arguments of a call, from its params: the positional ones (at
-- "path" or "arg") in order, then "req" when a field goes into the body or a
-- header, else "opts" when one goes into the query string, stays local or is
-- an option ("opts").  `kf:certificate(id, opts)`, `kf:deploy(req)`.
function endpoints.signature(params)
  local args, table_arg = {}, nil
  for _, param in ipairs(params) do
    if param.at == "path" or param.at == "arg" then
      args[#args + 1] = param.name
    elseif param.at == "body" or param.at == "header" or param.at == "whole" then
      table_arg = "req"
    elseif table_arg == nil then
      table_arg = "opts"
    end
  end
  args[#args + 1] = table_arg
  return args
end

--- How a call is written: `kf:wait_deployed(cert_id, store_ids, opts)`.
function endpoints.call_text(entry)
  return "kf:" .. entry.name .. "(" .. table.concat(entry.args, ", ") .. ")"
end

local BY_NAME = {}
for _, entry in ipairs(ENTRIES) do
  entry.args = entry.args or endpoints.signature(entry.params)
  BY_NAME[entry.name] = entry
end

--- Every entry, in documentation order.
function endpoints.list()
  local out = {}
  for i, entry in ipairs(ENTRIES) do out[i] = entry end
  return out
end

--- The entry for a call name (without `kf:`), or nil.
function endpoints.get(name)
  return BY_NAME[name]
end

return endpoints
