--- The endpoint table: one declarative entry per `kf:` call.
--
-- The client's methods (keyfactor.calls), their validation, the REPL's help
-- and completion, the CLI and the API reference are all made from these
-- entries.  Documentation fields (pinned): name, method, path ({id} for path
-- parameters), summary, group, params (ordered {name, type, required, doc}),
-- returns, example, kind ("call", "iterator", "lookup", "helper").
--
-- What the client needs to make the method:
--   params[i].check    validate.* checker for the field
--   params[i].at       where it goes: "body" (default), "header", "path", "query", "whole"
--                      (the value is the whole body), "local" (checked, never sent)
--   params[i].header   header name for at = "header" (`x-certificateformat`)
--   params[i].default  a value or a function() -> value used when the field is absent
--   params[i].secret   redacted from errors
--   args               the Lua arguments in order: a param name (a positional
--                      argument) or "req" / "opts" (a table of the other params)
--   headers            extra headers always sent ({"x-keyfactor-api-version: 2"})
--   answer             the expected answer's shape: "object", "array", "none" (204), "any"
--   outcome            DESIGN §6.2 rule: "stores", "approval" or nil
--   prefix             for iterators: the paging query-string prefix
--   hand               true when client.lua writes the method by hand
-- @module keyfactor.endpoints

local v = require "keyfactor.validate"

local endpoints = {}

local function now_iso() return os.date("!%Y-%m-%dT%H:%M:%SZ") end

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

-- Shared parameter lists
local GUID_PATH = req(p("id", "GUID", v.guid, "store id", { at = "path" }))
local INT_PATH = req(p("id", "integer", v.integer, "id", { at = "path" }))

local LIST = {
  p("query", "string", v.string, "Keyfactor query language filter", { at = "local" }),
  p("page_size", "integer", v.integer, "items per page (default 100)", { at = "local" }),
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

local PFX_FIELDS = {
  req(p("Template", "string", v.nonempty, "template short name")),
  p("CertificateAuthority", "string", v.nonempty, "host\\logical CA name"),
  req(p("Subject", "string", v.nonempty, "subject DN, e.g. CN=web1.example.com")),
  p("Password", "string", v.string, "PKCS#12 password (required unless format = \"STORE\")", { secret = true }),
  p("Timestamp", "ISO 8601 time", v.time, "request time (default now)", { default = now_iso }),
  p("SANs", "table", SANS, "SAN type -> array of strings, e.g. {dns = {\"a.example.com\"}}"),
  p("Metadata", "table", METADATA, "metadata field -> value"),
  p("AdditionalEnrollmentFields", "table", v.table, "custom template enrollment fields"),
  p("IncludeChain", "boolean", v.boolean, "include the chain"),
  p("RenewalCertificateId", "integer", v.integer, "id of the certificate this one renews"),
  p("CustomFriendlyName", "string", v.string, "PFX friendly name"),
  p("PopulateMissingValuesFromAD", "boolean", v.boolean, "fill subject parts from AD"),
  p("Stores", "array of store targets", v.array(STORE_TARGET, { min = 1 }),
    "deploy into these stores in the same call (API version 2): {StoreId, Alias, Overwrite, Properties}"),
  p("InstallIntoExistingCertificateStores", "boolean", v.boolean, "with Stores: also where the renewed one is"),
  p("JobTime", "ISO 8601 time", v.time, "with Stores: when the deployment jobs run"),
  p("ChainOrder", "string", v.one_of { "EndEntityFirst", "RootFirst" }, "with Stores: chain order"),
  p("CSR", "string", v.nonempty, "a PEM CSR: POST /Enrollment/CSR instead (key stays with you)"),
  p("format", "string", v.one_of { "PFX", "Zip", "STORE", "PEM", "DER" },
    "x-certificateformat: PFX (default), Zip, STORE; with CSR: PEM (default), DER",
    { at = "header", header = "x-certificateformat" }),
}

local CSR_FIELDS = {
  req(p("CSR", "string", v.nonempty, "a PEM CSR")),
  req(p("Template", "string", v.nonempty, "template short name")),
  p("CertificateAuthority", "string", v.nonempty, "host\\logical CA name"),
  p("Timestamp", "ISO 8601 time", v.time, "request time (default now)", { default = now_iso }),
  p("SANs", "table", SANS, "SAN type -> array of strings"),
  p("Metadata", "table", METADATA, "metadata field -> value"),
  p("AdditionalEnrollmentFields", "table", v.table, "custom template enrollment fields"),
  p("IncludeChain", "boolean", v.boolean, "include the chain"),
  p("format", "string", v.one_of { "PEM", "DER" }, "x-certificateformat: PEM (default) or DER",
    { at = "header", header = "x-certificateformat", default = "PEM" }),
}

local ENTRIES = {
  ---------------------------------------------------------------- Enrollment
  {
    name = "enroll", method = "POST", path = "/Enrollment/PFX", group = "Enrollment", kind = "call",
    hand = true, answer = "object", outcome = "stores",
    summary = "Enroll for a certificate (server-generated key, or your CSR); with Stores, deploy it too",
    params = PFX_FIELDS, args = { "req" },
    returns = "the answer: CertificateInformation (KeyfactorId, Pkcs12Blob or Certificates, ...); "
      .. "with Stores also SuccessfulStores",
    example = 'local e = assert(kf:enroll{Template = "WebServer", Subject = "CN=web1.example.com",\n'
      .. '  Password = "pfx-secret", SANs = {dns = {"web1.example.com"}}})\n'
      .. "print(e.CertificateInformation.KeyfactorId)",
    csr = { path = "/Enrollment/CSR", params = CSR_FIELDS },
    stores_headers = { "x-keyfactor-api-version: 2" },
  },
  {
    name = "deploy", method = "POST", path = "/Enrollment/PFX/Deploy", group = "Enrollment", kind = "call",
    answer = "object", outcome = "stores",
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
    returns = "the answer (KeyfactorId, KeyfactorRequestId, ...)",
    example = "local r = assert(kf:renew{CertificateId = 42})\nprint(r.KeyfactorId)",
  },
  {
    name = "replace", method = "POST", path = "/Enrollment/PFX/Replace", group = "Enrollment", kind = "call",
    answer = "object", outcome = "stores",
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
      req(p("id", "integer or lookup table", nil, "id, or {Thumbprint=}, {SerialNumber=}, {IssuedCN=}, ...",
        { at = "path" })),
      p("includeLocations", "boolean", v.boolean, "opts: the stores holding it", { at = "query" }),
      p("includeMetadata", "boolean", v.boolean, "opts: metadata", { at = "query" }),
      p("includeHasPrivateKey", "boolean", v.boolean, "opts: whether the key is kept", { at = "query" }),
      p("verbose", "integer", v.integer, "opts: detail level", { at = "query" }),
      p("collectionId", "integer", v.integer, "opts: collection", { at = "query" }),
    },
    returns = "the certificate table (tostring: one line)",
    example = "print(kf:certificate(42, {includeLocations = true}))\n"
      .. 'print(kf:certificate{Thumbprint = "AB12..."})',
  },
  {
    name = "certificates", method = "GET", path = "/Certificates", group = "Certificates", kind = "iterator",
    hand = true, prefix = "pq", answer = "array",
    summary = "Iterate over certificates, a page at a time",
    params = list_params {
      p("includeRevoked", "boolean", v.boolean, "also revoked ones", { at = "query" }),
      p("includeExpired", "boolean", v.boolean, "also expired ones", { at = "query" }),
      p("includeLocations", "boolean", v.boolean, "the stores holding each", { at = "query" }),
      p("includeMetadata", "boolean", v.boolean, "metadata", { at = "query" }),
      p("includeHasPrivateKey", "boolean", v.boolean, "whether the key is kept", { at = "query" }),
      p("verbose", "integer", v.integer, "detail level", { at = "query" }),
      p("collectionId", "integer", v.integer, "collection", { at = "query" }),
    },
    returns = "an iterator over certificate tables (raises the error table if a page fails)",
    example = 'for cert in kf:certificates{query = \'IssuedCN -contains "web"\'} do print(cert) end',
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
    },
    args = { "id", "fields" },
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
    params = {
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
    },
    returns = "the new store",
    example = 'local s = assert(kf:create_store{ClientMachine = "web9.example.com",\n'
      .. '  StorePath = "/etc/ssl/web9.pem", CertStoreType = 101, ContainerId = 1, AgentId = agent})',
  },
  {
    name = "update_store", method = "PUT", path = "/CertificateStores", group = "Stores", kind = "call",
    answer = "object", mark = "store",
    summary = "Update a certificate store",
    params = {
      req(p("Id", "GUID", v.guid, "store id")),
      p("ClientMachine", "string", v.nonempty, "machine"),
      p("StorePath", "string", v.nonempty, "path"),
      p("CertStoreType", "integer", v.integer, "store type id"),
      p("ContainerId", "integer", v.integer, "container id"),
      p("AgentId", "GUID", v.guid, "orchestrator (agent) id"),
      p("Approved", "boolean", v.boolean, "approved store"),
      p("CreateIfMissing", "boolean", v.boolean, "create the store on the machine"),
      p("Properties", "string", v.string, "store properties (JSON text)"),
      p("AgentAssigned", "boolean", v.boolean, "an agent is assigned"),
      p("InventorySchedule", "table", SCHEDULE, "inventory schedule"),
      p("Password", "table", v.table, "store password {SecretValue = ...}"),
    },
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
    params = { req(p("id", "integer or string", nil, "id, or short name such as \"PEM\"", { at = "path" })) },
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
      p("PrivateKeyAllowed", "integer", v.integer, "0 forbidden, 1 optional, 2 required"),
      p("ServerRequired", "boolean", v.boolean, "needs a server"),
      p("PowerShell", "boolean", v.boolean, "PowerShell based"),
      p("BlueprintAllowed", "boolean", v.boolean, "blueprints allowed"),
      p("CustomAliasAllowed", "integer", v.integer, "0 forbidden, 1 optional, 2 required"),
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
    kind = "call", answer = "object", outcome = "approval",
    summary = "Approve pending certificate requests",
    params = { req(p("ids", "integer or array of integers", REQUEST_IDS, "request ids", { at = "whole" })) },
    args = { "ids" },
    returns = "{Successes, Failures, Denials}; nil, err (kind \"partial\") when one failed",
    example = "assert(kf:approve({7, 8}))",
  },
  {
    name = "deny", method = "POST", path = "/Workflow/Certificates/Deny", group = "Workflow",
    kind = "call", answer = "object", outcome = "approval",
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
      req(p("cert_id", "integer or array of integers", nil, "certificate id(s)")),
      req(p("store_ids", "GUID or array of GUIDs (or cert id -> GUIDs)", nil, "stores")),
      p("timeout", "number", v.number, "opts: seconds (default 60)"),
      p("interval", "number", v.number, "opts: seconds between polls (default 1)"),
      p("concurrency", "integer", v.integer, "opts: certificates polled at once (default 16)"),
    },
    returns = "true, or nil, err (kind \"timeout\" with err.missing, or \"job\" with err.store, err.message)",
    example = "assert(kf:wait_deployed(42, {store1, store2}, {timeout = 120}))",
  },
  {
    name = "parallel", method = nil, path = nil, group = "Other", kind = "helper", hand = true,
    summary = "Run functions concurrently over one connection pool",
    params = {
      req(p("fns", "array of functions", nil, "each called as fn(kf, i)")),
      p("concurrency", "integer", v.integer, "opts: transfers at once (default 16)"),
      p("progress", "boolean or function", nil, "opts: progress line, or function(done, total, failed)"),
    },
    returns = "values, errors: two arrays in input order",
    example = "local values, errs = kf:parallel({\n  function(kf) return kf:certificate(1) end,\n"
      .. "  function(kf) return kf:certificate(2) end,\n})",
  },
  {
    name = "set_driver", method = nil, path = nil, group = "Other", kind = "helper", hand = true,
    summary = "Set how the client waits: block, or yield to a host's event loop",
    params = {
      req(p("driver", "table", nil, "active, poll, sleep[, wait] (keyfactor.driver)")),
    },
    returns = "the client (attach() of keyfactor.cqueues, .haproxy and .ngx calls it)",
    example = 'kf:set_driver(require("keyfactor.cqueues").driver())',
  },
  {
    name = "sleep", method = nil, path = nil, group = "Other", kind = "helper", hand = true,
    summary = "Sleep the way the client waits (its driver; inside kf:parallel, the run's)",
    params = {
      req(p("seconds", "number", nil, "how long, 0 or more")),
    },
    returns = "nothing",
    example = "kf:sleep(0.5)",
  },
  {
    name = "request", method = "any", path = "any", group = "Other", kind = "helper", hand = true,
    summary = "Call any endpoint",
    params = {
      req(p("method", "string", nil, "GET, POST, ...")),
      req(p("path", "string", nil, "relative to the base URL")),
      p("query", "table or string", nil, "opts: query parameters"),
      p("body", "table or string", nil, "opts: table -> JSON"),
      p("headers", "table", nil, "opts: name -> value"),
      p("raw", "boolean", nil, "opts: the body undecoded"),
    },
    returns = "decoded body, status, headers; or nil, err",
    example = 'local t = assert(kf:request("GET", "/Templates"))',
  },
  {
    name = "status", method = "GET", path = "/Status/Endpoints", group = "Other", kind = "helper", hand = true,
    answer = "array", summary = "Login check: the endpoints the server offers", params = {},
    returns = "an array of endpoint strings", example = "assert(kf:status())",
  },
  {
    name = "close", group = "Other", kind = "helper", hand = true,
    summary = "Release the connection pool (also __close)", params = {},
    returns = "nothing", example = "kf:close()",
  },
}

local BY_NAME = {}
for _, entry in ipairs(ENTRIES) do
  if not entry.args then
    local has_table = false
    for _, param in ipairs(entry.params) do
      if param.at ~= "path" then has_table = true end
    end
    entry.args = has_table and { entry.kind == "iterator" and "opts" or "req" } or {}
  end
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
