-- Certificate collections: saved certificate queries. GET /CertificateCollections
-- (paged, pq.*), GET /CertificateCollections/{id} or /{name}, POST and PUT,
-- DELETE /CertificateCollections/{id} (204). `collectionId` (a query
-- parameter of certificate lookups, Recover, Download and Metadata) reads
-- through a collection: only certificates its query matches are found, and an
-- unknown collection id is a 404 (collections.filter).
local util = require "keyfactor.sandbox.util"
local query = require "keyfactor.sandbox.query"
local check = require "keyfactor.sandbox.check"
local auth = require "keyfactor.sandbox.auth"
local certificates = require "keyfactor.sandbox.certificates"

local collections = {}

local DUPLICATION = { [0] = true, [1] = true, [2] = true, [4] = true }

local function data(sandbox)
  local s = sandbox.state
  s.collections = s.collections or { list = {}, next_id = 1 }
  return s.collections
end

local function find(sandbox, id)
  for i, c in ipairs(data(sandbox).list) do
    if c.id == id then return c, i end
  end
  util.not_found("Certificate collection " .. tostring(id) .. " was not found")
end

-- The certificates a collection's query matches (revoked and expired too).
local function matcher(c)
  return query.compile(c.query ~= "" and c.query or nil, certificates.fields)
end

local function render(sandbox, c)
  local match, count = matcher(c), 0
  for _, cert in ipairs(sandbox.state.certificates) do
    if match(cert) then count = count + 1 end
  end
  return { Id = c.id, Name = c.name, Description = c.description, Content = c.query, Query = c.query,
    DuplicationField = c.duplication, ShowOnDashboard = c.dashboard, Favorite = c.favorite,
    EstimatedCertCount = count, LastEstimated = util.iso(util.now()) }
end

--- The request's `collectionId` as a predicate over certificate records, or
-- nil when the request names none (absent or 0); 404 for an unknown one.
function collections.filter(sandbox, req)
  local id = query.int_param(req.params, "collectionId", 0)
  if id == 0 then return nil end
  return matcher((find(sandbox, id)))
end

--- Raises the 404 of a certificate that `req`'s collection does not hold.
function collections.check_certificate(sandbox, req, cert)
  local match = collections.filter(sandbox, req)
  if match and not match(cert) then
    util.not_found(string.format("Certificate with ID %d was not found in collection %d", cert.id,
      query.int_param(req.params, "collectionId", 0)))
  end
end

local field = query.field
local fields = {
  id = field(function(c) return c.id end, "number"),
  name = field(function(c) return c.name end),
  description = field(function(c) return c.description end),
  query = field(function(c) return c.query end),
  favorite = field(function(c) return c.favorite end, "bool"),
  showondashboard = field(function(c) return c.dashboard end, "bool"),
}

local FIELDS = { Id = "int", CopyFromId = "int", Name = "string", Description = "string", Query = "string",
  DuplicationField = "int", ShowOnDashboard = "bool", Favorite = "bool" }

-- Applies the fields create and update share to `c` (validated first).
local function apply(sandbox, c, body)
  local name = check.string(body, "Name", true)
  if name == "" then util.fail(400, "missing_field", "Name is required") end
  for _, other in ipairs(data(sandbox).list) do
    if other.id ~= c.id and other.name:lower() == name:lower() then
      util.bad_request("A certificate collection named '" .. name .. "' already exists")
    end
  end
  local text = check.string(body, "Query", false)
  if text then query.compile(text ~= "" and text or nil, certificates.fields) end   -- a 400 naming the problem
  local duplication = check.int(body, "DuplicationField", false)
  if duplication and not DUPLICATION[duplication] then
    util.bad_request("DuplicationField " .. duplication .. " is not valid (0, 1, 2 or 4)")
  end
  c.name = name
  c.description = check.string(body, "Description", false) or c.description or ""
  c.query = text or c.query or ""
  c.duplication = duplication or c.duplication or 0
  local dashboard, favorite = check.bool(body, "ShowOnDashboard"), check.bool(body, "Favorite")
  if dashboard ~= nil then c.dashboard = dashboard end
  if favorite ~= nil then c.favorite = favorite end
  return c
end

local function create(sandbox, req)
  auth.require_admin(req.user, "create certificate collections")
  local body = check.body(req, FIELDS)
  local store = data(sandbox)
  local c = { id = store.next_id, dashboard = false, favorite = false }
  local from = check.int(body, "CopyFromId", false)
  if from and from ~= 0 then
    local source = find(sandbox, from)
    c.query, c.description, c.duplication = source.query, source.description, source.duplication
  end
  apply(sandbox, c, body)
  store.next_id = store.next_id + 1
  store.list[#store.list + 1] = c
  return render(sandbox, c)
end

local function update(sandbox, req)
  auth.require_admin(req.user, "update certificate collections")
  local body = check.body(req, FIELDS)
  local c = find(sandbox, check.int(body, "Id", true))
  local updated = apply(sandbox, util.copy(c), body)
  for k, v in pairs(updated) do c[k] = v end
  return render(sandbox, c)
end

local function list(sandbox, req)
  return query.page(data(sandbox).list, req.params, "pq", fields, function(c) return render(sandbox, c) end)
end

local function get_by_id(sandbox, _, id)
  return render(sandbox, (find(sandbox, id)))
end

local function get_by_name(sandbox, _, name)
  for _, c in ipairs(data(sandbox).list) do
    if c.name:lower() == name:lower() then return render(sandbox, c) end
  end
  util.not_found("Certificate collection '" .. name .. "' was not found")
end

local function delete(sandbox, req, id)
  auth.require_admin(req.user, "delete certificate collections")
  local _, i = find(sandbox, id)
  table.remove(data(sandbox).list, i)
  return nil, 204
end

collections.routes = {
  { method = "GET", path = "/CertificateCollections", handler = list,
    summary = "Certificate collections (paged, pq.*)" },
  { method = "POST", path = "/CertificateCollections", handler = create, summary = "Create a certificate collection" },
  { method = "PUT", path = "/CertificateCollections", handler = update, summary = "Update a certificate collection" },
  { method = "GET", path = "/CertificateCollections/{id:int}", handler = get_by_id,
    summary = "One certificate collection by id" },
  { method = "GET", path = "/CertificateCollections/{name}", handler = get_by_name,
    summary = "One certificate collection by name" },
  { method = "DELETE", path = "/CertificateCollections/{id:int}", handler = delete,
    summary = "Delete a certificate collection" },
}

return collections
