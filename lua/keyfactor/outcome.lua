--- What a finished call means: the error kind, whether calling again is
-- safe and may succeed, and which answers are failures all the same.
--
-- The C core reports facts (see `request:result()`): for an answer, its
-- status; for no answer, a failure record `{code, message, sent, replayed,
-- refused, limit}`.  This module is the one place that turns those facts into
-- the error fields of keyfactor.errors and the retry rules:
--
-- * A request that never reached the server (nothing sent: DNS, connect,
--   TLS handshake; or a refused HTTP/2 stream, never processed) may be sent
--   again, whatever its method.
-- * One that may have reached it is sent again only when its method is
--   idempotent (GET, HEAD, PUT, DELETE, OPTIONS) and the failure is of the
--   connection, not a timeout of the answer.
-- * An answer that can never succeed (over the size limits, a TLS
--   verification failure, a canceled call) is never retried.
-- * Statuses 429/502/503/504 are retried for idempotent methods only,
--   honouring Retry-After: a POST that reached the server is never sent
--   again (the error carries `retry_after` for a caller that knows better).
-- * An answer that lists items that failed (a deploy's FailedStores, an
--   approval's Failures) is a failure of kind "partial" (outcome.partial).
-- @module keyfactor.outcome

local errors = require "keyfactor.errors"

local outcome = {}

local IDEMPOTENT = { GET = true, HEAD = true, PUT = true, DELETE = true, OPTIONS = true }

--- True for methods that may be sent twice with the effect of once.
function outcome.idempotent(method)
  return IDEMPOTENT[method] == true
end

local KIND = {
  CURLE_OPERATION_TIMEDOUT = "timeout",
  CURLE_SSL_CONNECT_ERROR = "tls", CURLE_PEER_FAILED_VERIFICATION = "tls",
  CURLE_SSL_CERTPROBLEM = "tls", CURLE_SSL_CIPHER = "tls", CURLE_SSL_CACERT_BADFILE = "tls",
  CURLE_SSL_ENGINE_NOTFOUND = "tls", CURLE_SSL_ISSUER_ERROR = "tls",
  CURLE_SSL_PINNEDPUBKEYNOTMATCH = "tls", CURLE_SSL_INVALIDCERTSTATUS = "tls",
  CURLE_SSL_CRL_BADFILE = "tls", CURLE_SSL_CLIENTCERT = "tls",
  canceled = "canceled",
}

-- What a user can do about a TLS trust failure, appended to curl's words.
local HINT = {
  CURLE_PEER_FAILED_VERIFICATION = " (to trust the server's CA, set ca_file or KEYFACTOR_CA_CERT)",
  CURLE_SSL_CACERT_BADFILE = " (check ca_file or KEYFACTOR_CA_CERT: the CA file cannot be read)",
}

--- The error fields for a transfer of `method` that got no answer.
-- `record` is the failure record of `request:result()`.  Returns a table
-- with kind, message, retryable, retry_now (retry without backing off: a
-- kept-alive connection the server had closed), sent, curl (the code name),
-- curl_code (libcurl's number for it).
function outcome.failure(method, record)
  local code = record.code
  local kind = KIND[code] or "transport"
  -- a refused HTTP/2 stream (REFUSED_STREAM, or above a GOAWAY's last
  -- stream id) was never processed (RFC 9113 §8.7)
  local sent = record.sent and not record.refused
  local retryable
  if kind == "canceled" or kind == "tls" or record.limit then
    retryable = false
  elseif not sent then
    retryable = true
  else
    retryable = kind == "transport" and IDEMPOTENT[method] == true
  end
  return {
    kind = kind, message = record.message .. (HINT[code] or ""), sent = sent, curl = code,
    curl_code = record.curl_code,
    retryable = retryable, retry_now = retryable and record.replayed == true,
  }
end

local RETRYABLE_STATUS = { [429] = true, [502] = true, [503] = true, [504] = true }

-- Answers that say the server did nothing with the request and asks for it
-- later (Too Many Requests, Service Unavailable).
local UNPROCESSED = { [429] = true, [503] = true }

--- The error kind and retryability of an HTTP status that is not a success
-- (nil for 2xx); then whether the server did nothing with the request
-- (`unprocessed`: 429, 503) and whether it refused it for good (`refused`:
-- any other status below 500).
function outcome.status(method, status)
  if status >= 200 and status < 300 then return nil end
  local retryable = RETRYABLE_STATUS[status] == true and IDEMPOTENT[method] == true
  local unprocessed = UNPROCESSED[status] == true
  return (status == 401 or status == 403) and "auth" or "http", retryable, unprocessed,
    status < 500 and not unprocessed
end

local BACKOFF_BASE, BACKOFF_MAX, RETRY_AFTER_MAX = 0.25, 8, 60

--- Seconds to wait before retry number `attempt` (1-based) after `err`:
-- nothing for a stale connection, the server's Retry-After (at most 60 s),
-- else jittered exponential backoff (at most 8 s).
function outcome.delay(attempt, err, random)
  if err.retry_now then return 0 end
  if err.retry_after then return math.min(err.retry_after, RETRY_AFTER_MAX) end
  local ceiling = math.min(BACKOFF_MAX, BACKOFF_BASE * 2 ^ (attempt - 1))
  return ceiling * (0.5 + (random or math.random)() * 0.5)
end

--- Seconds from a Retry-After header value (delta-seconds), or nil.
function outcome.retry_after(value)
  local seconds = value and tonumber(value)
  if seconds and seconds >= 0 and seconds < math.huge then return seconds end
  return nil
end

local function lower_set(list)
  local set = {}
  for _, item in ipairs(type(list) == "table" and list or {}) do set[tostring(item):lower()] = true end
  return set
end

local function partial(method, path, answer, failed, what)
  return nil, errors.partial { method = method, path = path, failed = failed, answer = answer,
    message = string.format("%d %s failed: %s", #failed, what, table.concat(failed, ", ")) }
end

-- An answer (2xx) that lists items that failed is a failure of kind
-- "partial": the rules by the name an endpoint entry gives in `partial`.
local PARTIAL = {}

-- The stores asked for (Stores[i].StoreId or StoreIds) must all be in
-- SuccessfulStores; FailedStores must be empty.
function PARTIAL.stores(answer, values, method, path)
  local failed, seen = {}, {}
  for _, id in ipairs(type(answer.FailedStores) == "table" and answer.FailedStores or {}) do
    local text = type(id) == "table" and tostring(id.StoreId or id.Id or id.CertStoreId) or tostring(id)
    failed[#failed + 1] = text
    seen[text:lower()] = true
  end
  local requested = {}
  for _, store in ipairs(values.Stores or {}) do requested[#requested + 1] = store.StoreId end
  for _, id in ipairs(values.StoreIds or {}) do requested[#requested + 1] = id end
  if #requested > 0 then
    local ok = lower_set(answer.SuccessfulStores)
    for _, id in ipairs(requested) do
      if not ok[id:lower()] and not seen[id:lower()] then failed[#failed + 1] = id end
    end
  end
  if #failed > 0 then return partial(method, path, answer, failed, "of the stores") end
  return answer
end

-- Approve / deny: Failures lists the requests that were not done.
function PARTIAL.approval(answer, _, method, path)
  local failed = {}
  for _, item in ipairs(type(answer.Failures) == "table" and answer.Failures or {}) do
    failed[#failed + 1] = type(item) == "table" and (item.KeyfactorRequestId or item.CARowId) or item
  end
  if #failed > 0 then
    local texts = {}
    for i, id in ipairs(failed) do texts[i] = tostring(id) end
    local _, err = partial(method, path, answer, texts, "of the requests")
    err.failed = failed
    local first = answer.Failures[1]
    if type(first) == "table" and first.Comment then
      err.message = err.message .. " (" .. tostring(first.Comment) .. ")"
    end
    return nil, err
  end
  return answer
end

--- The answer, or nil and an error of kind "partial" when it lists items
-- that failed, by the rule named `rule` ("stores", "approval"); `values` are
-- the call's checked arguments (the stores asked for).
function outcome.partial(rule, answer, values, method, path)
  return PARTIAL[rule](answer, values, method, path)
end

return outcome
