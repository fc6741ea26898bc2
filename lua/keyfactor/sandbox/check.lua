-- Request body validation: every failure raises a 400 whose message names
-- the field, as Keyfactor's model binding does.
local util = require "keyfactor.sandbox.util"

local check = {}

local function missing(name) util.fail(400, "missing_field", name .. " is required") end
local function wrong(name, what) util.fail(400, "wrong_type", name .. " must be " .. what) end

local function absent(v) return v == nil or v == util.null end

-- The decoded JSON body, which must be an object.
function check.object_body(req)
  local body = req:json()
  if type(body) ~= "table" or req.body:match("^%s*%[") then
    util.fail(400, "bad_json", "The request body must be a JSON object")
  end
  return body
end

-- The decoded JSON body, which must be an array.
function check.array_body(req)
  local body = req:json()
  if type(body) ~= "table" or not req.body:match("^%s*%[") then
    util.fail(400, "wrong_type", "The request body must be a JSON array")
  end
  return body
end

-- The field's value and label; nil when it is absent (an error if required).
local function field(t, name, required, label)
  local v = t[name]
  label = label or name
  if absent(v) then
    if required then missing(label) end
    return nil
  end
  return v, label
end

function check.string(t, name, required, label)
  local v, shown = field(t, name, required, label)
  if v ~= nil and type(v) ~= "string" then wrong(shown, "a string") end
  return v
end

function check.int(t, name, required, label)
  local v, shown = field(t, name, required, label)
  if v == nil then return nil end
  local n = util.integer(v)
  if not n then wrong(shown, "an integer") end
  return n
end

function check.bool(t, name, label)
  local v = t[name]
  if absent(v) then return nil end
  if type(v) ~= "boolean" then wrong(label or name, "a boolean") end
  return v
end

function check.object(t, name, label)
  local v = t[name]
  if absent(v) then return nil end
  if type(v) ~= "table" then wrong(label or name, "an object") end
  return v
end

function check.array(t, name, required, label)
  local v, shown = field(t, name, required, label)
  if v == nil then return nil end
  if type(v) ~= "table" then wrong(shown, "an array") end
  for k in pairs(v) do
    if math.type(k) ~= "integer" then wrong(shown, "an array") end
  end
  return v
end

function check.int_array(t, name, required)
  local list = check.array(t, name, required)
  if not list then return nil end
  local out = {}
  for i, v in ipairs(list) do
    out[i] = util.integer(v) or wrong(string.format("%s[%d]", name, i), "an integer")
  end
  return out
end

-- An ISO 8601 date-time field, returned as epoch seconds.
function check.date(t, name, required)
  local s = check.string(t, name, required)
  if not s then return nil end
  local when = util.parse_iso(s)
  if not when then wrong(name, "an ISO 8601 date-time (e.g. 2023-11-19T16:23:01Z)") end
  return when
end

-- An integer id from the URL path.
function check.path_int(s, name)
  local n = math.tointeger(tonumber(s))
  if not n or not tostring(s):match("^%-?%d+$") then
    util.bad_request(string.format("The value '%s' is not valid for %s", tostring(s), name))
  end
  return n
end

return check
