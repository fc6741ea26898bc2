-- Security identities and roles (API version 1, AD-style accounts):
-- GET/POST /Security/Identities, DELETE /Security/Identities/{id};
-- GET/POST/PUT /Security/Roles, GET/DELETE /Security/Roles/{id}. Seeded from
-- state.seed_security(): identities SANDBOX\admin and SANDBOX\operator, the
-- role Administrator holding SANDBOX\admin. A role's identities must exist
-- first (POST /Security/Identities), as an account is added before it is given
-- a role; deleting an identity takes it out of every role.
local util = require "keyfactor.sandbox.util"
local state = require "keyfactor.sandbox.state"
local query = require "keyfactor.sandbox.query"
local check = require "keyfactor.sandbox.check"
local auth = require "keyfactor.sandbox.auth"

local security = {}

--- The security part of the state (seeded on first use, also after --data
-- from a sandbox that had none).
function security.data(sandbox)
  local s = sandbox.state
  s.security = s.security or state.seed_security()
  return s.security
end

local function identity_by_account(sec, account)
  for _, identity in ipairs(sec.identities) do
    if identity.account:lower() == account:lower() then return identity end
  end
end

--- The role named `name` or with id `id` (case-insensitive name), or nil.
function security.role(sandbox, id, name)
  for _, role in ipairs(security.data(sandbox).roles) do
    if (id and role.id == id) or (name and role.name:lower() == name:lower()) then return role end
  end
end

local function render_identity_brief(sec, account)
  local identity = identity_by_account(sec, account)
  return { Id = identity and identity.id or 0, AccountName = account,
    IdentityType = identity and identity.kind or "User", SID = identity and identity.sid or util.null }
end

-- SecurityLegacySecurityRolesSecurityRoleResponse.
local function render_role(sec, role)
  local identities = util.array()
  for i, account in ipairs(role.identities) do identities[i] = render_identity_brief(sec, account) end
  return { Id = role.id, Name = role.name, Description = role.description, EmailAddress = role.email,
    Enabled = role.enabled, Immutable = role.immutable, Valid = true, Private = role.private,
    PermissionSetId = role.permission_set_id, Identities = identities,
    Permissions = util.array(util.copy(role.permissions)) }
end

-- SecuritySecurityIdentitiesSecurityIdentityResponse.
local function render_identity(sec, identity)
  local roles = util.array()
  for _, role in ipairs(sec.roles) do
    for _, account in ipairs(role.identities) do
      if account:lower() == identity.account:lower() then roles[#roles + 1] = render_role(sec, role) end
    end
  end
  return { Id = identity.id, AccountName = identity.account, IdentityType = identity.kind, Roles = roles,
    Valid = true, SID = identity.sid }
end

local field = query.field
local role_fields = {
  id = field(function(r) return r.id end, "number"),
  name = field(function(r) return r.name end),
  description = field(function(r) return r.description end),
  enabled = field(function(r) return r.enabled end, "bool"),
  immutable = field(function(r) return r.immutable end, "bool"),
  emailaddress = field(function(r) return r.email end),
}
local identity_fields = {
  id = field(function(i) return i.id end, "number"),
  accountname = field(function(i) return i.account end),
  identitytype = field(function(i) return i.kind end),
  sid = field(function(i) return i.sid end),
}

local function find_role(sandbox, id)
  local role = security.role(sandbox, id)
  if not role then util.not_found("Security role " .. tostring(id) .. " was not found") end
  return role
end

---------------------------------------------------------------- roles
local ROLE_FIELDS = { Id = "int", Name = "string", Description = "string", EmailAddress = "string",
  Enabled = "bool", Private = "bool", Permissions = check.array_of("string"), PermissionSetId = "string",
  Identities = check.array_of(check.object_of{ AccountName = "string", SID = "string" }) }

-- Applies the fields create and update share to `role`.
local function apply(sandbox, role, body)
  local sec = security.data(sandbox)
  local name = check.string(body, "Name", true)
  if name == "" then util.fail(400, "missing_field", "Name is required") end
  if check.string(body, "Description", true) == nil then util.fail(400, "missing_field", "Description is required") end
  for _, other in ipairs(sec.roles) do
    if other.id ~= role.id and other.name:lower() == name:lower() then
      util.bad_request("A security role named '" .. name .. "' already exists")
    end
  end
  local permissions = check.array(body, "Permissions", false)
  for i, permission in ipairs(permissions or {}) do
    if not permission:match("^%w+:%w+$") then
      util.bad_request(string.format("Permissions[%d]: '%s' is not \"Area:Permission\"", i, permission))
    end
  end
  local accounts
  local identities = check.array(body, "Identities", false)
  if identities then
    accounts = {}
    for i, item in ipairs(identities) do
      local account = check.string(item, "AccountName", true, string.format("Identities[%d].AccountName", i))
      local identity = identity_by_account(sec, account)
      if not identity then
        util.bad_request(string.format("Identities[%d].AccountName: '%s' is not a security identity "
          .. "(add it with POST /Security/Identities first)", i, account))
      end
      accounts[#accounts + 1] = identity.account
    end
  end
  local set = check.string(body, "PermissionSetId", false)
  if set and not util.is_guid(set) then util.bad_request("PermissionSetId '" .. set .. "' is not a GUID") end
  role.name, role.description = name, body.Description
  role.email = check.string(body, "EmailAddress", false) or role.email or ""
  local enabled, private = check.bool(body, "Enabled"), check.bool(body, "Private")
  if enabled ~= nil then role.enabled = enabled end
  if private ~= nil then role.private = private end
  role.permission_set_id = set and set:lower() or role.permission_set_id or state.PERMISSION_SET_ID
  if permissions then role.permissions = permissions end
  if accounts then role.identities = accounts end
  return role
end

local function create_role(sandbox, req)
  auth.require_admin(req.user, "create security roles")
  local body = check.body(req, ROLE_FIELDS)
  local sec = security.data(sandbox)
  local role = apply(sandbox, { id = sec.next_role, enabled = true, private = false, immutable = false,
    permissions = {}, identities = {} }, body)
  sec.next_role = sec.next_role + 1
  sec.roles[#sec.roles + 1] = role
  return render_role(sec, role)
end

local function update_role(sandbox, req)
  auth.require_admin(req.user, "update security roles")
  local body = check.body(req, ROLE_FIELDS)
  local role = find_role(sandbox, check.int(body, "Id", true))
  if role.immutable then util.bad_request("Security role " .. role.name .. " is read-only") end
  -- validated on a copy: a refused update changes nothing
  local updated = apply(sandbox, util.copy(role), body)
  for k, v in pairs(updated) do role[k] = v end
  return render_role(security.data(sandbox), role)
end

local function list_roles(sandbox, req)
  local sec = security.data(sandbox)
  return query.page(sec.roles, req.params, "pq", role_fields, function(role) return render_role(sec, role) end)
end

local function get_role(sandbox, _, id)
  return render_role(security.data(sandbox), find_role(sandbox, id))
end

local function delete_role(sandbox, req, id)
  auth.require_admin(req.user, "delete security roles")
  local role = find_role(sandbox, id)
  if role.immutable then util.bad_request("Security role " .. role.name .. " is read-only") end
  local roles = security.data(sandbox).roles
  for i, r in ipairs(roles) do
    if r == role then table.remove(roles, i); break end
  end
  return nil, 204
end

---------------------------------------------------------------- identities
local function list_identities(sandbox, req)
  local sec = security.data(sandbox)
  return query.page(sec.identities, req.params, "pq", identity_fields,
    function(identity) return render_identity(sec, identity) end)
end

local function create_identity(sandbox, req)
  auth.require_admin(req.user, "add security identities")
  local body = check.body(req, { AccountName = "string" })
  local account = check.string(body, "AccountName", true)
  if not account:match("^[^\\%s]+\\[^\\%s]+$") then
    util.bad_request("AccountName '" .. account .. "' must be DOMAIN\\name")
  end
  local sec = security.data(sandbox)
  if identity_by_account(sec, account) then util.bad_request("Security identity '" .. account .. "' already exists") end
  local identity = { id = sec.next_identity, account = account, kind = "User",
    sid = string.format("S-1-5-21-1004336348-1177238915-682003330-%d", 1000 + sec.next_identity) }
  sec.next_identity = sec.next_identity + 1
  sec.identities[#sec.identities + 1] = identity
  return render_identity(sec, identity)
end

local function delete_identity(sandbox, req, id)
  auth.require_admin(req.user, "delete security identities")
  local sec = security.data(sandbox)
  for i, identity in ipairs(sec.identities) do
    if identity.id == id then
      table.remove(sec.identities, i)
      for _, role in ipairs(sec.roles) do
        for j = #role.identities, 1, -1 do
          if role.identities[j]:lower() == identity.account:lower() then table.remove(role.identities, j) end
        end
      end
      return nil, 204
    end
  end
  util.not_found("Security identity " .. id .. " was not found")
end

security.routes = {
  { method = "GET", path = "/Security/Roles", handler = list_roles, summary = "Security roles (paged, pq.*)" },
  { method = "POST", path = "/Security/Roles", handler = create_role, summary = "Create a security role" },
  { method = "PUT", path = "/Security/Roles", handler = update_role, summary = "Update a security role" },
  { method = "GET", path = "/Security/Roles/{id:int}", handler = get_role, summary = "One security role" },
  { method = "DELETE", path = "/Security/Roles/{id:int}", handler = delete_role, summary = "Delete a security role" },
  { method = "GET", path = "/Security/Identities", handler = list_identities,
    summary = "Security identities (paged, pq.*)" },
  { method = "POST", path = "/Security/Identities", handler = create_identity, summary = "Add a security identity" },
  { method = "DELETE", path = "/Security/Identities/{id:int}", handler = delete_identity,
    summary = "Delete a security identity" },
}

return security
