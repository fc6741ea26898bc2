-- Keyfactor Command 25's request and response models, read at test time
-- from command-25-models.md (reference material kept outside the project:
-- $KEYFACTOR_REFERENCE_DIR, or ../shared/reference beside the checkout), and
-- a checker of decoded answers against them.
--
--   local models = require "support.models"
--   local m = models.load()          -- nil, why when the document is absent
--   local problems = m:check(answer, "WorkflowsInstanceResponse")   -- {} when it conforms
--
-- A model is the table under a "### Name" heading: | `Field` | `Type` | Required | ... |.
-- Every field of the model must be in the answer (an optional field of an
-- object type may be left out, as the SDK omits a nil pointer), and nothing else; the
-- type is checked as the document writes it: string, string (uuid), int32,
-- int64, bool, time.Time, Nullable* (also null), []X, map[string]X, a model
-- of the document (checked in turn), or an enum (an integer or a string).
local models = {}

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec/support"
local root = here .. "/../.."

models.FILE = "command-25-models.md"

local read = require("support.files").read

--- The reference directory holding command-25-models.md, or nil.
function models.reference_dir()
  for _, dir in ipairs { os.getenv("KEYFACTOR_REFERENCE_DIR") or false, root .. "/../shared/reference",
                         root .. "/../../shared/reference" } do
    if dir and read(dir .. "/" .. models.FILE) then return dir end
  end
end

--- Parses the document's text: name -> {fields = {{name, type, required}}, by_name}.
function models.parse(text)
  local out, current = {}, nil
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    local heading = line:match("^###%s+([%w_]+)%s*$")
    if heading then
      current = { name = heading, fields = {}, by_name = {} }
      out[heading] = current
    elseif line:match("^##?%s") then
      current = nil
    elseif current then
      local name, type_text, required = line:match("^|%s*`([^`]+)`%s*|%s*`([^`]+)`%s*|%s*(%a+)%s*|")
      if name then
        local field = { name = name, type = type_text, required = required == "yes" }
        current.fields[#current.fields + 1] = field
        current.by_name[name] = field
      end
    end
  end
  for name, model in pairs(out) do
    if #model.fields == 0 then out[name] = nil end     -- "Operations" and other non-model headings
  end
  return out
end

local Models = {}
Models.__index = Models

--- Loads the models; nil and a reason when the document is not found.
function models.load()
  local dir = models.reference_dir()
  if not dir then
    return nil, models.FILE .. " not found: set KEYFACTOR_REFERENCE_DIR or keep ../shared/reference beside the checkout"
  end
  return setmetatable({ models = models.parse(read(dir .. "/" .. models.FILE)), dir = dir }, Models)
end

local NULL = require("cjson").null
local GUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"
local ISO = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d"

local function is_integer(value)
  return math.type(value) == "integer"
end

local SCALARS = {
  ["string"] = function(value) return type(value) == "string" end,
  ["string (uuid)"] = function(value) return type(value) == "string" and value:match(GUID) ~= nil end,
  ["int32"] = is_integer, ["int64"] = is_integer,
  ["bool"] = function(value) return type(value) == "boolean" end,
  ["time.Time"] = function(value) return type(value) == "string" and value:match(ISO) ~= nil end,
  ["interface{}"] = function() return true end,
}
SCALARS["Int32"], SCALARS["Int64"], SCALARS["Bool"], SCALARS["Time"], SCALARS["String"] =
  SCALARS.int32, SCALARS.int64, SCALARS.bool, SCALARS["time.Time"], SCALARS.string

-- A type the document names without describing it, that is an enum.
local function is_enum(type_text)
  return type_text:match("Enums") or type_text:match("Status$") or type_text:match("DuplicateSubjectType$")
end

local function is_array(value)
  if type(value) ~= "table" then return false end
  local n = #value
  for k in pairs(value) do
    if math.type(k) ~= "integer" or k < 1 or k > n then return false end
  end
  return true
end

-- Appends to `problems` what is wrong with `value` as `type_text` at `path`.
function Models:check_type(value, type_text, path, problems)
  local function bad(what)
    problems[#problems + 1] = string.format("%s: %s, not %s", path, what,
      value == NULL and "null" or (type(value) == "string" and string.format("%q", value) or tostring(value)))
  end
  local inner = type_text:match("^Nullable(%w+)$")
  if inner then
    if value == NULL then return end
    type_text = inner
  end
  if value == nil then return bad(type_text .. " expected") end
  local item = type_text:match("^%[%](.+)$")
  if item then
    if not is_array(value) then return bad("an array (" .. type_text .. ") expected") end
    for i, v in ipairs(value) do self:check_type(v, item:gsub("%s*%b()$", ""), path .. "[" .. i .. "]", problems) end
    return
  end
  local map_item = type_text:match("^map%[string%](.+)$")
  if map_item then
    if type(value) ~= "table" or (next(value) ~= nil and is_array(value)) then return bad("an object expected") end
    for k, v in pairs(value) do self:check_type(v, map_item, path .. "." .. tostring(k), problems) end
    return
  end
  local scalar = SCALARS[type_text]
  if scalar then
    if not scalar(value) then bad(type_text .. " expected") end
    return
  end
  if self.models[type_text] then return self:check(value, type_text, path, problems) end
  -- a type the document names but does not describe: an enum, or a model not transcribed
  if is_enum(type_text) then
    if not (is_integer(value) or type(value) == "string") then bad("an enum (" .. type_text .. ") expected") end
    return
  end
  if type(value) ~= "table" or (next(value) ~= nil and is_array(value)) then
    bad("an object (" .. type_text .. ") expected")
  end
end

-- An optional field of an object type may be left out (the SDK's nil
-- pointer; a schedule sets one member): scalars, arrays and maps may not.
function Models:optional_object(type_text)
  if type_text:match("^Nullable") or type_text:match("^%[%]") or type_text:match("^map%[") or SCALARS[type_text] then
    return false
  end
  return not is_enum(type_text)
end

--- Problems of `value` as model `name` ({} when it conforms): missing
-- fields, fields the model does not have, and wrong types.
function Models:check(value, name, path, problems)
  problems = problems or {}
  path = path or name
  local model = self.models[name]
  if not model then error("no model " .. name .. " in " .. models.FILE, 2) end
  if type(value) ~= "table" then
    problems[#problems + 1] = path .. ": an object expected, not " .. tostring(value)
    return problems
  end
  for _, field in ipairs(model.fields) do
    if value[field.name] == nil then
      if field.required or not self:optional_object(field.type) then
        problems[#problems + 1] = path .. "." .. field.name .. ": missing"
      end
    else
      self:check_type(value[field.name], field.type, path .. "." .. field.name, problems)
    end
  end
  for k in pairs(value) do
    if not model.by_name[k] then problems[#problems + 1] = path .. "." .. tostring(k) .. ": not a field of " .. name end
  end
  return problems
end

return models
