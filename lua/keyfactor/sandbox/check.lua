-- Request validation, strict where Keyfactor's model binder is: every
-- failure raises a 400 with Keyfactor's error body whose message names the
-- field. A handler describes the fields of its body once (check.body(req,
-- FIELDS)); the types of every field present are checked here, whether or
-- not the handler reads it, as the real server binds the whole body first.
--
-- Field kinds: "string", "int", "bool", "number", "date" (ISO 8601 string),
-- "object" (any JSON object), "array" (any JSON array), "any",
-- check.array_of(kind) and check.object_of(fields) for nested shapes, and
-- check.map_of(kind) for an object whose values all have one kind.
local util = require "keyfactor.sandbox.util"

local check = {}

local function missing(name) util.fail(400, "missing_field", name .. " is required") end
local function wrong(name, what) util.fail(400, "wrong_type", name .. " must be " .. what) end

local function absent(v) return v == nil or v == util.null end

---------------------------------------------------------------- JSON kinds
-- lua-cjson decodes {} and [] to the same empty table; the binder does not
-- confuse them, so neither may we. Empty objects outside strings are
-- rewritten to carry a marker key before decoding, then marked OBJECT.
local OBJECT = { __name = "json.object" }
local MARKER = "\0"
local MARKED = '{"\\u0000":0}'

local function mark_empty_objects(text)
  local out, pos, count = {}, 1, 0
  local i = 1
  while true do
    local at = text:find('[{"]', i)
    if not at then break end
    if text:byte(at) == 34 then            -- a string: skip to its closing quote
      local j = at + 1
      while true do
        local q = text:find('["\\]', j)
        if not q then return text, 0 end   -- unterminated: the decoder reports it
        if text:byte(q) == 92 then j = q + 2 else i = q + 1; break end
      end
    else
      local close = text:match("^%s*()}", at + 1)
      if close then
        out[#out + 1] = text:sub(pos, at - 1)
        out[#out + 1] = MARKED
        pos, i, count = close + 1, close + 1, count + 1
      else
        i = at + 1
      end
    end
  end
  if count == 0 then return text, 0 end
  out[#out + 1] = text:sub(pos)
  return table.concat(out), count
end

local function unmark(v, depth)
  if type(v) ~= "table" or depth > 64 then return end
  if v[MARKER] ~= nil then
    v[MARKER] = nil
    setmetatable(v, OBJECT)
    return
  end
  for _, child in pairs(v) do unmark(child, depth + 1) end
end

-- Decodes a request body; empty objects come back with the OBJECT metatable.
function check.decode(text)
  local marked, count = mark_empty_objects(text)
  local v, err = util.decode(marked)
  if v == nil then return nil, err end
  if count > 0 then unmark(v, 0) end
  return v
end

function check.is_object(v)
  if type(v) ~= "table" then return false end
  if getmetatable(v) == OBJECT then return true end
  local k = next(v)
  return k ~= nil and type(k) == "string"
end

function check.is_array(v)
  if type(v) ~= "table" or getmetatable(v) == OBJECT then return false end
  local k = next(v)
  return k == nil or math.type(k) == "integer"
end

---------------------------------------------------------------- kinds
function check.array_of(kind) return { array = kind } end
function check.object_of(fields) return { object = fields } end
function check.map_of(kind) return { map = kind } end

local conform

local SCALARS = {
  string = function(v) return type(v) == "string" end,
  int = function(v) return util.integer(v) ~= nil end,
  bool = function(v) return type(v) == "boolean" end,
  number = function(v) return type(v) == "number" end,
  date = function(v) return type(v) == "string" and util.parse_iso(v) ~= nil end,
  object = check.is_object,
  array = check.is_array,
  any = function() return true end,
}
local WHAT = {
  string = "a string", int = "an integer", bool = "a boolean (true or false)", number = "a number",
  date = "an ISO 8601 date-time (e.g. 2023-11-19T16:23:01Z)", object = "an object", array = "an array",
}

-- Raises a 400 naming `label` unless `v` (present, not null) has `kind`.
function conform(v, kind, label)
  if absent(v) then return end
  if type(kind) == "string" then
    if not SCALARS[kind](v) then wrong(label, WHAT[kind]) end
  elseif kind.array then
    if not check.is_array(v) then wrong(label, "an array") end
    for i, item in ipairs(v) do
      if item == util.null and kind.array ~= "any" then wrong(string.format("%s[%d]", label, i), "not null") end
      conform(item, kind.array, string.format("%s[%d]", label, i))
    end
  elseif kind.map then
    if not check.is_object(v) then wrong(label, "an object") end
    for k, item in pairs(v) do conform(item, kind.map, label .. "." .. k) end
  else
    if not check.is_object(v) then wrong(label, "an object") end
    check.fields(v, kind.object, label .. ".")
  end
end
check.conform = conform

-- Checks the kinds of the fields of `t` that `fields` names (case as sent).
function check.fields(t, fields, prefix)
  for name, kind in pairs(fields) do
    conform(t[name], kind, (prefix or "") .. name)
  end
  return t
end

---------------------------------------------------------------- bodies
local function decoded(req)
  if req.checked_body == nil then
    if req.body == nil or req.body:match("^%s*$") then
      util.fail(400, "bad_json", "A JSON request body is required")
    end
    local v, err = check.decode(req.body)
    if v == nil then util.fail(400, "bad_json", "The request body is not valid JSON: " .. tostring(err)) end
    req.checked_body = v
  end
  return req.checked_body
end

-- The decoded JSON body, which must be an object; `fields` (optional) types
-- its fields.
function check.body(req, fields)
  local body = decoded(req)
  if not check.is_object(body) then
    util.fail(400, "bad_json", "The request body must be a JSON object")
  end
  if fields then check.fields(body, fields) end
  return body
end

-- The decoded JSON body, which must be an array.
function check.array_body(req)
  local body = decoded(req)
  if not check.is_array(body) then util.fail(400, "wrong_type", "The request body must be a JSON array") end
  return body
end

---------------------------------------------------------------- fields
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
  if v ~= nil then conform(v, "string", shown) end
  return v
end

function check.int(t, name, required, label)
  local v, shown = field(t, name, required, label)
  if v == nil then return nil end
  conform(v, "int", shown)
  return util.integer(v)
end

function check.bool(t, name, label)
  local v, shown = field(t, name, false, label)
  if v ~= nil then conform(v, "bool", shown) end
  return v
end

function check.object(t, name, label)
  local v, shown = field(t, name, false, label)
  if v ~= nil then conform(v, "object", shown) end
  return v
end

function check.array(t, name, required, label)
  local v, shown = field(t, name, required, label)
  if v ~= nil then conform(v, "array", shown) end
  return v
end

-- An array of objects; each is checked against `fields` and passed to the
-- caller with its label ("Stores[2]").
function check.entries(t, name, required, fields)
  local list = check.array(t, name, required)
  if not list then return nil end
  for i, entry in ipairs(list) do
    conform(entry, check.object_of(fields or {}), string.format("%s[%d]", name, i))
  end
  return list
end

function check.int_array(t, name, required)
  local list = check.array(t, name, required)
  if not list then return nil end
  conform(list, check.array_of("int"), name)
  local out = {}
  for i, v in ipairs(list) do out[i] = util.integer(v) end
  return out
end

-- An ISO 8601 date-time field, returned as epoch seconds.
function check.date(t, name, required, label)
  local s, shown = field(t, name, required, label)
  if not s then return nil end
  conform(s, "date", shown)
  return util.parse_iso(s)
end

-- The x-certificateformat header in the spelling of `allowed` (lower-case
-- value -> name); `default` when absent (required when there is none).
function check.format_header(req, allowed, default)
  local value = req.headers:get("x-certificateformat")
  if not value or value == "" then
    if default then return default end
    util.bad_request("The x-certificateformat header is required")
  end
  local format = allowed[value:lower()]
  if not format then
    local names = {}
    for _, v in pairs(allowed) do names[#names + 1] = v end
    table.sort(names)
    util.bad_request("x-certificateformat '" .. value .. "' is not valid here (use "
      .. table.concat(names, ", ") .. ")")
  end
  return format
end

-- An integer id from the URL path.
function check.path_int(s, name)
  if math.type(s) == "integer" then return s end
  local n = math.tointeger(tonumber(s))
  if not n or not tostring(s):match("^%-?%d+$") then
    util.bad_request(string.format("The value '%s' is not valid for %s", tostring(s), name))
  end
  return n
end

return check
