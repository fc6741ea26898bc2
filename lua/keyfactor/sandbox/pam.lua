-- PAM providers: GET /PamProviders (paged, pq.*), GET /PamProviders/{id},
-- POST and PUT /PamProviders, DELETE /PamProviders/{id} (204), and the seeded
-- provider types (GET /PamProviders/Types). API version 1 answers
-- PAMProviderResponseLegacy (with Area and SecuredAreaId), version 2
-- PAMProviderResponse. Values of Secret parameters are kept but answered as
-- null (the sandbox's choice: an answer never carries a secret back).
local util = require "keyfactor.sandbox.util"
local query = require "keyfactor.sandbox.query"
local check = require "keyfactor.sandbox.check"
local auth = require "keyfactor.sandbox.auth"

local pam = {}

-- CSSCMSDataModelEnumsPamParameterDataType as the sandbox numbers it.
pam.STRING, pam.SECRET = 1, 2

local function type_param(id, name, display, data_type, instance_level)
  return { Id = id, Name = name, DisplayName = display, DataType = data_type, InstanceLevel = instance_level }
end

pam.types = {
  { Id = "1f0b5a9c-7d2e-4c11-9e00-000000000001", Name = "HashiCorp-Vault", Parameters = {
    type_param(1, "Host", "Vault Host", pam.STRING, false),
    type_param(2, "Token", "Vault Token", pam.SECRET, false),
    type_param(3, "SecretPath", "Secret Path", pam.STRING, true),
  } },
  { Id = "1f0b5a9c-7d2e-4c11-9e00-000000000002", Name = "Delinea-SecretServer", Parameters = {
    type_param(4, "Host", "Secret Server URL", pam.STRING, false),
    type_param(5, "Username", "Username", pam.STRING, false),
    type_param(6, "Password", "Password", pam.SECRET, false),
    type_param(7, "SecretId", "Secret ID", pam.STRING, true),
  } },
}

local function store(sandbox)
  local s = sandbox.state
  s.pam = s.pam or { providers = {}, next_id = 1, next_value = 1 }
  return s.pam
end

local function type_by_id(id)
  for _, t in ipairs(pam.types) do
    if type(id) == "string" and t.Id == id:lower() then return t end
  end
end

local function render_type_params(t)
  local out = util.array()
  for i, param in ipairs(t.Parameters) do out[i] = util.copy(param) end
  return out
end

local function render_type(t)
  return { Id = t.Id, Name = t.Name, Parameters = render_type_params(t) }
end

local function render(provider, v2)
  local t = type_by_id(provider.type_id)
  local values = util.array()
  for i, pv in ipairs(provider.values) do
    local param = t.Parameters[pv.param]
    values[i] = { Id = pv.id, Value = param.DataType == pam.SECRET and util.null or pv.value,
      InstanceId = pv.instance_id or util.null, InstanceGuid = pv.instance_guid or util.null,
      ProviderTypeParam = util.copy(param) }
  end
  local out = { Id = provider.id, Name = provider.name, Remote = provider.remote,
    ProviderType = { Id = t.Id, Name = t.Name, ProviderTypeParams = render_type_params(t) },
    ProviderTypeParamValues = values }
  if not v2 then out.Area, out.SecuredAreaId = provider.area, provider.secured_area_id or util.null end
  return out
end

local function v2(req)
  return (req.headers:get("x-keyfactor-api-version") or ""):match("^2") ~= nil
end

local field = query.field
local fields = {
  id = field(function(p) return p.id end, "number"),
  name = field(function(p) return p.name end),
  remote = field(function(p) return p.remote end, "bool"),
  providertypeid = field(function(p) return p.type_id end),
  providertype = field(function(p) return (type_by_id(p.type_id) or {}).Name end),
}

local TYPE_PARAM = check.object_of{ Id = "int", Name = "string", DisplayName = "string", InstanceLevel = "bool" }
local PARAM_VALUE = check.object_of{ Id = "int", Value = "string", InstanceId = "int", InstanceGuid = "string",
  ProviderTypeParam = TYPE_PARAM }
local FIELDS = { Id = "int", Name = "string", Remote = "bool", Area = "int", SecuredAreaId = "int",
  ProviderType = check.object_of{ Id = "string" }, ProviderTypeParamValues = check.array_of(PARAM_VALUE) }

local function find(sandbox, id)
  for i, provider in ipairs(store(sandbox).providers) do
    if provider.id == id then return provider, i end
  end
  util.not_found("PAM provider " .. tostring(id) .. " was not found")
end

-- The parameter values of the body, each naming its type parameter by Id or
-- Name; `old` (the provider's values) keeps a Secret left out of an update.
local function param_values(sandbox, body, t, old)
  local list = check.array(body, "ProviderTypeParamValues", false)
  if not list then return old or {} end
  local kept = {}
  for _, pv in ipairs(old or {}) do kept[pv.param] = pv end
  local out, seen = {}, {}
  for i, item in ipairs(list) do
    local label = string.format("ProviderTypeParamValues[%d]", i)
    local ref = item.ProviderTypeParam
    if type(ref) ~= "table" then util.fail(400, "missing_field", label .. ".ProviderTypeParam is required") end
    local index
    for n, param in ipairs(t.Parameters) do
      local named = type(ref.Name) == "string" and param.Name:lower() == ref.Name:lower()
      if param.Id == util.integer(ref.Id) or named then
        index = n
      end
    end
    if not index then
      util.bad_request(string.format("%s.ProviderTypeParam: provider type %s has no parameter %s", label, t.Name,
        tostring(ref.Name ~= nil and ref.Name ~= util.null and ref.Name or ref.Id)))
    end
    if seen[index] then util.bad_request(label .. ": parameter " .. t.Parameters[index].Name .. " is given twice") end
    seen[index] = true
    local value = item.Value
    if (value == nil or value == util.null) and kept[index] then value = kept[index].value end
    local s = store(sandbox)
    out[#out + 1] = { id = kept[index] and kept[index].id or s.next_value, param = index,
      value = value ~= util.null and value or nil, instance_id = util.integer(item.InstanceId),
      instance_guid = type(item.InstanceGuid) == "string" and item.InstanceGuid or nil }
    if not kept[index] then s.next_value = s.next_value + 1 end
  end
  return out
end

local function unique_name(sandbox, name, except)
  if name == "" then util.fail(400, "missing_field", "Name is required") end
  for _, provider in ipairs(store(sandbox).providers) do
    if provider ~= except and provider.name:lower() == name:lower() then
      util.bad_request("A PAM provider named '" .. name .. "' already exists")
    end
  end
end

local function provider_type(body)
  local ref = body.ProviderType
  if type(ref) ~= "table" then util.fail(400, "missing_field", "ProviderType is required") end
  local id = check.string(ref, "Id", true, "ProviderType.Id")
  local t = type_by_id(id)
  if not t then util.bad_request("ProviderType.Id: no PAM provider type " .. id) end
  return t
end

local function create(sandbox, req)
  auth.require_admin(req.user, "create PAM providers")
  local body = check.body(req, FIELDS)
  local name = check.string(body, "Name", true)
  unique_name(sandbox, name)
  local t = provider_type(body)
  local s = store(sandbox)
  local provider = { id = s.next_id, name = name, type_id = t.Id, remote = check.bool(body, "Remote") == true,
    area = check.int(body, "Area", false) or 0, secured_area_id = check.int(body, "SecuredAreaId", false) }
  provider.values = param_values(sandbox, body, t)
  s.next_id = s.next_id + 1
  s.providers[#s.providers + 1] = provider
  return render(provider, v2(req))
end

local function update(sandbox, req)
  auth.require_admin(req.user, "update PAM providers")
  local body = check.body(req, FIELDS)
  local provider = find(sandbox, check.int(body, "Id", true))
  local name = check.string(body, "Name", true)
  unique_name(sandbox, name, provider)
  local t = body.ProviderType ~= nil and provider_type(body) or type_by_id(provider.type_id)
  if t.Id ~= provider.type_id then util.bad_request("ProviderType of a PAM provider cannot be changed") end
  provider.values = param_values(sandbox, body, t, provider.values)
  provider.name = name
  local remote = check.bool(body, "Remote")
  if remote ~= nil then provider.remote = remote end
  provider.area = check.int(body, "Area", false) or provider.area
  provider.secured_area_id = check.int(body, "SecuredAreaId", false) or provider.secured_area_id
  return render(provider, v2(req))
end

local function list(sandbox, req)
  return query.page(store(sandbox).providers, req.params, "pq", fields,
    function(provider) return render(provider, v2(req)) end)
end

local function get_one(sandbox, req, id)
  return render(find(sandbox, id), v2(req))
end

local function delete(sandbox, req, id)
  auth.require_admin(req.user, "delete PAM providers")
  local _, i = find(sandbox, id)
  table.remove(store(sandbox).providers, i)
  return nil, 204
end

local function types()
  local out = util.array()
  for i, t in ipairs(pam.types) do out[i] = render_type(t) end
  return out
end

pam.routes = {
  { method = "GET", path = "/PamProviders/Types", handler = types, summary = "PAM provider types" },
  { method = "GET", path = "/PamProviders", handler = list, summary = "PAM providers (paged, pq.*)" },
  { method = "POST", path = "/PamProviders", handler = create, summary = "Create a PAM provider" },
  { method = "PUT", path = "/PamProviders", handler = update, summary = "Update a PAM provider" },
  { method = "GET", path = "/PamProviders/{id:int}", handler = get_one, summary = "One PAM provider" },
  { method = "DELETE", path = "/PamProviders/{id:int}", handler = delete, summary = "Delete a PAM provider" },
}

return pam
