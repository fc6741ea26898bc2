--- The client: one method per Keyfactor Command call (docs/ARCHITECTURE.md).
--
-- Request and response tables use the API's own JSON field names.  Each
-- method checks its arguments first (a mistake raises a Lua error naming the
-- call and the field; nothing is sent), then returns the decoded answer, or
-- `nil, err` for a remote failure (see keyfactor.errors).
-- @module keyfactor.client

local calls = require "keyfactor.calls"
local core = require "keyfactor.core"
local endpoints = require "keyfactor.endpoints"
local errors = require "keyfactor.errors"
local progress = require "keyfactor.progress"
local show = require "keyfactor.show"
local transport = require "keyfactor.transport"
local v = require "keyfactor.validate"

local Client = {}
Client.__index = Client
Client.__name = "keyfactor.client"

-- Guards every method: a dot-call (`kf.status()`, `kf.enroll{...}`) names
-- itself instead of failing on a nil index or a misplaced argument.
local function check_open(self, where)
  if getmetatable(self) ~= Client then
    v.raise(where, "called with '.' instead of ':' (write " .. where .. "(...), not "
      .. where:gsub(":", ".") .. "(...))")
  end
  if self.closed then v.raise(where, "client is closed") end
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

local function bool_param(value)
  if value == nil then return nil end
  return value and "true" or "false"
end

---------------------------------------------------------------------------
-- Calls made from the endpoint table
---------------------------------------------------------------------------

-- Every entry not written by hand below becomes a method.
for _, entry in ipairs(endpoints.list()) do
  if not entry.hand then Client[entry.name] = calls.method(entry, check_open) end
end

---------------------------------------------------------------------------
-- Enrollment
---------------------------------------------------------------------------

local ENROLL = endpoints.get("enroll")

--- Enrolls for a certificate (see endpoints "enroll").
-- With `req.CSR`: POST /Enrollment/CSR (format "PEM" default, or "DER").
-- Otherwise: POST /Enrollment/PFX (format "PFX" default, "Zip", or "STORE"
-- to keep the key on the server for a later `deploy`).  With `req.Stores`
-- (API version 2) the certificate is also deployed to those stores; a store
-- missing from SuccessfulStores makes it `nil, err` with kind "partial".
function Client:enroll(req)
  check_open(self, "kf:enroll")
  local csr = type(req) == "table" and req.CSR ~= nil
  local r = calls.prepare(ENROLL, csr and ENROLL.csr or nil, req)
  local values = r.values
  if not csr then
    local format = values.format or "PFX"
    if format == "PEM" or format == "DER" then
      v.raise("kf:enroll", "format \"" .. format .. "\" is for a CSR enrollment (set CSR)")
    end
    if values.format == nil then r.headers[#r.headers + 1] = "x-certificateformat: PFX" end
    if format ~= "STORE" and (values.Password == nil or values.Password == "") then
      v.raise("kf:enroll", "Password is required for format \"" .. format .. "\"")
    end
    if values.RenewalCertificateId == 0 then
      v.raise("kf:enroll", "RenewalCertificateId must be a certificate id or nil, not 0")
    end
    if values.Stores then
      for _, header in ipairs(ENROLL.stores_headers) do r.headers[#r.headers + 1] = header end
    else
      for _, name in ipairs { "InstallIntoExistingCertificateStores", "JobTime", "ChainOrder" } do
        if values[name] ~= nil then v.raise("kf:enroll", name .. " needs Stores (API version 2)") end
      end
    end
  end
  local enrolled, err = calls.send(self, ENROLL, r, { outcome = values.Stores ~= nil and "stores" or false })
  if not enrolled then return nil, err end
  return normalize_enrollment(enrolled)
end

-- A renewal's answer has the enrollment casing differences too.
local RENEW = endpoints.get("renew")
function Client:renew(req)
  check_open(self, "kf:renew")
  local renewed, err = calls.send(self, RENEW, calls.prepare(RENEW, nil, req))
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

local math_type = math.type   -- Lua 5.3+
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

-- GET returning a JSON object/array, or nil, err (kind "decode" otherwise).
local function get(self, path, shape, query)
  local value, status = self.http:call("GET", path, query and { query = query } or nil)
  if value == nil then return nil, status end
  return calls.shaped(value, shape, "GET", path, status)
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
    -- an integer needs no checking (the common case, kf:parallel's inner loop)
    if math_type == nil or math_type(id) ~= "integer" then id = v.check("kf:certificate", v.integer, id, "id") end
    return show.certificate(get(self, "/Certificates/" .. string.format("%d", id), "object", params or nil))
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
  local found, err = get(self, "/Certificates", "array", params)
  if not found then return nil, err end
  -- ImportDate has one-second resolution: among equal dates the higher Id is newer
  local newest
  for _, cert in ipairs(found) do
    local date, best = tostring(cert.ImportDate), newest and tostring(newest.ImportDate)
    if type(cert) == "table" and (not newest or date > best
        or (date == best and (tonumber(cert.Id) or 0) > (tonumber(newest.Id) or 0))) then
      newest = cert
    end
  end
  if not newest then
    return nil, errors.new { kind = "http", status = 404, method = "GET", path = "/Certificates",
      message = "no certificate matches " .. query }
  end
  return show.certificate(newest)
end

local CERTIFICATES = endpoints.get("certificates")

--- Iterates over certificates: GET /Certificates, one page at a time.
--   for cert in kf:certificates{query = 'IssuedCN -contains "web"'} do ... end
-- `opts`: query (Keyfactor query language), page_size (default 100), sort,
-- ascending, prefetch (fetch the next page while this one is used), includeRevoked, includeExpired, includeLocations,
-- includeMetadata, includeHasPrivateKey, verbose, collectionId.
-- Raises the error table if a page fails (see keyfactor.pager).
function Client:certificates(opts)
  check_open(self, "kf:certificates")
  opts = calls.prepare(CERTIFICATES, nil, opts).values
  if opts.page_size and opts.page_size < 1 then v.raise("kf:certificates", "opts.page_size must be at least 1") end
  local extra = certificate_params(opts)
  extra["pq.includeRevoked"] = bool_param(opts.includeRevoked)
  extra["pq.includeExpired"] = bool_param(opts.includeExpired)
  return show.marking(calls.paged(self, "/Certificates", "pq", opts, extra), show.certificate)
end

---------------------------------------------------------------------------
-- Store types
---------------------------------------------------------------------------

--- One store type: by integer id (GET /CertificateStoreTypes/{id}) or by
-- short name (GET /CertificateStoreTypes/Name/{name}, which answers an
-- array: the single match is returned, none is a 404 error).
function Client:store_type(id)
  check_open(self, "kf:store_type")
  if type(id) == "string" then
    v.check("kf:store_type", v.nonempty, id, "id")
    local path = "/CertificateStoreTypes/Name/" .. transport.escape(id)
    local found, err = get(self, path, "array")
    if not found then return nil, err end
    if type(found[1]) ~= "table" then
      return nil, errors.new { kind = "http", status = 404, method = "GET", path = path,
        message = "no store type named " .. id }
    end
    return found[1]
  end
  id = v.check("kf:store_type", v.integer, id, "id")
  return get(self, "/CertificateStoreTypes/" .. string.format("%d", id), "object")
end

---------------------------------------------------------------------------
-- Deployment confirmation
---------------------------------------------------------------------------

local WAIT_OPTS = v.record { timeout = v.number, interval = v.number, concurrency = v.integer }
local STORE_IDS = v.array(v.guid, { min = 1 })

-- The first failed management job (JobHistory, Result 3) of `cert_id` in
-- one of the stores `missing`: {store, message, job}; nil when none, or when
-- the server cannot tell (a failed history call only means no fast failure).
local FAILED = 3
local function failed_job(self, cert_id, missing)
  for _, store in ipairs(missing) do
    local jobs = self.http:call("GET", "/OrchestratorJobs/JobHistory", { query = {
      ["pq.queryString"] = string.format('CertificateId -eq %d AND CertStoreId -eq "%s" AND Result -eq %d',
        cert_id, store, FAILED),
      ["pq.returnLimit"] = 1,
    } })
    local job = type(jobs) == "table" and jobs[1]
    if type(job) == "table" and job.Result == FAILED then
      return { store = store, message = tostring(job.Message or "job failed"), job = job }
    end
  end
end

-- Polls one certificate until every store in `store_ids` holds it, or a
-- management job for one of them failed.
local function wait_one(self, cert_id, store_ids, deadline, opts)
  local interval = opts.interval or 1
  local path = "/Certificates/" .. string.format("%d", cert_id)
  while true do
    local cert, err = get(self, path, "object", { includeLocations = "true" })
    if not cert then return nil, err end
    local present = {}
    for _, loc in ipairs(type(cert.Locations) == "table" and cert.Locations or {}) do
      if type(loc) == "table" and loc.CertStoreId then present[tostring(loc.CertStoreId):lower()] = true end
    end
    local missing = {}
    for _, id in ipairs(store_ids) do
      if not present[id:lower()] then missing[#missing + 1] = id end
    end
    if #missing == 0 then return true end
    local failed = failed_job(self, cert_id, missing)
    if failed then
      return nil, errors.new { kind = "job", method = "GET", path = "/OrchestratorJobs/JobHistory",
        store = failed.store, job = failed.job, missing = missing,
        cert_id = cert_id, message = failed.message }   -- the job's own message (DESIGN 6.2)
    end
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
  if self.http:current_run() then      -- already inside kf:parallel
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
  return nil, errors.new { kind = first.kind, status = first.status, code = first.code, store = first.store,
    method = "GET", path = "/Certificates", missing = missing,
    message = first.kind == "job" and first.message
      or string.format("%d of %d certificates not deployed; first: %s", failed, #cert_ids, first.message) }
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
  return get(self, "/Status/Endpoints", "array")
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
  -- An array of functions: 1..#fns are functions and nothing else is there
  -- (checked without a path string per item); otherwise the checker says
  -- which item is wrong.
  local fine = type(fns) == "table"
  if fine then
    local n, count = #fns, 0
    for i = 1, n do if type(fns[i]) ~= "function" then fine = false break end end
    for _ in pairs(fns) do count = count + 1 end
    fine = fine and count == n
  end
  if not fine then
    v.check("kf:parallel", v.array(function(fn, path)
      if type(fn) ~= "function" then v.fail(path, "must be a function, not " .. type(fn)) end
      return fn
    end), fns, "fns")
  end
  opts = v.check("kf:parallel", PARALLEL_OPTS, opts or {}, "opts")
  if opts.concurrency and opts.concurrency < 1 then v.raise("kf:parallel", "opts.concurrency must be at least 1") end
  if self.http:current_run() then v.raise("kf:parallel", "cannot be nested inside kf:parallel") end
  return self.http:parallel(fns, {
    concurrency = opts.concurrency, progress = progress.for_option(opts.progress, #fns),
  }, function(i) return self, i end)
end

--- Sets how this client waits for the network: a driver (keyfactor.driver),
-- as `attach(kf)` of keyfactor.cqueues, keyfactor.haproxy and keyfactor.ngx
-- does.  Returns the client.
function Client:set_driver(d)
  check_open(self, "kf:set_driver")
  self.http:set_driver(d)
  return self
end

--- Sleeps `seconds` the way the client waits: through its driver (yielding
-- to the host where it is attached), or, inside a `kf:parallel` function,
-- letting the other functions run meanwhile.
function Client:sleep(seconds)
  check_open(self, "kf:sleep")
  seconds = v.check("kf:sleep", v.number, seconds, "seconds")
  if seconds ~= seconds or seconds < 0 then v.raise("kf:sleep", "seconds must be 0 or more") end
  self.http:sleep(seconds)
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
