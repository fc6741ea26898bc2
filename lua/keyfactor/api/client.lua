--- The client: one method per Keyfactor Command call (docs/ARCHITECTURE.md).
--
-- Request and response tables use the API's own JSON field names.  Each
-- method checks its arguments first (a mistake raises a Lua error naming the
-- call and the field; nothing is sent), then returns the decoded answer, or
-- `nil, err` for a remote failure (see keyfactor.errors).
-- @module keyfactor.api.client

local calls = require "keyfactor.api.calls"
local core = require "keyfactor.core"
local endpoints = require "keyfactor.api.endpoints"
local errors = require "keyfactor.errors"
local progress = require "keyfactor.parallel.progress"
local query_language = require "keyfactor.query"
local show = require "keyfactor.show"
local transport = require "keyfactor.http.transport"
local v = require "keyfactor.api.validate"

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

-- GET returning a JSON object/array, or nil, err (kind "decode" otherwise).
local function get(self, path, shape, query)
  local value, status = self.http:call("GET", path, query and { query = query } or nil)
  if value == nil then return nil, status end
  return calls.shaped(value, shape, "GET", path, status)
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

-- The id of the enrollment pattern named `name` (GET /EnrollmentPatterns,
-- QueryString Name -eq): nil, err (kind "http", status 404) when none is.
local function pattern_id(self, name)
  if type(name) == "number" then return name end
  local found, err = get(self, "/EnrollmentPatterns", "array",
    { QueryString = query_language.clause("Name", "-eq", name), ReturnLimit = 50 })
  if not found then return nil, err end
  for _, pattern in ipairs(found) do
    -- the query language compares case-insensitively; the exact name wins
    if type(pattern) == "table" and pattern.Name == name then return pattern.Id end
  end
  local only = #found == 1 and type(found[1]) == "table" and found[1]
  if only and type(only.Name) == "string" and only.Name:lower() == name:lower() then return only.Id end
  return nil, errors.http { status = 404, method = "GET", path = "/EnrollmentPatterns",
    message = "no enrollment pattern named " .. name }
end

--- Enrolls for a certificate (see endpoints "enroll").
-- With `req.CSR`: POST /Enrollment/CSR (format "PEM" default, or "DER").
-- Otherwise: POST /Enrollment/PFX (format "PFX" default, "Zip", "PEM",
-- "JKS", or "STORE" to keep the key on the server for a later `deploy`).
-- The template comes from `EnrollmentPatternId`, `EnrollmentPattern` (a
-- pattern's name, looked up first) or `Template`.  With `req.Stores` (API
-- version 2) the certificate is also deployed to those stores; a store
-- missing from SuccessfulStores makes it `nil, err` with kind "partial".
function Client:enroll(req)
  check_open(self, "kf:enroll")
  local csr = type(req) == "table" and req.CSR ~= nil
  local r = calls.prepare(ENROLL, csr and ENROLL.csr or nil, req)
  local values = r.values
  if values.EnrollmentPattern ~= nil then
    local id, err = pattern_id(self, values.EnrollmentPattern)
    if not id then return nil, err end
    r.body.EnrollmentPatternId = id
  end
  if values.Stores then
    for _, header in ipairs(ENROLL.stores_headers) do r.headers[#r.headers + 1] = header end
  end
  local enrolled, err = calls.send(self, ENROLL, r, { partial = values.Stores ~= nil and "stores" or false })
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

local CERTIFICATE = endpoints.get("certificate")
local LOOKUP_FIELDS = endpoints.LOOKUP_FIELDS

local math_type = math.type   -- Lua 5.3+

-- "Thumbprint -eq "AB12" AND SerialNumber -eq "01"", fields in a fixed order
-- (the lookup's values come quoted from the entry's check).
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
  if opts == nil and math_type and math_type(id) == "integer" then
    -- an integer id and no options: nothing to check (kf:parallel's inner loop)
    return show.certificate(get(self, "/Certificates/" .. id, "object"))
  end
  local r = calls.prepare(CERTIFICATE, nil, id, opts)
  if type(r.values.id) ~= "table" then
    return show.certificate(get(self, r.path, "object", r.query))
  end
  local params = r.query or {}
  local query = lookup_query(r.values.id)      -- not empty: the entry's rule
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
    return nil, errors.http { status = 404, method = "GET", path = "/Certificates",
      message = "no certificate matches " .. query }
  end
  return show.certificate(newest)
end

---------------------------------------------------------------------------
-- Store types
---------------------------------------------------------------------------

local STORE_TYPE = endpoints.get("store_type")

--- One store type: by integer id (GET /CertificateStoreTypes/{id}) or by
-- short name (GET /CertificateStoreTypes/Name/{name}, which answers an
-- array: the single match is returned, none is a 404 error).
function Client:store_type(id)
  check_open(self, "kf:store_type")
  local r = calls.prepare(STORE_TYPE, nil, id)
  if type(r.values.id) == "number" then return calls.send(self, STORE_TYPE, r) end
  local path = "/CertificateStoreTypes/Name/" .. transport.escape(id)
  local found, err = get(self, path, "array")
  if not found then return nil, err end
  if type(found[1]) ~= "table" then
    return nil, errors.http { status = 404, method = "GET", path = path,
      message = "no store type named " .. id }
  end
  return found[1]
end

---------------------------------------------------------------------------
-- Deployment confirmation
---------------------------------------------------------------------------

local WAIT_DEPLOYED = endpoints.get("wait_deployed")

-- The first failed management job (JobHistory, Result 3) of `cert_id` in
-- one of the stores `missing`: {store, message, job}; nil when none, or when
-- the server cannot tell (a failed history call only means no fast failure).
local FAILED = 3
local function failed_job(self, cert_id, missing)
  for _, store in ipairs(missing) do
    local jobs = self.http:call("GET", "/OrchestratorJobs/JobHistory", { query = {
      ["pq.queryString"] = table.concat({ query_language.clause("CertificateId", "-eq", cert_id),
        query_language.clause("CertStoreId", "-eq", store), query_language.clause("Result", "-eq", FAILED) }, " AND "),
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
      return nil, errors.job { method = "GET", path = "/OrchestratorJobs/JobHistory",
        store = failed.store, job = failed.job, missing = missing,
        cert_id = cert_id, message = failed.message }   -- the job's own words say what went wrong
    end
    if core.now() + interval > deadline then
      return nil, errors.timeout { method = "GET", path = path, missing = missing,
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
    local stores = shared and store_ids or store_ids[cert_id]   -- each present: the entry's rule
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
  local values = calls.prepare(WAIT_DEPLOYED, nil, cert_id, store_ids, opts).values
  local deadline = core.now() + (values.timeout or 60)
  if type(values.cert_id) == "table" then
    return wait_many(self, values.cert_id, values.store_ids, deadline, values)
  end
  return wait_one(self, values.cert_id, values.store_ids, deadline, values)
end

---------------------------------------------------------------------------
-- Anything else, parallel fan-out, lifetime
---------------------------------------------------------------------------

local REQUEST = endpoints.get("request")

--- Calls any endpoint: `kf:request("GET", "/Templates", {query = {...}})`.
-- `path` is relative to the base URL.  `opts`: query (table or string),
-- body (table -> JSON, or string), headers (name -> value), raw (the body
-- undecoded).  Returns the decoded body, status, headers; or nil, err.
function Client:request(method, path, opts)
  check_open(self, "kf:request")
  local values = calls.prepare(REQUEST, nil, method, path, opts).values
  method, path, opts = values.method, values.path, values
  local headers
  if opts.headers then
    headers = {}
    for name, value in pairs(opts.headers) do headers[#headers + 1] = name .. ": " .. value end
  end
  return self.http:call(method, path, { query = opts.query, body = opts.body, headers = headers,
    raw = opts.raw, headers_wanted = true })
end

local PARALLEL = endpoints.get("parallel")

--- Runs the functions of `fns` concurrently over one curl multi handle.
-- Each `fns[i](kf, i)` runs in a coroutine and uses ordinary `kf:` calls.
-- `opts.concurrency` bounds the transfers open at once (default 16).
-- `opts.progress`: a live line on stderr when it is a terminal (default),
-- false for none, true to force it, or a function(done, total, failed).
-- Returns values, errors: `values[i]` is what fns[i] returned first,
-- `errors[i]` its error (a returned `nil, err` or a raised error).
function Client:parallel(fns, opts)
  check_open(self, "kf:parallel")
  opts = calls.prepare(PARALLEL, nil, fns, opts).values
  if self.http:current_run() then v.raise("kf:parallel", "cannot be nested inside kf:parallel") end
  return self.http:parallel(fns, {
    concurrency = opts.concurrency, progress = progress.for_option(opts.progress, #fns),
  }, function(i) return self, i end)
end

--- Sets how this client waits for the network: a driver (keyfactor.driver),
-- as `attach(kf)` of keyfactor.cqueues, keyfactor.haproxy and keyfactor.ngx
-- does.  Returns the client.
function Client:set_driver(driver)
  check_open(self, "kf:set_driver")
  self.http:set_driver(driver)
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
-- client raise an error; calls that were waiting (in other coroutines of an
-- event loop, in kf:parallel) return `nil, err` of kind "canceled", and the
-- host's loop goes on.  Also `__close` (Lua 5.4 `<close>` variables).
function Client:close()
  if not self.closed then
    self.closed = true
    self.http:close()
  end
end
Client.__close = Client.close

function Client:__tostring()
  return string.format("keyfactor.client(%s, %s auth%s)", self.url, self.auth.mode,
    self.closed and ", closed" or "")
end

return Client
