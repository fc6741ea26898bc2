--- Checking request tables before anything is sent.
--
-- A schema is a checker function `check(value, path) -> normalized value`
-- that raises `fail(path, "must be ...")`.  `validate.check` turns that into
-- a Lua error naming the call and the field, raised at the caller's line:
--
--   kf:deploy: Stores[2].StoreId must be a string
--
-- Checkers return a normalized copy (e.g. a JobTime given as `os.time()` comes
-- back as an ISO 8601 string); the caller's table is never modified.
-- @module keyfactor.api.validate

local validate = {}

local Failure = {}   -- marks our own errors, so check() can tell them apart

local function fail(path, message)
  error(setmetatable({ text = (path ~= "" and path or "argument") .. " " .. message }, Failure), 0)
end
validate.fail = fail

local function join(path, key)
  if type(key) == "number" then return path .. "[" .. key .. "]" end
  return path == "" and key or path .. "." .. key
end

-- The type test of each checker made by `typed`, for `validate.array`.
local type_test = setmetatable({}, { __mode = "k" })

local function typed(name, test)
  local check = function(value, path)
    if not test(value) then fail(path, "must be " .. name .. ", not " .. type(value)) end
    return value
  end
  type_test[check] = test
  return check
end

validate.string = typed("a string", function(v) return type(v) == "string" end)
validate.boolean = typed("a boolean", function(v) return type(v) == "boolean" end)
validate.number = typed("a number", function(v) return type(v) == "number" end)
validate.table = typed("a table", function(v) return type(v) == "table" end)

validate.callable = typed("a function", function(v) return type(v) == "function" end)

--- A non-empty string.
function validate.nonempty(value, path)
  if type(value) ~= "string" then fail(path, "must be a string, not " .. type(value)) end
  if value == "" then fail(path, "must not be empty") end
  return value
end

--- An integer; integral floats (as JSON decoding gives) are accepted.
-- Only numbers: Lua 5.4's math.tointeger also converts the string "12".
function validate.integer(value, path)
  if type(value) == "number" then
    if math.tointeger then
      local i = math.tointeger(value)
      if i then return i end
    elseif value == math.floor(value) and math.abs(value) < 2^53 then
      return value
    end
  end
  fail(path, "must be an integer, not " .. (type(value) == "number" and tostring(value) or type(value)))
end

--- An integer from `min` to `max` (either may be nil: no bound that side).
function validate.integer_in(min, max)
  local bounds = max == nil and "at least " .. min
    or min == nil and "at most " .. max
    or "from " .. min .. " to " .. max
  return function(value, path)
    local n = validate.integer(value, path)
    if (min and n < min) or (max and n > max) then fail(path, "must be " .. bounds .. ", not " .. n) end
    return n
  end
end

--- A number above zero (NaN is not).
function validate.positive(value, path)
  if type(value) ~= "number" or value ~= value or value <= 0 then
    fail(path, "must be a positive number, not " .. (type(value) == "number" and tostring(value) or type(value)))
  end
  return value
end

local GUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

function validate.guid(value, path)
  if type(value) ~= "string" then fail(path, "must be a string, not " .. type(value)) end
  if not value:match(GUID) then fail(path, "must be a GUID, not \"" .. value .. "\"") end
  return value
end

--- ISO 8601 UTC date-time (`2023-11-19T16:23:01Z`, fractions allowed), or a
-- number of seconds since the epoch (`os.time()`), formatted as such.
function validate.time(value, path)
  if type(value) == "number" then
    return require("keyfactor.util.dates").iso(value)
  end
  if type(value) ~= "string" then
    fail(path, "must be an ISO 8601 UTC string or os.time() number, not " .. type(value))
  end
  if not (value:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.?%d*Z$")
      or value:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.?%d*[+-]00:?00$")) then
    fail(path, "must be ISO 8601 UTC like 2023-11-19T16:23:01Z, not \"" .. value .. "\"")
  end
  return value
end

--- One of a fixed set of strings, compared case-insensitively; returns the
-- canonical spelling.
function validate.one_of(choices)
  local canonical, listed = {}, {}
  for _, c in ipairs(choices) do
    canonical[c:lower()] = c
    listed[#listed + 1] = '"' .. c .. '"'
  end
  local expected = "must be one of " .. table.concat(listed, ", ")
  return function(value, path)
    local c = type(value) == "string" and canonical[value:lower()]
    if not c then
      fail(path, expected .. ", not " .. (type(value) == "string" and '"' .. value .. '"' or type(value)))
    end
    return c
  end
end

local function is_array(t)
  local n = #t
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k > n or k % 1 ~= 0 then return false end
  end
  return true
end

--- An array whose items pass `item`; `opts.min` is the least length.
function validate.array(item, opts)
  local min = opts and opts.min or 0
  return function(value, path)
    if type(value) ~= "table" or not is_array(value) then
      fail(path, "must be an array, not " .. type(value))
    end
    if #value < min then fail(path, "must have at least " .. min .. " item" .. (min > 1 and "s" or "")) end
    local out, test = {}, type_test[item]
    if test then   -- a plain type check (kf:parallel's functions): the item's path only for its error
      for i = 1, #value do
        local x = value[i]
        out[i] = test(x) and x or item(x, join(path, i))
      end
    else
      for i = 1, #value do out[i] = item(value[i], join(path, i)) end
    end
    return setmetatable(out, require("keyfactor.core").array_mt)   -- goes out as [] when empty
  end
end

--- A table with string keys whose values pass `item` (e.g. Metadata, SANs).
function validate.map(item)
  return function(value, path)
    if type(value) ~= "table" then fail(path, "must be a table, not " .. type(value)) end
    local out = {}
    for k, v in pairs(value) do
      if type(k) ~= "string" then fail(path, "keys must be strings") end
      out[k] = item(v, join(path, k))
    end
    return out
  end
end

-- Bytes no header may carry: the controls but HTAB (CR and LF would end the
-- header and start another), and DEL.
local HEADER_FORBIDDEN = "[%z\1-\8\10-\31\127]"
local TOKEN = "^[%w!#$%%&'*+%-.^_`|~]+$"

--- A non-empty string that may be sent in a request header (a user agent,
-- a token).  The message never quotes the value: it may be a secret.
function validate.header_value(value, path)
  validate.nonempty(value, path)
  if value:find(HEADER_FORBIDDEN) then fail(path, "must not contain control characters (CR, LF, ...)") end
  return value
end

--- Extra request headers, name -> value: names are HTTP tokens, values
-- free of control characters.
function validate.headers(value, path)
  if type(value) ~= "table" then fail(path, "must be a table, not " .. type(value)) end
  local out = {}
  for k, v in pairs(value) do
    if type(k) ~= "string" or not k:match(TOKEN) then
      fail(path, "keys must be header names (letters, digits and !#$%&'*+-.^_`|~)")
    end
    if type(v) ~= "string" then fail(join(path, k), "must be a string, not " .. type(v)) end
    if v:find(HEADER_FORBIDDEN) then fail(join(path, k), "must not contain control characters (CR, LF, ...)") end
    out[k] = v
  end
  return out
end

-- Edit distance (insertions, deletions, substitutions) between two short
-- names, given up early past `limit`.
local function distance(a, b, limit)
  if math.abs(#a - #b) > limit then return limit + 1 end
  local previous = {}
  for j = 0, #b do previous[j] = j end
  for i = 1, #a do
    local current, best = { [0] = i }, i
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      current[j] = math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
      if current[j] < best then best = current[j] end
    end
    if best > limit then return limit + 1 end
    previous = current
  end
  return previous[#b]
end

--- The known field an unknown `name` most likely meant: the same name in
-- another case, or one within a small edit distance; nil when none is close.
function validate.near_miss(name, fields)
  if type(name) ~= "string" then return nil end
  local lower, best, best_distance = name:lower(), nil, nil
  local limit = #name <= 4 and 1 or 2
  local names = {}
  for known in pairs(fields) do names[#names + 1] = known end
  table.sort(names)    -- a stable answer among equally near names
  for _, known in ipairs(names) do
    if known:lower() == lower then return known end
    local d = distance(lower, known:lower(), limit)
    if d <= limit and (not best_distance or d < best_distance) then best, best_distance = known, d end
  end
  return best
end

--- A table with known fields.  `fields` maps names to checkers; `required`
-- lists the names that must be present.  Unknown fields are errors.
function validate.record(fields, required)
  required = required or {}
  return function(value, path)
    if type(value) ~= "table" then fail(path, "must be a table, not " .. type(value)) end
    local out = {}
    for k, v in pairs(value) do
      local check = fields[k]
      if not check then
        local near = validate.near_miss(k, fields)
        fail(join(path, tostring(k)), "is not a known field" .. (near and " (did you mean " .. near .. "?)" or ""))
      end
      out[k] = check(v, join(path, k))
    end
    for _, name in ipairs(required) do
      if value[name] == nil then fail(join(path, name), "is required") end
    end
    return out
  end
end

-- The error level, seen from the function that called user_level, of the
-- first caller outside the library's own modules (keyfactor/*.lua and
-- keyfactor/*/*.lua), so a
-- message points at the user's line however deep the helper that raised it.
local function user_level()
  local level = 3
  while true do
    local info = debug.getinfo(level, "S")
    if not info then return 2 end
    if not info.source:match("[@/\\]keyfactor[/\\][%w_/\\]+%.lua$") then return level - 1 end
    level = level + 1
  end
end

--- Runs `schema` on `value` for the call named `where`; raises a Lua error
-- at the caller of the API method on failure, returns the normalized value.
function validate.check(where, schema, value, path)
  local ok, result = pcall(schema, value, path or "")
  if ok then return result end
  if getmetatable(result) == Failure then
    error(where .. ": " .. result.text, user_level())
  end
  error(result, 0)
end

--- Raises a validation error for `where` from inside an API method (for
-- rules across fields, after `check`).
function validate.raise(where, text)
  error(where .. ": " .. text, user_level())
end

return validate
