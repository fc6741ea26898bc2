-- Management jobs: POST /Enrollment/PFX/Deploy, /Enrollment/PFX/Replace,
-- /CertificateStores/Certificates/Add and /Remove create jobs; a job becomes
-- due at max(now, JobTime) + job_delay and then completes and "inventories"
-- its store, which is what makes the certificate show up in Locations.
-- Jobs are processed lazily before every request, which keeps it deterministic.
-- Every finished job is in GET /OrchestratorJobs/JobHistory; a job on the
-- machine state.BROKEN_MACHINE always fails (Result 3, with a message).
local util = require "keyfactor.sandbox.util"
local state = require "keyfactor.sandbox.state"
local check = require "keyfactor.sandbox.check"
local auth = require "keyfactor.sandbox.auth"
local stores = require "keyfactor.sandbox.stores"
local certificates = require "keyfactor.sandbox.certificates"
local agents = require "keyfactor.sandbox.agents"

local jobs = {}

-- Field kinds of the request bodies (check.lua checks every one present).
local a, o = check.array_of, check.object_of
local SCHEDULE = o{ Immediate = "bool", Interval = o{ Minutes = "int" }, Daily = o{ Time = "date" },
  Weekly = o{ Days = a("int"), Time = "date" }, Monthly = o{ Day = "int", Time = "date" },
  ExactlyOnce = o{ Time = "date" } }
local DEPLOY_FIELDS = {
  Stores = a(o{ StoreId = "string", Alias = "string", Overwrite = "bool", Properties = "object" }),
  Password = "string", CertificateId = "int", RequestId = "int", JobTime = "date",
  StoreIds = a("string"), StoreTypes = a(o{ StoreTypeId = "int", Alias = "string", Overwrite = "bool" }),
}
local REPLACE_FIELDS = { ExistingCertificateId = "int", CertificateId = "int", RequestId = "int",
  Password = "string", JobTime = "date" }
local ADD_FIELDS = { CertificateId = "int", Schedule = SCHEDULE, CollectionId = "int",
  CertificateStores = a(o{ CertificateStoreId = "string", Alias = "string", Overwrite = "bool",
    EntryPassword = o{ SecretValue = "string", Parameters = "object", Provider = "int" },
    PfxPassword = "string", IncludePrivateKey = "bool", JobFields = "object" }) }
local REMOVE_FIELDS = { CertificateId = "int", Alias = "string", Schedule = SCHEDULE, CollectionId = "int",
  CertificateStores = a(o{ CertificateStoreId = "string", Alias = "string", JobFields = "object" }) }

local function job_guid(n)
  return string.format("7c0b0b5e-0000-4000-8000-%012d", n)
end

-- Why a job for `cert` on `store` cannot be created, or nil when it can.
local function refusal(sandbox, user, cert, store, password, needs_key)
  if not store then return "unknown store" end
  if not auth.may_schedule(user,
    store.ContainerName) then return "no permission on container " .. store.ContainerName end
  local t = stores.type_by_id(store.CertStoreType, sandbox)
  if needs_key and t and t.PasswordOptions.EntrySupported and (password or "") == "" then
    return "an entry password is required for " .. t.ShortName .. " stores"
  end
  if needs_key and not cert.key_pem then return "the private key is not retained on the server" end
  return nil
end

local function add_job(sandbox, fields, run_at)
  local s = sandbox.state
  fields.id = job_guid(s.next_job)
  s.next_job = s.next_job + 1
  fields.status = "pending"
  fields.created = util.now()
  fields.run_at = run_at
  fields.due = math.max(util.now(), run_at or 0) + sandbox.opts.job_delay
  s.jobs[#s.jobs + 1] = fields
  return fields
end
jobs.add = add_job

local function complete(sandbox, job)
  local store = state.store_by_id(sandbox.state, job.store_id)
  if not store then
    job.message = "The certificate store " .. job.store_id .. " no longer exists"
    return "failed"
  end
  job.machine, job.store_path = store.ClientMachine, store.StorePath
  local agent = agents.find(store.AgentId)
  if agent and agents.status(sandbox, agent.AgentId) ~= agents.APPROVED then
    job.message = string.format("The orchestrator %s of %s is not approved", agent.AgentId, store.ClientMachine)
    return "failed"
  end
  if store.ClientMachine == state.BROKEN_MACHINE then
    job.message = string.format("Unable to reach %s: the orchestrator could not connect to the store %s "
      .. "(connection refused)", store.ClientMachine, store.StorePath)
    return "failed"
  end
  local inventory = store.inventory
  for i, item in ipairs(inventory) do
    if item.alias == job.alias then
      if job.kind == "remove" then
        table.remove(inventory, i)
        return "completed"
      end
      if item.cert_id ~= job.cert_id and not job.overwrite then
        job.message = "alias " .. job.alias .. " already exists and Overwrite was not set"
        return "failed"
      end
      item.cert_id = job.cert_id
      return "completed"
    end
  end
  if job.kind == "remove" then return "completed" end
  local s = sandbox.state
  inventory[#inventory + 1] = { alias = job.alias, cert_id = job.cert_id, item_id = s.next_item }
  s.next_item = s.next_item + 1
  return "completed"
end

-- Runs every job whose time has come. Called before each request is handled.
-- Completes the jobs that are due; returns how many (the server persists then).
function jobs.process(sandbox)
  local now, done = util.now(), 0
  for _, job in ipairs(sandbox.state.jobs) do
    if job.status == "pending" and job.due <= now then
      job.status = complete(sandbox, job)
      job.finished = now
      done = done + 1
    end
  end
  return done
end

---------------------------------------------------------------- Deploy
-- Targets from `Stores`, or from the legacy `StoreIds` + `StoreTypes`
-- (their kinds checked by check.body with DEPLOY_FIELDS).
local function deploy_targets(sandbox, body)
  local list = check.array(body, "Stores", false)
  local targets = {}
  if list then
    for i, entry in ipairs(list) do
      targets[i] = {
        id = check.string(entry, "StoreId", true, string.format("Stores[%d].StoreId", i)),
        alias = entry.Alias ~= util.null and entry.Alias or nil,
        overwrite = entry.Overwrite == true,
      }
    end
    return targets
  end
  local ids = check.array(body, "StoreIds", false)
  if not ids then util.fail(400, "missing_field", "Stores (or the legacy StoreIds) is required") end
  local per_type = {}
  for i, entry in ipairs(check.array(body, "StoreTypes", false) or {}) do
    local type_id = check.int(entry, "StoreTypeId", true, string.format("StoreTypes[%d].StoreTypeId", i))
    per_type[type_id] = { alias = entry.Alias ~= util.null and entry.Alias or nil,
      overwrite = entry.Overwrite == true }
  end
  for i, id in ipairs(ids) do
    local store = state.store_by_id(sandbox.state, id)
    local settings = store and per_type[store.CertStoreType] or {}
    targets[i] = { id = id, alias = settings.alias, overwrite = settings.overwrite or false }
  end
  return targets
end

-- The certificate named by CertificateId or RequestId (404 unknown, 400 not issued).
function jobs.resolve_certificate(sandbox, body)
  local cert_id = check.int(body, "CertificateId", false)
  local request_id = check.int(body, "RequestId", false)
  if (cert_id or 0) == 0 and (request_id or 0) == 0 then
    util.fail(400, "missing_field", "CertificateId or RequestId is required")
  end
  if cert_id and cert_id ~= 0 then return certificates.find(sandbox, cert_id) end
  local request = state.request(sandbox.state, request_id)
  if not request then util.not_found("Certificate request " .. request_id .. " was not found") end
  if request.status ~= "issued" then
    util.bad_request(string.format("Certificate request %d is %s; it has no certificate to deploy",
      request_id, request.status))
  end
  return certificates.find(sandbox, request.cert_id)
end

-- One job per target ({id, alias, overwrite}); the answer of Deploy.
function jobs.schedule(sandbox, req, cert, targets, password, run_at)
  local ok, failed = util.array(), util.array()
  for _, target in ipairs(targets) do
    local store = util.is_guid(target.id) and state.store_by_id(sandbox.state, target.id) or nil
    local why = refusal(sandbox, req.user, cert, store, password, true)
    if why then
      util.log("deploy of certificate %d to %s refused: %s", cert.id, target.id, why)
      failed[#failed + 1] = target.id
    else
      add_job(sandbox, { kind = "add", cert_id = cert.id, store_id = store.Id,
        alias = target.alias or cert.thumbprint, overwrite = target.overwrite }, run_at)
      ok[#ok + 1] = target.id
    end
  end
  return { SuccessfulStores = ok, FailedStores = failed }
end

local function deploy(sandbox, req)
  local body = check.body(req, DEPLOY_FIELDS)
  local targets = deploy_targets(sandbox, body)
  local password = check.string(body, "Password", true)
  local run_at = check.date(body, "JobTime", false)
  local cert = jobs.resolve_certificate(sandbox, body)
  return jobs.schedule(sandbox, req, cert, targets, password, run_at)
end

-- Installs the new certificate wherever the existing one is found.
local function replace(sandbox, req)
  local body = check.body(req, REPLACE_FIELDS)
  local existing = certificates.find(sandbox, check.int(body, "ExistingCertificateId", true))
  local password = check.string(body, "Password", false)
  local run_at = check.date(body, "JobTime", false)
  local cert = jobs.resolve_certificate(sandbox, body)
  local targets = {}
  for _, loc in ipairs(certificates.locations(sandbox, existing)) do
    targets[#targets + 1] = { id = loc.CertStoreId, alias = loc.Alias, overwrite = true }
  end
  return jobs.schedule(sandbox, req, cert, targets, password, run_at)
end

---------------------------------------------------------------- Add / Remove
local function schedule_time(body)
  local sched = check.object(body, "Schedule")
  if not sched then util.fail(400, "missing_field", "Schedule is required") end
  local once = sched.ExactlyOnce
  return once and once ~= util.null and check.date(once, "Time", true, "Schedule.ExactlyOnce.Time") or nil
end

local function store_entries(body)
  local list = check.array(body, "CertificateStores", true)
  for i, entry in ipairs(list) do
    check.string(entry, "CertificateStoreId", true, string.format("CertificateStores[%d].CertificateStoreId", i))
  end
  return list
end

local function add_certificate(sandbox, req)
  local body = check.body(req, ADD_FIELDS)
  local cert = certificates.find(sandbox, check.int(body, "CertificateId", true))
  local run_at = schedule_time(body)
  local ids = util.array()
  for _, entry in ipairs(store_entries(body)) do
    local store = stores.find(sandbox, entry.CertificateStoreId)
    local password = type(entry.EntryPassword) == "table" and entry.EntryPassword.SecretValue or nil
    local why = refusal(sandbox, req.user, cert, store, password, entry.IncludePrivateKey == true)
    if why then util.fail(why:match("^no permission") and 403 or 400, "bad_request", why) end
    ids[#ids + 1] = add_job(sandbox, { kind = "add", cert_id = cert.id, store_id = store.Id,
      alias = entry.Alias or cert.thumbprint, overwrite = entry.Overwrite == true }, run_at).id
  end
  return ids
end

local function remove_certificate(sandbox, req)
  local body = check.body(req, REMOVE_FIELDS)
  local run_at = schedule_time(body)
  local ids = util.array()
  for i, entry in ipairs(store_entries(body)) do
    local store = stores.find(sandbox, entry.CertificateStoreId)
    local alias = entry.Alias or body.Alias
    if type(alias) ~= "string" then util.fail(400, "missing_field",
      string.format("CertificateStores[%d].Alias is required", i)) end
    if not auth.may_schedule(req.user, store.ContainerName) then
      util.fail(403, "forbidden", "no permission on container " .. store.ContainerName)
    end
    ids[#ids + 1] = add_job(sandbox, { kind = "remove", store_id = store.Id, alias = alias }, run_at).id
  end
  return ids
end

jobs.routes = {
  { method = "POST", path = "/Enrollment/PFX/Deploy", handler = deploy,
    summary = "Deploy a PFX enrollment to stores" },
  { method = "POST", path = "/Enrollment/PFX/Replace", handler = replace,
    summary = "Replace a certificate in stores" },
  { method = "POST", path = "/CertificateStores/Certificates/Add", handler = add_certificate,
    summary = "Add a certificate to stores (management job)" },
  { method = "POST", path = "/CertificateStores/Certificates/Remove", handler = remove_certificate,
    summary = "Remove a certificate from stores (management job)" },
}

return jobs
