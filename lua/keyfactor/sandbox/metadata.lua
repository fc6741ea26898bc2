-- Certificate metadata: the seeded metadata fields (GET /MetadataFields,
-- paged pq.*) and PUT /Certificates/Metadata, which checks every name and
-- value against its field's type before changing anything.
local util = require "keyfactor.sandbox.util"
local query = require "keyfactor.sandbox.query"
local check = require "keyfactor.sandbox.check"
local certificates = require "keyfactor.sandbox.certificates"
local collections = require "keyfactor.sandbox.collections"

local metadata = {}

-- DataType enum: 1 String, 2 Integer, 3 Date, 4 Boolean, 5 MultipleChoice,
-- 6 BigText, 7 Email. Enrollment: 0 optional, 1 required, 2 hidden.
local STRING, INTEGER, DATE, BOOLEAN, CHOICE, BIG_TEXT, EMAIL = 1, 2, 3, 4, 5, 6, 7

local function seed_field(id, name, data_type, description, extra)
  local f = { Id = id, Name = name, Description = description, DataType = data_type, Hint = "",
    Validation = "", Enrollment = 0, Message = "", Options = "", DefaultValue = "", DisplayOrder = id }
  for k, v in pairs(extra or {}) do f[k] = v end
  return f
end

metadata.fields = {
  seed_field(1, "Owner", STRING, "Who answers for the certificate"),
  seed_field(2, "Environment", CHOICE, "Where the certificate is used",
    { Options = "Production,Staging,Test", Hint = "Production, Staging or Test" }),
  seed_field(3, "TicketNumber", INTEGER, "The change ticket of the request"),
  seed_field(4, "RenewalClaim", STRING, "Which renewal worker has claimed the certificate"),
  seed_field(5, "ContactEmail", EMAIL, "Address for expiry notices"),
  seed_field(6, "Decommission", DATE, "When the certificate may be removed"),
  seed_field(7, "Monitored", BOOLEAN, "Whether expiry is monitored"),
  seed_field(8, "Notes", BIG_TEXT, "Free text"),
}

local function by_name(name)
  for _, f in ipairs(metadata.fields) do
    if f.Name:lower() == name:lower() then return f end
  end
end

local function options(f)
  local out = {}
  for o in f.Options:gmatch("[^,]+") do out[#out + 1] = o:match("^%s*(.-)%s*$") end
  return out
end

-- Why `value` (a string) is not valid for field `f`, or nil.
local function invalid(f, value)
  if f.DataType == INTEGER and not value:match("^%-?%d+$") then return "an integer" end
  if f.DataType == BOOLEAN and value ~= "true" and value ~= "false" then return "true or false" end
  if f.DataType == DATE and not util.parse_iso(value) then return "an ISO 8601 date" end
  if f.DataType == EMAIL and not value:match("^[^@%s]+@[^@%s]+%.[^@%s]+$") then return "an email address" end
  if f.DataType == CHOICE then
    for _, o in ipairs(options(f)) do
      if o == value then return nil end
    end
    return "one of " .. f.Options
  end
  return nil
end

-- Checks a Metadata object; returns it keyed by the fields' own names, with
-- scalar values as strings ("" removes a value, as the UI's empty field).
function metadata.validate(values, label)
  local out = {}
  for name, v in pairs(values) do
    local f = by_name(name)
    if not f then util.bad_request(label .. "." .. name .. ": no metadata field named '" .. name .. "'") end
    if type(v) == "number" then v = util.integer(v) and string.format("%d", util.integer(v)) or tostring(v)
    elseif type(v) == "boolean" then v = tostring(v)
    elseif v == util.null then v = ""
    elseif type(v) ~= "string" then util.fail(400, "wrong_type", label .. "." .. name .. " must be a string") end
    local why = v ~= "" and invalid(f, v)
    if why then
      util.fail(400, "wrong_type", string.format("%s.%s: '%s' is not valid for a %s field (must be %s)",
        label, name, v, f.Name, why))
    end
    out[f.Name] = v
  end
  return out
end

local field = query.field

local query_fields = {
  id = field(function(f) return f.Id end, "number"),
  name = field(function(f) return f.Name end),
  datatype = field(function(f) return f.DataType end, "number"),
  displayorder = field(function(f) return f.DisplayOrder end, "number"),
}

local function list(_, req)
  return query.page(metadata.fields, req.params, "pq", query_fields, util.copy)
end

local SET_FIELDS = { Id = "int", Metadata = "object", CollectionId = "int" }

local function set(sandbox, req)
  local body = check.body(req, SET_FIELDS)
  local cert = certificates.find(sandbox, check.int(body, "Id", true))
  collections.check_certificate(sandbox, req, cert)
  local values = metadata.validate(check.object(body, "Metadata") or util.fail(400, "missing_field",
    "Metadata is required"), "Metadata")
  cert.metadata = cert.metadata or {}
  for name, v in pairs(values) do
    cert.metadata[name] = v ~= "" and v or nil
  end
  return nil, 204
end

metadata.routes = {
  { method = "GET", path = "/MetadataFields", handler = list, summary = "Metadata field definitions (paged, pq.*)" },
  { method = "PUT", path = "/Certificates/Metadata", handler = set,
    summary = "Sets metadata values of one certificate ({Id, Metadata}); 204" },
}

return metadata
