-- Certificate store management: POST /CertificateStores (create),
-- PUT /CertificateStores (update), DELETE /CertificateStores/{id} (204).
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
  if not stores.type_by_id(type_id) then util.bad_request("Certificate store type " .. type_id .. " was not found") end
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
  sandbox.dirty = true
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
  sandbox.dirty = true
  return stores.render(st)
end

local function delete(sandbox, req, id)
  local st = stores.find(sandbox, id)
  may_manage(req.user, st.ContainerId and container(st.ContainerId))
  for i, other in ipairs(sandbox.state.stores) do
    if other == st then table.remove(sandbox.state.stores, i) break end
  end
  sandbox.dirty = true
  return nil, 204
end

store_admin.routes = {
  { method = "POST", path = "/CertificateStores", handler = create,
    summary = "Creates a certificate store (container, store type and agent must exist)" },
  { method = "PUT", path = "/CertificateStores", handler = update, summary = "Updates a certificate store" },
  { method = "DELETE", path = "/CertificateStores/{id}", handler = delete,
    summary = "Deletes a certificate store; 204" },
}

return store_admin
