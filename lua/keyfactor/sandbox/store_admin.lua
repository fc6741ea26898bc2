-- Certificate store management: POST /CertificateStores (create),
-- PUT /CertificateStores (update), DELETE /CertificateStores/{id} (204), and
-- store types: POST /CertificateStoreTypes, DELETE /CertificateStoreTypes/{id}.
-- The store's container, store type and agent must exist; Properties is a
-- JSON object encoded as a string, as the API carries it.
local util = require "keyfactor.sandbox.util"
local state = require "keyfactor.sandbox.state"
local check = require "keyfactor.sandbox.check"
local auth = require "keyfactor.sandbox.auth"
local stores = require "keyfactor.sandbox.stores"
local agents = require "keyfactor.sandbox.agents"

local store_admin = {}

local SECRET = check.object_of{ SecretValue = "string", Parameters = "object", Provider = "int",
  SecretTypeGuid = "string", InstanceId = "string" }
local SCHEDULE = "object"

local CREATE_FIELDS = {
  ContainerId = "int", ClientMachine = "string", StorePath = "string", Storepath = "string",
  CertStoreType = "int", CreateIfMissing = "bool", Properties = "string", AgentId = "string",
  AgentAssigned = "bool", InventorySchedule = SCHEDULE, Password = SECRET, DisplayName = "string",
}
local UPDATE_FIELDS = util.copy(CREATE_FIELDS)
UPDATE_FIELDS.Id = "string"

local function container(id)
  for _, c in ipairs(state.containers) do
    if c.Id == id then return c end
  end
  util.bad_request("Certificate store container " .. id .. " was not found")
end

local function agent_id(body, required)
  local id = check.string(body, "AgentId", required)
  if id == nil then return nil end
  if not util.is_guid(id) then util.bad_request("AgentId '" .. id .. "' is not a GUID") end
  if not agents.find(id) then util.bad_request("No agent (orchestrator) with AgentId " .. id) end
  return id:lower()
end

local function properties(body)
  local text = check.string(body, "Properties", false)
  if text == nil then return nil end
  local v = text ~= "" and check.decode(text)
  if text ~= "" and not check.is_object(v) then
    util.bad_request("Properties must be a JSON object encoded as a string, e.g. "
      .. [["{\"ServerUseSsl\":{\"value\":\"true\"}}"]])
  end
  return text ~= "" and text or "{}"
end

local function may_manage(user, c)
  if c and not auth.may_schedule(user, c.Name) then
    util.fail(403, "forbidden", string.format("User %s may not manage stores in container %s", user.name, c.Name))
  end
end

-- The fields create and update share, applied to store record `st`.
local function apply(st, body)
  local cid = check.int(body, "ContainerId", false)
  if cid then
    local c = container(cid)
    st.ContainerId, st.ContainerName = c.Id, c.Name
  end
  st.Properties = properties(body) or st.Properties
  st.AgentId = agent_id(body, false) or st.AgentId
  local create = check.bool(body, "CreateIfMissing")
  if create ~= nil then st.CreateIfMissing = create end
  st.InventorySchedule = check.object(body, "InventorySchedule") or st.InventorySchedule
end

local function create(sandbox, req)
  local body = check.body(req, CREATE_FIELDS)
  local machine = check.string(body, "ClientMachine", true)
  local path = check.string(body, "StorePath", false) or check.string(body, "Storepath", true, "StorePath")
  local type_id = check.int(body, "CertStoreType", true)
  if machine == "" or path == "" then
    util.fail(400, "missing_field", "ClientMachine and StorePath must not be empty")
  end
  if not stores.type_by_id(type_id, sandbox) then
    util.bad_request("Certificate store type " .. type_id .. " was not found")
  end
  local st = { ClientMachine = machine, StorePath = path, CertStoreType = type_id,
    AgentId = agent_id(body, true), Properties = "{}", inventory = {} }
  apply(st, body)
  for _, other in ipairs(sandbox.state.stores) do
    if other.ClientMachine:lower() == machine:lower() and other.StorePath == path
        and other.CertStoreType == type_id then
      util.bad_request(string.format("A certificate store of type %d at %s:%s already exists (%s)",
        type_id, machine, path, other.Id))
    end
  end
  may_manage(req.user, st.ContainerId and container(st.ContainerId))
  st.Id = string.format("%s-%s-4%s-a%s-%s", util.random_hex(4), util.random_hex(2),
    util.random_hex(2):sub(2), util.random_hex(2):sub(2), util.random_hex(6))
  st.DisplayName = check.string(body, "DisplayName", false) or (machine .. ":" .. path)
  table.insert(sandbox.state.stores, st)
  return stores.render(st)
end

local function update(sandbox, req)
  local body = check.body(req, UPDATE_FIELDS)
  local st = stores.find(sandbox, check.string(body, "Id", true))
  -- what identifies a store cannot change: create another one instead
  for name, current in pairs{ ClientMachine = st.ClientMachine, StorePath = st.StorePath,
      Storepath = st.StorePath, CertStoreType = st.CertStoreType } do
    local v = body[name]
    if v ~= nil and v ~= util.null and v ~= current and not (util.integer(v) and util.integer(v) == current) then
      util.bad_request(name .. " of an existing store cannot be changed")
    end
  end
  may_manage(req.user, st.ContainerId and container(st.ContainerId))
  apply(st, body)
  may_manage(req.user, st.ContainerId and container(st.ContainerId))
  return stores.render(st)
end

local function delete(sandbox, req, id)
  local st = stores.find(sandbox, id)
  may_manage(req.user, st.ContainerId and container(st.ContainerId))
  for i, other in ipairs(sandbox.state.stores) do
    if other == st then table.remove(sandbox.state.stores, i) break end
  end
  return nil, 204
end

---------------------------------------------------------------- store types
local a, o = check.array_of, check.object_of
local PROPERTY = o{ StoreTypeId = "int", Name = "string", DisplayName = "string", Type = "int",
  DependsOn = "string", DefaultValue = "string", Required = "bool", RequiredWhen = check.map_of("bool"),
  Options = "string" }
local TYPE_FIELDS = {
  Name = "string", ShortName = "string", Capability = "string", LocalStore = "bool",
  SupportedOperations = o{ Add = "bool", Create = "bool", Discovery = "bool", Enrollment = "bool", Remove = "bool" },
  Properties = a(PROPERTY), EntryParameters = a(PROPERTY),
  PasswordOptions = o{ EntrySupported = "bool", StoreRequired = "bool", Style = "int" },
  StorePathType = "string", StorePathValue = "string", PrivateKeyAllowed = "int", ServerRequired = "bool",
  PowerShell = "bool", BlueprintAllowed = "bool", CustomAliasAllowed = "int", ServerRegistration = "int",
  InventoryEndpoint = "string", JobProperties = a("string"),
}
local ENUMS = { PrivateKeyAllowed = 2, CustomAliasAllowed = 2 }

-- POST /CertificateStoreTypes: a new type from the seed's defaults and the body.
local function create_type(sandbox, req)
  local body = check.body(req, TYPE_FIELDS)
  local name = check.string(body, "Name", true)
  local short = check.string(body, "ShortName", true)
  if name == "" or short == "" then util.fail(400, "missing_field", "Name and ShortName must not be empty") end
  local next_id = state.STORE_TYPE_PKCS12
  for _, t in ipairs(stores.all_types(sandbox)) do
    if t.ShortName:lower() == short:lower() then
      util.bad_request("A certificate store type with ShortName '" .. short .. "' already exists")
    end
    next_id = math.max(next_id, math.tointeger(t.StoreType))
  end
  local t = stores.new_type(next_id + 1, short, name, false, util.array())
  for k in pairs(TYPE_FIELDS) do
    local v = body[k]
    if v ~= nil and v ~= util.null then
      if ENUMS[k] and (v < 0 or v > ENUMS[k]) then util.bad_request(k .. " must be 0, 1 or 2") end
      t[k] = type(v) == "table" and check.is_array(v) and util.array(v) or v
    end
  end
  for _, list in ipairs{ t.Properties, t.EntryParameters } do
    for _, p in ipairs(list) do p.StoreTypeId = t.StoreType end
  end
  sandbox.state.store_types = sandbox.state.store_types or {}
  table.insert(sandbox.state.store_types, t)
  return t
end

-- DELETE /CertificateStoreTypes/{id}: only a created type no store uses.
local function delete_type(sandbox, _, id)
  local n = check.path_int(id, "id")
  local t = stores.type_by_id(n, sandbox)
  if not t then util.not_found("Certificate store type " .. id .. " was not found") end
  for _, st in ipairs(sandbox.state.stores) do
    if st.CertStoreType == n then
      util.bad_request("Certificate store type " .. id .. " is used by store " .. st.Id)
    end
  end
  for i, custom in ipairs(sandbox.state.store_types or {}) do
    if custom == t then
      table.remove(sandbox.state.store_types, i)
      return nil, 204
    end
  end
  util.bad_request("Certificate store type " .. id .. " is built in")
end

store_admin.routes = {
  { method = "POST", path = "/CertificateStoreTypes", handler = create_type,
    summary = "Creates a certificate store type (Name and ShortName required)" },
  { method = "DELETE", path = "/CertificateStoreTypes/{id:int}", handler = delete_type,
    summary = "Deletes a created store type no store uses; 204" },
  { method = "POST", path = "/CertificateStores", handler = create,
    summary = "Creates a certificate store (container, store type and agent must exist)" },
  { method = "PUT", path = "/CertificateStores", handler = update, summary = "Updates a certificate store" },
  { method = "DELETE", path = "/CertificateStores/{id}", handler = delete,
    summary = "Deletes a certificate store; 204" },
}

return store_admin
