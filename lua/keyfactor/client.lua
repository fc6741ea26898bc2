--- The client: one method per Keyfactor Command call (docs/ARCHITECTURE.md).
--
-- Request and response tables use the API's own JSON field names.  Each
-- method checks its arguments first (a mistake raises a Lua error naming the
-- call and the field; nothing is sent), then returns the decoded answer, or
-- `nil, err` for a remote failure (see keyfactor.errors).
-- @module keyfactor.client

local core = require "keyfactor.core"
local errors = require "keyfactor.errors"
local pager = require "keyfactor.pager"
local progress = require "keyfactor.progress"
local scheduler = require "keyfactor.scheduler"
local show = require "keyfactor.show"
local v = require "keyfactor.validate"

local Client = {}
Client.__index = Client
Client.__name = "keyfactor.client"

local function now_iso()
  return os.date("!%Y-%m-%dT%H:%M:%SZ")
end

local function check_open(self, where)
  if self.closed then error(where .. ": client is closed", 3) end
end

-- Only the casing differences known between endpoints are normalised
-- (CSR enrollment answers `KeyfactorID`, older servers `PKCS12Blob`).
local CANONICAL = { keyfactorid = "KeyfactorId", pkcs12blob = "Pkcs12Blob" }

local function normalize(info)
  if type(info) ~= "table" then return info end
  local renames = {}   -- collected first: adding keys while in pairs() is not allowed
  for key in pairs(info) do
    local canonical = type(key) == "string" and CANONICAL[key:lower()]
    if canonical and canonical ~= key then renames[key] = canonical end
  end
  for key, canonical in pairs(renames) do
    if info[canonical] == nil then info[canonical] = info[key] end
    info[key] = nil
  end
  return info
end

local function normalize_enrollment(answer)
  if type(answer) == "table" then normalize(answer.CertificateInformation) end
  return answer
end

-- A call's answer without the transport's extra values (status, headers):
-- the value, or nil and the error.
local function answer(value, err)
  if value == nil then return nil, err end
  return value
end

local function bool_param(value)
  if value == nil then return nil end
  return value and "true" or "false"
end

---------------------------------------------------------------------------
-- Enrollment
---------------------------------------------------------------------------

local SANS = v.map(v.array(v.string))
local METADATA = v.map(function(value, path)
  if type(value) ~= "string" and type(value) ~= "number" and type(value) ~= "boolean" then
    v.fail(path, "must be a string, number or boolean, not " .. type(value))
  end
  return value
end)

local PFX_ENROLL = v.record({
  Template = v.nonempty, CertificateAuthority = v.nonempty, Subject = v.nonempty,
  Password = v.string, Timestamp = v.time, SANs = SANS, Metadata = METADATA,
  AdditionalEnrollmentFields = v.table, IncludeChain = v.boolean,
  RenewalCertificateId = v.integer, CustomFriendlyName = v.string,
  PopulateMissingValuesFromAD = v.boolean,
  format = v.one_of { "PFX", "Zip", "STORE" },
}, { "Template", "Subject" })

local CSR_ENROLL = v.record({
  CSR = v.nonempty, Template = v.nonempty, CertificateAuthority = v.nonempty,
  Timestamp = v.time, SANs = SANS, Metadata = METADATA,
  AdditionalEnrollmentFields = v.table, IncludeChain = v.boolean,
  format = v.one_of { "PEM", "DER" },
}, { "CSR", "Template" })

--- Enrolls for a certificate.
-- With `req.CSR`: POST /Enrollment/CSR (format "PEM" default, or "DER").
-- Otherwise: POST /Enrollment/PFX (format "PFX" default, "Zip", or "STORE"
-- to keep the key on the server for a later `deploy`).  `format` is sent as
-- the x-certificateformat header, not in the body.
function Client:enroll(req)
  check_open(self, "kf:enroll")
  local csr = type(req) == "table" and req.CSR ~= nil
  local body = v.check("kf:enroll", csr and CSR_ENROLL or PFX_ENROLL, req)
  local format = body.format or (csr and "PEM" or "PFX")
  body.format = nil
  if not csr then
    if format ~= "STORE" and (body.Password == nil or body.Password == "") then
      v.raise("kf:enroll", "Password is required for format \"" .. format .. "\"")
    end
    if body.RenewalCertificateId == 0 then
      v.raise("kf:enroll", "RenewalCertificateId must be a certificate id or nil, not 0")
    end
  end
  body.Timestamp = body.Timestamp or now_iso()
  local enrolled, err = self.http:call("POST", csr and "/Enrollment/CSR" or "/Enrollment/PFX", {
    body = body, headers = { "x-certificateformat: " .. format }, secrets = { body.Password },
  })
  if not enrolled then return nil, err end
  return normalize_enrollment(enrolled)
end

local STORE_TARGET = v.record({
  StoreId = v.guid, Alias = v.string, Overwrite = v.boolean, Properties = v.table,
}, { "StoreId" })

local STORE_TYPE_SETTINGS = v.record({
  StoreTypeId = v.integer, Alias = v.string, Overwrite = v.boolean, Properties = v.table,
}, { "StoreTypeId" })

local DEPLOY = v.record {
  Stores = v.array(STORE_TARGET, { min = 1 }),
  StoreIds = v.array(v.guid, { min = 1 }),
  StoreTypes = v.array(STORE_TYPE_SETTINGS),
  Password = v.string, CertificateId = v.integer, RequestId = v.integer, JobTime = v.time,
}

--- Deploys an enrolled certificate into certificate stores:
-- POST /Enrollment/PFX/Deploy.  Needs `Stores` (or the legacy `StoreIds`)
-- and `CertificateId` (or `RequestId`); `JobTime` may be an ISO 8601 UTC
-- string or an `os.time()` number.  Returns `{SuccessfulStores, FailedStores}`.
function Client:deploy(req)
  check_open(self, "kf:deploy")
  local body = v.check("kf:deploy", DEPLOY, req)
  if body.Stores == nil and body.StoreIds == nil then
    v.raise("kf:deploy", "Stores (or the legacy StoreIds) is required")
  end
  if body.CertificateId == nil and body.RequestId == nil then
    v.raise("kf:deploy", "CertificateId or RequestId is required")
  end
  body.Password = body.Password or ""     -- required by the API, "" when unused
  return answer(self.http:call("POST", "/Enrollment/PFX/Deploy", { body = body, secrets = { body.Password } }))
end

local RENEW = v.record {
  CertificateId = v.integer, Thumbprint = v.nonempty, CertificateAuthority = v.nonempty,
  Template = v.nonempty, Timestamp = v.time,
}

--- Renews a certificate (POST /Enrollment/Renew) by `CertificateId` or
-- `Thumbprint`; the new certificate stays on the server for `deploy`.
function Client:renew(req)
  check_open(self, "kf:renew")
  local body = v.check("kf:renew", RENEW, req)
  if body.CertificateId == nil and body.Thumbprint == nil then
    v.raise("kf:renew", "CertificateId or Thumbprint is required")
  end
  body.Timestamp = body.Timestamp or now_iso()
  local renewed, err = self.http:call("POST", "/Enrollment/Renew", { body = body })
  if not renewed then return nil, err end
  return normalize(renewed)
end

---------------------------------------------------------------------------
-- Certificates
---------------------------------------------------------------------------

local CERTIFICATE_OPTS = v.record {
  includeLocations = v.boolean, includeMetadata = v.boolean, includeHasPrivateKey = v.boolean,
  verbose = v.integer, collectionId = v.integer,
}

local LOOKUP_FIELDS = { "Thumbprint", "SerialNumber", "IssuedCN", "IssuedDN", "CertRequestId", "Id" }

local function quoted(value, path)
  if type(value) == "number" then return v.integer(value, path) end
  v.nonempty(value, path)
  if value:find('"', 1, true) then v.fail(path, "must not contain a double quote") end
  return '"' .. value .. '"'
end

local LOOKUP
do
  local fields = {}
  for _, name in ipairs(LOOKUP_FIELDS) do fields[name] = quoted end
  LOOKUP = v.record(fields)
end

local function certificate_params(opts)
  return {
    includeLocations = bool_param(opts.includeLocations),
    includeMetadata = bool_param(opts.includeMetadata),
    includeHasPrivateKey = bool_param(opts.includeHasPrivateKey),
    verbose = opts.verbose, collectionId = opts.collectionId,
  }
end

-- "Thumbprint -eq "AB12" AND SerialNumber -eq "01"", fields in a fixed order.
local function lookup_query(lookup)
  local clauses = {}
  for _, name in ipairs(LOOKUP_FIELDS) do
    if lookup[name] ~= nil then clauses[#clauses + 1] = name .. " -eq " .. lookup[name] end
  end
  return table.concat(clauses, " AND ")
end

--- Reads one certificate: GET /Certificates/{id}.
-- `id` is the certificate id, or a lookup table such as
-- `{Thumbprint = "..."}` or `{SerialNumber = "..."}` resolved through the
-- query language (the newest match by ImportDate wins; none is a 404 error).
-- `opts`: includeLocations, includeMetadata, includeHasPrivateKey, verbose,
-- collectionId.
function Client:certificate(id, opts)
  check_open(self, "kf:certificate")
  local params = opts ~= nil and certificate_params(v.check("kf:certificate", CERTIFICATE_OPTS, opts, "opts"))
  if type(id) ~= "table" then
    id = v.check("kf:certificate", v.integer, id, "id")
    return show.certificate(answer(self.http:call("GET", "/Certificates/" .. string.format("%d", id),
      { query = params or nil })))
  end
  params = params or {}
  local lookup = v.check("kf:certificate", LOOKUP, id, "lookup")
  local query = lookup_query(lookup)
  if query == "" then v.raise("kf:certificate", "lookup needs one of " .. table.concat(LOOKUP_FIELDS, ", ")) end
  params["pq.queryString"] = query
  params["pq.includeRevoked"] = "true"
  params["pq.includeExpired"] = "true"
  params["pq.returnLimit"] = 50
  -- newest first, so the first page holds the newest match however many there are
  params["pq.sortField"] = "ImportDate"
  params["pq.sortAscending"] = 1
  local found, err = self.http:call("GET", "/Certificates", { query = params })
  if not found then return nil, err end
  -- ImportDate has one-second resolution: among equal dates the higher Id is newer
  local newest
  for _, cert in ipairs(found) do
    local date, best = tostring(cert.ImportDate), newest and tostring(newest.ImportDate)
    if not newest or date > best
        or (date == best and (tonumber(cert.Id) or 0) > (tonumber(newest.Id) or 0)) then
      newest = cert
    end
  end
  if not newest then
    return nil, errors.new { kind = "http", status = 404, method = "GET", path = "/Certificates",
      message = "no certificate matches " .. query }
  end
  return show.certificate(newest)
end

local LIST_OPTS = {
  query = v.string, page_size = v.integer, sort = v.nonempty, ascending = v.boolean,
  prefetch = v.boolean,
}

local CERTIFICATES_OPTS
do
  local fields = {
    includeRevoked = v.boolean, includeExpired = v.boolean,
    includeLocations = v.boolean, includeMetadata = v.boolean, includeHasPrivateKey = v.boolean,
    verbose = v.integer, collectionId = v.integer,
  }
  for k, check in pairs(LIST_OPTS) do fields[k] = check end
  CERTIFICATES_OPTS = v.record(fields)
end

local DEFAULT_PAGE_SIZE = 100

local function check_list_opts(where, schema, opts)
  opts = v.check(where, schema, opts or {}, "opts")
  opts.page_size = opts.page_size or DEFAULT_PAGE_SIZE
  if opts.page_size < 1 then v.raise(where, "opts.page_size must be at least 1") end
  return opts
end

-- An iterator over GET `path`, paged with the query-string `prefix`.
local function paged(self, path, prefix, opts, extra)
  local http = self.http
  local function begin(page, start)
    return http:begin("GET", path, { query = pager.params(prefix, opts, page, extra) }, start)
  end
  local function finish(call) return http:finish(call) end
  return pager.iterate(begin, finish, opts.page_size, opts.prefetch and function() http:poke() end)
end

--- Iterates over certificates: GET /Certificates, one page at a time.
--   for cert in kf:certificates{query = 'IssuedCN -contains "web"'} do ... end
-- `opts`: query (Keyfactor query language), page_size (default 100), sort,
-- ascending, prefetch (fetch the next page while this one is used), includeRevoked, includeExpired, includeLocations,
-- includeMetadata, includeHasPrivateKey, verbose, collectionId.
-- Raises the error table if a page fails (see keyfactor.pager).
function Client:certificates(opts)
  check_open(self, "kf:certificates")
  opts = check_list_opts("kf:certificates", CERTIFICATES_OPTS, opts)
  local extra = certificate_params(opts)
  extra["pq.includeRevoked"] = bool_param(opts.includeRevoked)
  extra["pq.includeExpired"] = bool_param(opts.includeExpired)
  return show.marking(paged(self, "/Certificates", "pq", opts, extra), show.certificate)
end

local REVOKE = v.record({
  CertificateIds = v.array(v.integer, { min = 1 }), Reason = v.integer, Comment = v.nonempty,
  EffectiveDate = v.time, CollectionId = v.integer,
}, { "CertificateIds", "Comment" })

--- Revokes certificates: POST /Certificates/Revoke.  `Reason` defaults to
-- 0 (unspecified), `EffectiveDate` to now; `Comment` is required.
function Client:revoke(req)
  check_open(self, "kf:revoke")
  local body = v.check("kf:revoke", REVOKE, req)
  body.Reason = body.Reason or 0
  body.EffectiveDate = body.EffectiveDate or now_iso()
  return answer(self.http:call("POST", "/Certificates/Revoke", { body = body }))
end

---------------------------------------------------------------------------
-- Stores
---------------------------------------------------------------------------

local STORES_OPTS = v.record(LIST_OPTS)

--- Iterates over certificate stores: GET /CertificateStores, paged.
-- `opts`: query (e.g. 'ContainerId -eq 1'), page_size, sort, ascending.
function Client:stores(opts)
  check_open(self, "kf:stores")
  opts = check_list_opts("kf:stores", STORES_OPTS, opts)
  return show.marking(paged(self, "/CertificateStores", "certificateStoreQuery", opts), show.store)
end

--- Reads one store: GET /CertificateStores/{id} (a GUID).
function Client:store(id)
  check_open(self, "kf:store")
  id = v.check("kf:store", v.guid, id, "id")
  return show.store(answer(self.http:call("GET", "/CertificateStores/" .. id)))
end

-- Every page of a short list, as one array; nil, err on failure.
local function all_pages(self, path, prefix)
  local ok, result = pcall(function()
    local all = {}
    for item in paged(self, path, prefix, { page_size = 500 }) do all[#all + 1] = item end
    return all
  end)
  if ok then return result end
  if errors.is(result) then return nil, result end
  error(result, 0)
end

--- All store types: GET /CertificateStoreTypes, as an array.
function Client:store_types()
  check_open(self, "kf:store_types")
  return all_pages(self, "/CertificateStoreTypes", "cstquery")
end

--- All store containers: GET /CertificateStoreContainers, as an array.
function Client:containers()
  check_open(self, "kf:containers")
  return all_pages(self, "/CertificateStoreContainers", "pq")
end

---------------------------------------------------------------------------
-- Workflow
---------------------------------------------------------------------------

local PENDING_OPTS = v.record(LIST_OPTS)

--- Iterates over certificate requests waiting for approval:
-- GET /Workflow/Certificates/Pending, paged.
function Client:pending(opts)
  check_open(self, "kf:pending")
  opts = check_list_opts("kf:pending", PENDING_OPTS, opts)
  return paged(self, "/Workflow/Certificates/Pending", "pagedQuery", opts)
end

local REQUEST_IDS = v.array(v.integer, { min = 1 })

local function request_ids(where, ids)
  if type(ids) ~= "table" then ids = { v.check(where, v.integer, ids, "ids") } end
  return v.check(where, REQUEST_IDS, ids, "ids")
end

--- Approves pending requests: POST /Workflow/Certificates/Approve.
-- `ids`: a request id or an array of them.  Returns {Successes, Failures, Denials}.
function Client:approve(ids)
  check_open(self, "kf:approve")
  ids = request_ids("kf:approve", ids)
  return answer(self.http:call("POST", "/Workflow/Certificates/Approve", { body = ids }))
end

--- Denies pending requests: POST /Workflow/Certificates/Deny.
function Client:deny(ids, comment)
  check_open(self, "kf:deny")
  ids = request_ids("kf:deny", ids)
  comment = v.check("kf:deny", v.nonempty, comment, "comment")
  return answer(self.http:call("POST", "/Workflow/Certificates/Deny", {
    body = { Comment = comment, CertificateRequestIds = ids },
  }))
end

---------------------------------------------------------------------------
-- Deployment confirmation
---------------------------------------------------------------------------

local WAIT_OPTS = v.record { timeout = v.number, interval = v.number, concurrency = v.integer }
local STORE_IDS = v.array(v.guid, { min = 1 })

-- Polls one certificate until every store in `store_ids` holds it.
local function wait_one(self, cert_id, store_ids, deadline, opts)
  local interval = opts.interval or 1
  local path = "/Certificates/" .. string.format("%d", cert_id)
  while true do
    local cert, err = self.http:call("GET", path, { query = { includeLocations = "true" } })
    if not cert then return nil, err end
    local present = {}
    for _, loc in ipairs(cert.Locations or {}) do
      if loc.CertStoreId then present[tostring(loc.CertStoreId):lower()] = true end
    end
    local missing = {}
    for _, id in ipairs(store_ids) do
      if not present[id:lower()] then missing[#missing + 1] = id end
    end
    if #missing == 0 then return true end
    if core.now() + interval > deadline then
      return nil, errors.new { kind = "timeout", method = "GET", path = path, missing = missing,
        message = string.format("certificate %d not in %d of %d stores after %gs: %s",
          cert_id, #missing, #store_ids, opts.timeout or 60, table.concat(missing, ", ")) }
    end
    self.http:sleep(interval)
  end
end

-- Many certificates at once, over the parallel scheduler.
local function wait_many(self, cert_ids, store_ids, deadline, opts)
  local fns = {}
  local shared = type(store_ids[1]) == "string"   -- one array for every certificate
  for i, cert_id in ipairs(cert_ids) do
    local stores = shared and store_ids or store_ids[cert_id]
    stores = v.check("kf:wait_deployed", STORE_IDS, stores, "store_ids[" .. cert_id .. "]")
    fns[i] = function() return wait_one(self, cert_id, stores, deadline, opts) end
  end
  local _, errs
  if scheduler.current(self.session) then      -- already inside kf:parallel
    errs = {}
    for i, fn in ipairs(fns) do errs[i] = select(2, fn()) end
  else
    _, errs = self.http:parallel(fns, { concurrency = opts.concurrency or 16 },
      function() return self end)
  end
  local missing, first, failed = {}, nil, 0
  for i, cert_id in ipairs(cert_ids) do
    local err = errs[i]
    if err ~= nil then
      failed = failed + 1
      first = first or err
      if type(err) == "table" and err.missing then missing[cert_id] = err.missing end
    end
  end
  if failed == 0 then return true end
  if not errors.is(first) then error(first, 0) end
  return nil, errors.new { kind = first.kind, status = first.status, code = first.code,
    method = "GET", path = "/Certificates", missing = missing,
    message = string.format("%d of %d certificates not deployed; first: %s", failed, #cert_ids, first.message) }
end

--- Waits until certificates are inventoried in their stores (polling
-- GET /Certificates/{id}?includeLocations=true).
--   kf:wait_deployed(42, {store1, store2}, {timeout = 120})
--   kf:wait_deployed({42, 43}, {store1})              -- the same stores for each
--   kf:wait_deployed({42, 43}, {[42] = {s1}, [43] = {s2}})
-- Several certificates are polled concurrently (one multi handle).
-- `opts.timeout` (seconds, default 60), `opts.interval` (default 1).
-- Returns true, or nil, err: kind "timeout" with `err.missing` = the store
-- ids still without the certificate (for several: cert id -> store ids).
function Client:wait_deployed(cert_id, store_ids, opts)
  check_open(self, "kf:wait_deployed")
  opts = v.check("kf:wait_deployed", WAIT_OPTS, opts or {}, "opts")
  local deadline = core.now() + (opts.timeout or 60)
  if type(store_ids) == "string" then store_ids = { store_ids } end
  if type(cert_id) == "table" then
    local ids = v.check("kf:wait_deployed", v.array(v.integer, { min = 1 }), cert_id, "cert_id")
    if type(store_ids) ~= "table" then v.raise("kf:wait_deployed", "store_ids must be a table") end
    return wait_many(self, ids, store_ids, deadline, opts)
  end
  cert_id = v.check("kf:wait_deployed", v.integer, cert_id, "cert_id")
  store_ids = v.check("kf:wait_deployed", STORE_IDS, store_ids, "store_ids")
  return wait_one(self, cert_id, store_ids, deadline, opts)
end

---------------------------------------------------------------------------
-- Anything else, parallel fan-out, lifetime
---------------------------------------------------------------------------

local REQUEST_OPTS = v.record {
  query = function(value, path)
    if type(value) ~= "table" and type(value) ~= "string" then
      v.fail(path, "must be a table or a string, not " .. type(value))
    end
    return value
  end,
  body = function(value, path)
    if type(value) ~= "table" and type(value) ~= "string" then
      v.fail(path, "must be a table or a string, not " .. type(value))
    end
    return value
  end,
  headers = v.map(v.string),
  raw = v.boolean,
}

--- Calls any endpoint: `kf:request("GET", "/Templates", {query = {...}})`.
-- `path` is relative to the base URL.  `opts`: query (table or string),
-- body (table -> JSON, or string), headers (name -> value), raw (the body
-- undecoded).  Returns the decoded body, status, headers; or nil, err.
function Client:request(method, path, opts)
  check_open(self, "kf:request")
  method = v.check("kf:request", v.nonempty, method, "method"):upper()
  path = v.check("kf:request", v.nonempty, path, "path")
  if path:sub(1, 1) ~= "/" then v.raise("kf:request", "path must start with \"/\"") end
  opts = v.check("kf:request", REQUEST_OPTS, opts or {}, "opts")
  local headers
  if opts.headers then
    headers = {}
    for name, value in pairs(opts.headers) do headers[#headers + 1] = name .. ": " .. value end
  end
  return self.http:call(method, path, { query = opts.query, body = opts.body, headers = headers,
    raw = opts.raw, headers_wanted = true })
end

--- Login check: GET /Status/Endpoints; returns the array of endpoints.
function Client:status()
  check_open(self, "kf:status")
  return answer(self.http:call("GET", "/Status/Endpoints"))
end

local PARALLEL_OPTS = v.record {
  concurrency = v.integer,
  progress = function(value, path)
    if type(value) ~= "boolean" and type(value) ~= "function" then
      v.fail(path, "must be a boolean or a function, not " .. type(value))
    end
    return value
  end,
}

--- Runs the functions of `fns` concurrently over one curl multi handle.
-- Each `fns[i](kf, i)` runs in a coroutine and uses ordinary `kf:` calls.
-- `opts.concurrency` bounds the transfers open at once (default 16).
-- `opts.progress`: a live line on stderr when it is a terminal (default),
-- false for none, true to force it, or a function(done, total, failed).
-- Returns values, errors: `values[i]` is what fns[i] returned first,
-- `errors[i]` its error (a returned `nil, err` or a raised error).
function Client:parallel(fns, opts)
  check_open(self, "kf:parallel")
  v.check("kf:parallel", v.array(function(fn, path)
    if type(fn) ~= "function" then v.fail(path, "must be a function, not " .. type(fn)) end
    return fn
  end), fns, "fns")
  opts = v.check("kf:parallel", PARALLEL_OPTS, opts or {}, "opts")
  if opts.concurrency and opts.concurrency < 1 then v.raise("kf:parallel", "opts.concurrency must be at least 1") end
  if scheduler.current(self.session) then v.raise("kf:parallel", "cannot be nested inside kf:parallel") end
  return self.http:parallel(fns, {
    concurrency = opts.concurrency, progress = progress.for_option(opts.progress, #fns),
  }, function(i) return self, i end)
end

--- Releases the connection pool and every curl handle.  Calls on a closed
-- client raise an error.  Also `__close` (Lua 5.4 `<close>` variables).
function Client:close()
  if not self.closed then
    self.closed = true
    self.session:close()
  end
end
Client.__close = Client.close

function Client:__tostring()
  return string.format("keyfactor.client(%s, %s auth%s)", self.url, self.auth.mode,
    self.closed and ", closed" or "")
end

return Client
