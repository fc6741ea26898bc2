--- Structured errors for remote failures.
--
-- Every remote failure of a `kf:` call comes back as `nil, err` where `err`
-- is a table with these fields (DESIGN.md §2):
--
--   kind       "transport" | "timeout" | "tls" | "http" | "auth" | "decode" | "canceled"
--   status     HTTP status (number) when the server answered
--   code       Keyfactor's ErrorCode ("0xA0110000") when it sent one
--   message    what went wrong, one line, secrets redacted
--   method     "GET", "POST", ...
--   path       the API path, e.g. "/Certificates/42" (no query string)
--   retryable  true when calling again may succeed and is safe
--
-- `tostring(err)` gives one readable line.
-- @module keyfactor.errors

local errors = {}

local Error = {}
Error.__index = Error
Error.__name = "keyfactor.error"

function Error.__tostring(e)
  local parts = { "keyfactor:", e.kind }
  if e.status then parts[#parts + 1] = tostring(e.status) end
  if e.code then parts[#parts + 1] = "(" .. e.code .. ")" end
  if e.method then parts[#parts + 1] = e.method end
  if e.path then parts[#parts + 1] = e.path end
  return table.concat(parts, " ") .. ": " .. tostring(e.message)
end

--- Makes an error object from a table of the fields above.
function errors.new(fields)
  fields.retryable = fields.retryable == true
  return setmetatable(fields, Error)
end

--- True when `value` is an error made by this module.
function errors.is(value)
  return getmetatable(value) == Error
end

return errors
