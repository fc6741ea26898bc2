--- Structured errors for remote failures: the one place they are made.
--
-- Every remote failure of a `kf:` call comes back as `nil, err` where `err`
-- is a table with these fields (docs/ARCHITECTURE.md, "Rules the layers keep"):
--
--   kind       one of errors.KINDS:
--                transport  the request failed on the way (DNS, connect, a dropped connection)
--                timeout    no answer in time; or, from kf:wait_deployed, not deployed in time
--                tls        the TLS handshake or the server's certificate failed
--                http       the server answered an error status
--                auth       401/403, or the token endpoint refused the credentials
--                decode     the answer is not what the call expects (not JSON, not its shape)
--                canceled   the client was closed while the call waited
--                partial    the answer lists items that failed (`failed`, `answer`)
--                job        an orchestrator job failed (kf:wait_deployed: `store`, `job`)
--   status     HTTP status (number) when the server answered
--   code       Keyfactor's ErrorCode ("0xA0110000") when it sent one
--   message    what went wrong, one line, secrets redacted
--   method     "GET", "POST", ...
--   path       the API path, e.g. "/Certificates/42" (no query string)
--   retryable  true when calling again may succeed and is safe
--   sent       (no answer) false when the request provably never reached the server
--   retry_after  seconds the server asked to wait (Retry-After)
--   unprocessed  (an answer) 429 or 503: the server did nothing with the request
--   refused    (an answer) another status below 500: the server refused the
--              request, and the same request will be refused again
--
-- keyfactor.outcome decides kind, retryable, sent and the rest from what the
-- C core reports; the constructors below make the table.
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

--- Every error kind, in the order documented above.
errors.KINDS = { "transport", "timeout", "tls", "http", "auth", "decode", "canceled", "partial", "job" }

local KNOWN = {}
for _, kind in ipairs(errors.KINDS) do KNOWN[kind] = true end

--- Makes an error object from a table of the fields above (`fields` is
-- taken over).  An unknown kind is a mistake in the library: it raises.
function errors.new(fields)
  if not KNOWN[fields.kind] then error("keyfactor.errors.new: unknown kind " .. tostring(fields.kind), 2) end
  fields.retryable = fields.retryable == true
  return setmetatable(fields, Error)
end

-- One constructor per kind: errors.decode{method = ..., path = ..., message = ...}
-- is errors.new with kind "decode".
for _, kind in ipairs(errors.KINDS) do
  errors[kind] = function(fields)
    fields.kind = kind
    return errors.new(fields)
  end
end

--- True when `value` is an error made by this module.
function errors.is(value)
  return getmetatable(value) == Error
end

return errors
