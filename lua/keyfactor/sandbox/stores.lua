-- Certificate store types (the seed's, and those created with
-- POST /CertificateStoreTypes, kept in the state), containers, stores and
-- store inventories (read side; jobs that change inventories live in
-- jobs.lua, store create/update/delete in store_admin.lua).
local util = require "keyfactor.sandbox.util"
local state = require "keyfactor.sandbox.state"
local query = require "keyfactor.sandbox.query"
local check = require "keyfactor.sandbox.check"

local stores = {}

---------------------------------------------------------------- store types
local function store_type(id, short, name, entry_password, properties)
  return {
    StoreType = id, Name = name, ShortName = short, Capability = short, ImportType = id,
    LocalStore = false,
    SupportedOperations = { Add = true, Create = true, Discovery = true, Enrollment = false, Remove = true },
    Properties = properties,
    EntryParameters = util.array(),
    PasswordOptions = { EntrySupported = entry_password, StoreRequired = not entry_password, Style = 0 },
    StorePathType = "", StorePathValue = "",
    PrivateKeyAllowed = 1, CustomAliasAllowed = short == "PEM" and 1 or 2,
    JobProperties = util.array(), ServerRequired = false, PowerShell = false,
    BlueprintAllowed = true, ServerRegistration = 0,
    InventoryEndpoint = "/AnyInventory/Update",
    InventoryJobType = string.format("49c1b35e-%04d-4c3a-9f7d-00000000000%d", id, 1),
    ManagementJobType = string.format("49c1b35e-%04d-4c3a-9f7d-00000000000%d", id, 2),
    DiscoveryJobType = string.format("49c1b35e-%04d-4c3a-9f7d-00000000000%d", id, 3),
    EnrollmentJobType = string.format("49c1b35e-%04d-4c3a-9f7d-00000000000%d", id, 4),
  }
end

stores.new_type = store_type

-- Property Type enum: 0 String, 1 Bool, 2 MultipleChoice, 3 Secret.
stores.types = {
  store_type(state.STORE_TYPE_PEM, "PEM", "PEM File", true, util.array{
    { StoreTypeId = state.STORE_TYPE_PEM, Name = "separatePrivateKey", DisplayName = "Separate Private Key",
      Type = 1, DependsOn = "", DefaultValue = "false", Required = false },
  }),
  store_type(state.STORE_TYPE_PKCS12, "PKCS12", "PKCS#12 Keystore", false, util.array()),
}

-- The seed types and, given the sandbox, the ones created since.
function stores.all_types(sandbox)
  local out = {}
  for _, t in ipairs(stores.types) do out[#out + 1] = t end
  for _, t in ipairs(sandbox and sandbox.state.store_types or {}) do out[#out + 1] = t end
  return out
end

function stores.type_by_id(id, sandbox)
  for _, t in ipairs(stores.all_types(sandbox)) do
    if t.StoreType == id then return t end
  end
end

function stores.type_name(id, sandbox)
  local t = stores.type_by_id(id, sandbox)
  return t and t.ShortName or tostring(id)
end

local field = query.field

local type_fields = {
  id = field(function(t) return t.StoreType end, "number"),
  storetype = field(function(t) return t.StoreType end, "number"),
  shortname = field(function(t) return t.ShortName end),
  name = field(function(t) return t.Name end),
}

local function list_types(sandbox, req)
  return query.page(stores.all_types(sandbox), req.params, "cstquery", type_fields)
end

local function get_type(sandbox, _, id)
  local t = stores.type_by_id(check.path_int(id, "id"), sandbox)
  if not t then util.not_found("Certificate store type " .. id .. " was not found") end
  return t
end

local function types_by_name(sandbox, _, name)
  local out = util.array()
  for _, t in ipairs(stores.all_types(sandbox)) do
    if t.ShortName:lower() == name:lower() then out[#out + 1] = t end
  end
  if #out == 0 then util.not_found("Certificate store type '" .. name .. "' was not found") end
  return out
end

---------------------------------------------------------------- containers
local function render_container(sandbox, c)
  local count = 0
  for _, st in ipairs(sandbox.state.stores) do
    if st.ContainerId == c.Id then count = count + 1 end
  end
  local out = util.copy(c)
  out.StoreCount = count
  return out
end

local container_fields = {
  id = field(function(c) return c.Id end, "number"),
  name = field(function(c) return c.Name end),
  certstoretype = field(function(c) return c.CertStoreType end, "number"),
}

local function list_containers(sandbox, req)
  return query.page(state.containers, req.params, "pq", container_fields,
    function(c) return render_container(sandbox, c) end)
end

local function get_container(sandbox, _, id)
  local n = check.path_int(id, "id")
  for _, c in ipairs(state.containers) do
    if c.Id == n then return render_container(sandbox, c) end
  end
  util.not_found("Certificate store container " .. id .. " was not found")
end

---------------------------------------------------------------- stores
function stores.render(st)
  return {
    Id = st.Id, ContainerId = st.ContainerId, ContainerName = st.ContainerName,
    ClientMachine = st.ClientMachine, StorePath = st.StorePath, CertStoreType = st.CertStoreType,
    CertStoreInventoryJobId = st.Id:gsub("^%x%x%x%x%x%x%x%x", "1b0e7a11"), Approved = true,
    CreateIfMissing = st.CreateIfMissing or false, Properties = st.Properties, AgentId = st.AgentId,
    AgentAssigned = true, InventorySchedule = st.InventorySchedule or { Interval = { Minutes = 60 } },
    ReenrollmentStatus = { Data = false, AgentId = st.AgentId, Message = "", JobProperties = "",
      CustomAliasAllowed = st.CertStoreType == state.STORE_TYPE_PEM and 1 or 2 },
    SetNewPasswordAllowed = true, Password = {}, DisplayName = st.DisplayName,
  }
end

local store_fields = {
  id = field(function(s) return s.Id end),
  containerid = field(function(s) return s.ContainerId end, "number"),
  containername = field(function(s) return s.ContainerName end),
  clientmachine = field(function(s) return s.ClientMachine end),
  storepath = field(function(s) return s.StorePath end),
  certstoretype = field(function(s) return s.CertStoreType end, "number"),
  displayname = field(function(s) return s.DisplayName end),
  agentid = field(function(s) return s.AgentId end),
  approved = field(function() return true end, "bool"),
}

local function list_stores(sandbox, req)
  return query.page(sandbox.state.stores, req.params, "certificateStoreQuery", store_fields, stores.render)
end

function stores.find(sandbox, id)
  if not util.is_guid(id) then
    util.bad_request("'" .. tostring(id) .. "' is not a valid certificate store id (GUID)")
  end
  local st = state.store_by_id(sandbox.state, id)
  if not st then util.not_found("Certificate store " .. id .. " was not found") end
  return st
end

local function get_store(sandbox, _, id)
  return stores.render(stores.find(sandbox, id))
end

-- Paging and sorting fields of inventory entries (query.* has no queryString).
local inventory_fields = {
  id = field(function(e) return e.Certificates[1].CertStoreInventoryItemId end, "number"),
  name = field(function(e) return e.Name end),
  alias = field(function(e) return e.Name end),
  thumbprint = field(function(e) return e.Certificates[1].Thumbprint end),
  notafter = field(function(e) return util.parse_iso(e.Certificates[1].NotAfter) end, "date"),
}

local function inventory(sandbox, req, id)
  local st = stores.find(sandbox, id)
  local entries = {}
  for _, item in ipairs(st.inventory) do
    local cert = sandbox.state.certificates[item.cert_id]
    entries[#entries + 1] = {
      Name = item.alias,
      Certificates = util.array{ {
        Id = cert.id, IssuedDN = cert.issued_dn, SerialNumber = cert.serial,
        NotBefore = util.iso(cert.not_before), NotAfter = util.iso(cert.not_after),
        SigningAlgorithm = cert.signing_alg, IssuerDN = cert.issuer_dn, Thumbprint = cert.thumbprint,
        CertStoreInventoryItemId = item.item_id, Metadata = cert.metadata or {},
      } },
      Parameters = {},
    }
  end
  return query.page(entries, req.params, "query", inventory_fields)
end

stores.routes = {
  { method = "GET", path = "/CertificateStoreTypes", handler = list_types,
    summary = "Store types, paged" },
  { method = "GET", path = "/CertificateStoreTypes/Name/{name}", handler = types_by_name,
    summary = "Store types by short name" },
  { method = "GET", path = "/CertificateStoreTypes/{id:int}", handler = get_type,
    summary = "One store type by id" },
  { method = "GET", path = "/CertificateStoreContainers", handler = list_containers,
    summary = "Store containers, paged" },
  { method = "GET", path = "/CertificateStoreContainers/{id:int}", handler = get_container,
    summary = "One store container by id" },
  { method = "GET", path = "/CertificateStores", handler = list_stores,
    summary = "Certificate stores, paged" },
  { method = "GET", path = "/CertificateStores/{id}/Inventory", handler = inventory,
    summary = "A store's inventory" },
  { method = "GET", path = "/CertificateStores/{id}", handler = get_store,
    summary = "One certificate store by GUID" },
}

return stores
