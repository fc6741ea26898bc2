--- Renewal that finishes the job: the one engine behind `keyfactor renew`,
-- `keyfactor.fleet` and the examples.
--
--   local renewal = require "keyfactor.renewal"
--   local plan = renewal.plan(kf, { within = 30 * 86400 })      -- nothing changed yet
--   for _, item in ipairs(plan.items) do print(item.Action) end
--   local report = renewal.run(kf, { within = 30 * 86400, password = entry_password })
--   if not report.Complete then ... end
--
-- For each selected certificate (active, expiring within `within` seconds,
-- optionally narrowed by a query): renew it once, deploy the new certificate
-- into every store the old one is in, under the same alias, replacing it
-- (`Overwrite`), wait, and check with the server (the new certificate's
-- `Locations`, failed jobs in the job history).  A certificate is
-- **complete** when its successor is recorded and (with `deploy`, the
-- default) the old certificate is in no store any more, each of its places
-- taken by the successor under the same alias.  Certificates in no store are
-- complete once renewed.
--
-- Which certificate renews which is a record, never a guess: the old
-- certificate's `RenewalClaim` metadata (keyfactor.fleet.claim, the
-- exactly-once renewal), read back on every run.  So a run picks up where an
-- earlier one stopped (a successor not yet everywhere is deployed, never
-- renewed again; a renewal waiting for approval is finished once approved),
-- and a run after success changes nothing.
--
-- The report (`run`, `finish`) is a table with the API's naming style:
-- `Complete` (bool), `Certificates` (one entry per certificate:
-- `CertificateId`, `IssuedDN`, `NotAfter`, `State` = "complete", "pending",
-- "incomplete" or "failed", `SuccessorId`, `RequestId` (a renewal waiting for
-- approval), `Renewed` (true when this run renewed it), `Reasons` (why it is
-- not complete, in the server's or the job's own words), `RetryAt` (a
-- renewal not started yet, e.g. claimed by another worker: when to try
-- again, seconds on this host's clock), `Stores`: one entry
-- per place `{CertStoreId, Alias, StoreMachine, StorePath, Deployed, Reason}`).
--
-- Answers met on the way: `kf:renew` answers `{KeyfactorId, KeyfactorRequestId,
-- Thumbprint, SerialNumber, RequestDisposition, DispositionMessage}` (the new
-- id at the top level; `KeyfactorId` 0 and `RequestDisposition` "PENDING"
-- while approval is awaited: the certificate comes later with `CertRequestId`
-- = `KeyfactorRequestId`); `Locations` entries are `{CertStoreId, Alias,
-- StoreMachine, StorePath, StoreType, ChainLevel}`, and `kf:deploy` wants
-- `Stores = {{StoreId = loc.CertStoreId, Alias = loc.Alias, Overwrite = true}}`.
-- From cron: `keyfactor renew --expiring 30d --deploy --password-file F`
-- (README, "Renewing certificates").
-- @module keyfactor.renewal

local claim = require "keyfactor.fleet.claim"
local core = require "keyfactor.core"
local query = require "keyfactor.query"
local v = require "keyfactor.api.validate"

local renewal = {}

local FAILED_JOB = 3    -- JobHistory Result: failure

local positive = v.positive

local OPTIONS = v.record {
  within = positive, query = v.string, ids = v.array(v.integer, { min = 1 }), deploy = v.boolean,
  password = v.string, wait = positive, interval = positive, owner = v.nonempty, lease = positive,
  settle = positive, concurrency = v.integer, on_stage = v.callable, now = v.callable,
}

local function check(where, opts)
  opts = v.check(where, OPTIONS, opts or {}, "opts")
  if opts.owner and opts.owner:find("%s") then v.raise(where, "opts.owner must not contain spaces") end
  return opts
end

-- A pcall'd iterator loop: the items, or nil, err (a raised error table).
local function collect(iterator)
  local items = {}
  local ok, err = pcall(function()
    for item in iterator do items[#items + 1] = item end
  end)
  if ok then return items end
  if type(err) == "table" then return nil, err end
  error(err, 0)
end

--- The certificates to renew: `opts.ids`, or every active certificate whose
-- NotAfter is within `opts.within` seconds, narrowed by `opts.query`
-- (Keyfactor query language, ANDed).  Returns an array, or nil, err.
function renewal.select(kf, opts)
  opts = check("keyfactor.renewal.select", opts)
  if opts.ids then
    local out = {}
    for i, id in ipairs(opts.ids) do
      local cert, err = kf:certificate(id)
      if not cert then return nil, err end
      out[i] = cert
    end
    return out
  end
  if not opts.within then v.raise("keyfactor.renewal.select", "opts.within or opts.ids is required") end
  local now = (opts.now or os.time)()
  local q = "NotAfter -le " .. query.time(now + opts.within)
  if opts.query then q = q .. " AND (" .. opts.query .. ")" end
  return collect(kf:certificates { query = q, sort = "Id", ascending = true, page_size = 500 })
end

-- The places {CertStoreId, Alias, StoreMachine, StorePath} of a certificate.
local function places(cert)
  local out = core.array {}
  for _, loc in ipairs(type(cert) == "table" and type(cert.Locations) == "table" and cert.Locations or {}) do
    if type(loc) == "table" and loc.CertStoreId then
      out[#out + 1] = { CertStoreId = tostring(loc.CertStoreId), Alias = loc.Alias,
        StoreMachine = loc.StoreMachine, StorePath = loc.StorePath }
    end
  end
  return out
end

local function key(place) return place.CertStoreId:lower() .. "\0" .. tostring(place.Alias) end

local function where(place)
  return string.format("%s:%s", tostring(place.StoreMachine or "?"), tostring(place.StorePath or place.CertStoreId))
end

-- Arrays are marked (core.array) so that JSON keeps an empty one as [].
local function entry_of(cert)
  return { CertificateId = cert.Id, IssuedDN = cert.IssuedDN, NotAfter = cert.NotAfter, Reasons = core.array {},
    Stores = core.array {}, Renewed = false }
end

--- What a run would do, changing nothing: `{items = {...}}`, one per
-- selected certificate, each `{CertificateId, IssuedDN, NotAfter, Stores,
-- SuccessorId, RequestId, Action}` (Action: one line, e.g. "renew, then
-- deploy to 2 stores"); or nil, err.  `opts` as `run`.
function renewal.plan(kf, opts)
  opts = check("keyfactor.renewal.plan", opts)
  local certs, err = renewal.select(kf, opts)
  if not certs then return nil, err end
  local items = {}
  for _, c in ipairs(certs) do
    local cert, cerr = kf:certificate(c.Id, { includeLocations = true, includeMetadata = true })
    if not cert then return nil, cerr end
    local item = entry_of(cert)
    item.Reasons, item.Renewed = nil, nil
    item.Stores = places(cert)
    local mark = claim.parse(type(cert.Metadata) == "table" and cert.Metadata[claim.FIELD] or nil, cert.Id)
    local n = opts.deploy ~= false and #item.Stores or 0
    local deploy = n > 0 and string.format(", then deploy to %d store%s", n, n == 1 and "" or "s") or ""
    if mark and mark.state == "renewed" then
      item.SuccessorId = mark.new
      item.Action = n > 0 and string.format("deploy renewal %d to %d store%s", mark.new, n, n == 1 and "" or "s")
        or "do nothing (renewed as " .. tostring(mark.new) .. ")"
    elseif mark and mark.state == "pending" then
      item.RequestId = mark.request
      item.Action = string.format("look at renewal request %d (waiting for approval)%s", mark.request, deploy)
    elseif mark and mark.state == "claimed" then
      item.Action = "resolve the claim by " .. tostring(mark.by) .. " (renew only if it renewed nothing)" .. deploy
    else
      item.Action = "renew" .. deploy
    end
    items[#items + 1] = item
  end
  return { items = core.array(items) }
end

-- The server's clock: seconds since the epoch from the Date header of an
-- answer to a cheap GET, or nil.
local function server_time(kf, cert_id)
  local _, _, headers = kf:request("GET", "/Certificates/" .. string.format("%d", cert_id))
  return headers and claim.http_date(headers.date)
end

-- Why the server created no job for `place` (it lists the store in
-- FailedStores without a reason): what the store type says it needs.
local function refusal(kf, place, password)
  local store = kf:store(place.CertStoreId)
  local stype = type(store) == "table" and kf:store_type(store.CertStoreType)
  local options = type(stype) == "table" and stype.PasswordOptions or {}
  if options.EntrySupported == true and (password or "") == "" then
    return string.format("the server created no job: %s stores take an entry password (give --password, "
      .. "--password-file or KEYFACTOR_ENTRY_PASSWORD)", tostring(stype.ShortName))
  end
  return "the server created no job for this store (it is in FailedStores)"
end

--- Renews certificate `cert_id` once (keyfactor.fleet.claim) and schedules
-- its successor into the old certificate's places.  Returns the report
-- entry so far and the places whose jobs were scheduled (for `confirm`).
function renewal.prepare(kf, cert_id, opts)
  opts = check("keyfactor.renewal.prepare", opts)
  local cert, err = kf:certificate(cert_id, { includeLocations = true })
  if not cert then
    local entry = entry_of { Id = cert_id }
    entry.State, entry.Reasons = "failed", core.array { tostring(err) }
    return entry, {}
  end
  local entry = entry_of(cert)
  local result = claim.renew_once(kf, cert_id, { owner = opts.owner or "keyfactor-renew", lease = opts.lease,
    settle = opts.settle, on_stage = opts.on_stage })
  entry.Renewed = result.result == "renewed"
  entry.SuccessorId = result.new_id
  if result.result == "pending" then
    entry.State, entry.RequestId = "pending", result.request_id
    entry.Reasons[1] = string.format("renewal request %s: %s", tostring(result.request_id), tostring(result.reason))
  elseif result.result == "failed" then
    entry.State, entry.Reasons[1] = "failed", "renewal refused: " .. tostring(result.err)
  elseif result.result == "deferred" then
    entry.State, entry.Reasons[1] = "incomplete", "not renewed yet: " .. tostring(result.reason)
    entry.RetryAt = result.retry_at
  end
  for _, place in ipairs(places(cert)) do
    place.Deployed = false
    entry.Stores[#entry.Stores + 1] = place
  end
  if not entry.SuccessorId or opts.deploy == false then
    if entry.SuccessorId then entry.Stores = core.array {} end
    return entry, {}
  end
  -- the places the successor already holds (an earlier run's work)
  local successor, serr = kf:certificate(entry.SuccessorId, { includeLocations = true })
  if not successor then
    entry.State, entry.Reasons[1] = "incomplete", "renewal " .. entry.SuccessorId .. ": " .. tostring(serr)
    return entry, {}
  end
  local held = {}
  for _, place in ipairs(places(successor)) do held[key(place)] = place end
  local targets = {}
  for _, place in ipairs(entry.Stores) do
    if held[key(place)] then place.Deployed = true else targets[#targets + 1] = place end
  end
  -- an earlier run's places, now the successor's (the old one was replaced there)
  local listed = {}
  for _, place in ipairs(entry.Stores) do listed[key(place)] = true end
  for _, place in ipairs(places(successor)) do
    if not listed[key(place)] then
      place.Deployed = true
      entry.Stores[#entry.Stores + 1] = place
    end
  end
  if #targets == 0 then return entry, {} end
  entry.Since = server_time(kf, entry.SuccessorId)
  local stores = {}
  for i, place in ipairs(targets) do
    stores[i] = { StoreId = place.CertStoreId, Alias = place.Alias, Overwrite = true }
  end
  local answer, derr = kf:deploy { CertificateId = entry.SuccessorId, Stores = stores, Password = opts.password }
  answer = answer or (type(derr) == "table" and derr.answer)
  if type(answer) ~= "table" then
    for _, place in ipairs(targets) do place.Reason = "deploy refused: " .. tostring(derr) end
    return entry, {}
  end
  local scheduled = {}
  for _, id in ipairs(answer.SuccessfulStores or {}) do scheduled[tostring(id):lower()] = true end
  local waiting = {}
  for _, place in ipairs(targets) do
    if scheduled[place.CertStoreId:lower()] then
      waiting[#waiting + 1] = place
    else
      place.Reason = refusal(kf, place, opts.password)
    end
  end
  return entry, waiting
end

-- The message of a management job for certificate `cert_id` in `place`
-- that failed since `since` (server time), or nil.
local function failed_job(kf, cert_id, place, since)
  local q = table.concat({ query.clause("CertificateId", "-eq", cert_id),
    query.clause("CertStoreId", "-eq", place.CertStoreId), query.clause("Result", "-eq", FAILED_JOB) }, " AND ")
  if since then q = q .. " AND OperationEnd -ge " .. query.time(since) end
  local jobs = kf:request("GET", "/OrchestratorJobs/JobHistory", { query = { ["pq.queryString"] = q,
    ["pq.returnLimit"] = "1", ["pq.sortField"] = "OperationEnd", ["pq.sortAscending"] = "1" } })
  local job = type(jobs) == "table" and jobs[1]
  if type(job) == "table" and job.Result == FAILED_JOB then return tostring(job.Message or "the job failed") end
end

--- Waits (up to `opts.wait` seconds, 120) until every scheduled place of
-- each entry holds its successor under its alias or its job failed, then
-- settles each entry's State and Reasons.  `pairs_`: array of {entry, waiting}.
function renewal.confirm(kf, pairs_, opts)
  opts = check("keyfactor.renewal.confirm", opts)
  local wait = opts.wait or 120
  local deadline = core.now() + wait
  local interval = opts.interval or 1
  while true do
    local open = 0
    for _, pair in ipairs(pairs_) do
      local entry, waiting = pair[1], pair[2]
      local still = {}
      if #waiting > 0 then
        local successor = kf:certificate(entry.SuccessorId, { includeLocations = true })
        local held = {}
        for _, place in ipairs(places(successor)) do held[key(place)] = true end
        for _, place in ipairs(waiting) do
          if held[key(place)] then
            place.Deployed = true
          else
            local message = failed_job(kf, entry.SuccessorId, place, entry.Since)
            if message then place.Reason = "the job failed: " .. message else still[#still + 1] = place end
          end
        end
      end
      pair[2] = still
      open = open + #still
    end
    if open == 0 or core.now() + interval > deadline then break end
    kf:sleep(interval)
  end
  for _, pair in ipairs(pairs_) do
    local entry = pair[1]
    for _, place in ipairs(pair[2]) do
      place.Reason = string.format("not there after %gs (the job is scheduled; a later run checks again)", wait)
    end
    local missing = 0
    for _, place in ipairs(entry.SuccessorId and entry.Stores or {}) do
      if not place.Deployed then
        missing = missing + 1
        entry.Reasons[#entry.Reasons + 1] = string.format("store %s (%s, alias %s): %s", where(place),
          place.CertStoreId, tostring(place.Alias), tostring(place.Reason or "not deployed"))
      end
    end
    if not entry.State then entry.State = missing == 0 and "complete" or "incomplete" end
    entry.Since = nil
  end
end

--- One certificate, start to end (`prepare` then `confirm`): its report entry.
function renewal.finish(kf, cert_id, opts)
  local entry, waiting = renewal.prepare(kf, cert_id, opts)
  renewal.confirm(kf, { { entry, waiting } }, opts)
  return entry
end

--- Selects, renews, deploys, waits and checks (see the module text).
-- `opts`: within (seconds) or ids; query; deploy (default true); password
-- (the entry password stores such as PEM need); wait (seconds for the jobs,
-- 120); owner, lease, settle (keyfactor.fleet.claim); concurrency (8).
-- Returns the report, or nil, err when the selection failed.
function renewal.run(kf, opts)
  opts = check("keyfactor.renewal.run", opts)
  local certs, err = renewal.select(kf, opts)
  if not certs then return nil, err end
  local prepared, fns = {}, {}
  for i, cert in ipairs(certs) do
    fns[i] = function(client)
      local entry, waiting = renewal.prepare(client, cert.Id, opts)
      prepared[i] = { entry, waiting }
      return true
    end
  end
  if #fns > 0 then
    local _, errs = kf:parallel(fns, { concurrency = opts.concurrency or 8, progress = false })
    for i, cert in ipairs(certs) do
      if not prepared[i] then   -- raised: this certificate only, never the whole run
        local entry = entry_of(cert)
        entry.State, entry.Reasons = "incomplete", core.array { tostring(errs[i]) }
        prepared[i] = { entry, {} }
      end
    end
  end
  renewal.confirm(kf, prepared, opts)
  local report = { Complete = true, Certificates = core.array {} }
  for i, pair in ipairs(prepared) do
    report.Certificates[i] = pair[1]
    if pair[1].State ~= "complete" then report.Complete = false end
  end
  return report
end

--- One line for a report entry: "certificate 25 CN=x: complete, renewed as 28, in 2 of 2 stores"
-- (the subject when known; the stores when there are places to be in:
-- without deploy, or for a certificate in no store, there are none).
function renewal.line(entry)
  local deployed = 0
  for _, place in ipairs(entry.Stores) do
    if place.Deployed then deployed = deployed + 1 end
  end
  local parts = { string.format("certificate %s%s: %s", tostring(entry.CertificateId),
    entry.IssuedDN and " " .. tostring(entry.IssuedDN) or "", entry.State) }
  if entry.SuccessorId then
    parts[#parts + 1] = string.format(", %s %s", entry.Renewed and "renewed as" or "renewal",
      tostring(entry.SuccessorId))
    if #entry.Stores > 0 then
      parts[#parts + 1] = string.format(", in %d of %d store%s", deployed, #entry.Stores,
        #entry.Stores == 1 and "" or "s")
    end
  end
  if #entry.Reasons > 0 then parts[#parts + 1] = ": " .. table.concat(entry.Reasons, "; ") end
  return table.concat(parts)
end

return renewal
