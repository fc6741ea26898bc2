--- Values for Keyfactor's query language (`pq.queryString` and the like).
--
--   local q = require "keyfactor.query"
--   kf:certificates { query = "IssuedDN -eq " .. q.value(cert.IssuedDN) }
--   q.clause("IssuedDN", "-eq", 'CN=evil\\')   --> IssuedDN -eq "CN=evil\\"
--
-- The one place values are quoted, so a subject such as `CN=evil\` or
-- `CN="quoted"` is looked up as itself and never ends a query early: a
-- string goes in double quotes with `\` written `\\` and `"` written `\"`;
-- an integer is bare; a boolean is `true` or `false`.
-- @module keyfactor.query

local dates = require "keyfactor.util.dates"
local v = require "keyfactor.api.validate"

local query = {}

-- As a keyfactor.api.validate checker (value, path): the literal, or fail(path, ...).
local function literal(value, path)
  if type(value) == "number" then return string.format("%d", v.integer(value, path)) end
  if type(value) == "boolean" then return tostring(value) end
  if type(value) ~= "string" then v.fail(path, "must be a string or an integer, not " .. type(value)) end
  return '"' .. value:gsub('[\\"]', "\\%0") .. '"'
end
query.literal = literal

--- The query-language literal of `value` (a string, an integer or a
-- boolean); anything else raises, naming the field.
function query.value(value)
  return v.check("keyfactor.query.value", literal, value, "value")
end

--- `field op value` with the value quoted, e.g. clause("Id", "-gt", 41).
function query.clause(field, op, value)
  return field .. " " .. op .. " " .. v.check("keyfactor.query.clause", literal, value, field)
end

--- An ISO 8601 UTC time literal (for NotAfter, NotBefore) from seconds since the epoch.
function query.time(seconds)
  return '"' .. dates.iso(seconds) .. '"'
end

return query
