-- Job control: GET /OrchestratorJobs/ScheduledJobs (paged, pq.*) lists the
-- management jobs that have not run yet and each store's inventory job
-- (while the store has an inventory schedule); POST /OrchestratorJobs/Unschedule
-- takes jobs off by JobIds or Query; /Reschedule runs finished jobs again and
-- /Acknowledge marks them seen to, both by JobAuditIds (the JobHistoryId of
-- GET /OrchestratorJobs/JobHistory) or a job history Query; and
-- POST /CertificateStores/Schedule sets stores' inventory schedules. All 204.
local util = require "keyfactor.sandbox.util"
local state = require "keyfactor.sandbox.state"
local query = require "keyfactor.sandbox.query"
local check = require "keyfactor.sandbox.check"
local auth = require "keyfactor.sandbox.auth"
local jobs = require "keyfactor.sandbox.jobs"
local stores = require "keyfactor.sandbox.stores"
local history = require "keyfactor.sandbox.history"

local scheduled = {}

local a, o = check.array_of, check.object_of
local SCHEDULE = o{ Immediate = "bool", Interval = o{ Minutes = "int" }, Daily = o{ Time = "date" },
  Weekly = o{ Days = a("int"), Time = "date" }, Monthly = o{ Day = "int", Time = "date" },
  ExactlyOnce = o{ Time = "date" } }

-- KeyfactorSchedule as answered: the member set, and Immediate (nullable) always.
local function schedule_answer(schedule)
  local out = util.copy(schedule)
  if out.Immediate == nil then out.Immediate = util.null end
  return out
end

-- One scheduled job: {answer, job or nil, store}.
local function management_row(sandbox, job)
  local store = state.store_by_id(sandbox.state, job.store_id)
  local schedule = { Immediate = true }
  if job.run_at and job.run_at > job.created then schedule = { ExactlyOnce = { Time = util.iso(job.run_at) } } end
  return { { Id = job.id, ClientMachine = store and store.ClientMachine or util.null,
    Target = store and store.StorePath or util.null, Schedule = schedule_answer(schedule),
    Requested = util.iso(job.created), JobType = "Management" }, job, store }
end

local function inventory_row(st)
  return { { Id = stores.render(st).CertStoreInventoryJobId, ClientMachine = st.ClientMachine, Target = st.StorePath,
    Schedule = schedule_answer(st.InventorySchedule or stores.render(st).InventorySchedule),
    Requested = util.null, JobType = "Inventory" }, nil, st }
end

local function rows(sandbox)
  local out = {}
  for _, job in ipairs(sandbox.state.jobs) do
    if job.status == "pending" then out[#out + 1] = management_row(sandbox, job) end
  end
  for _, st in ipairs(sandbox.state.stores) do
    if st.InventorySchedule ~= util.null then out[#out + 1] = inventory_row(st) end
  end
  return out
end

local field = query.field
local fields = {
  id = field(function(r) return r[1].Id end),
  jobtype = field(function(r) return r[1].JobType end),
  clientmachine = field(function(r) return r[1].ClientMachine end),
  target = field(function(r) return r[1].Target end),
  requested = field(function(r) return r[2] and r[2].created end, "date"),
  certstoreid = field(function(r) return r[3] and r[3].Id end),
  certificateid = field(function(r) return r[2] and r[2].cert_id end, "number"),
}

local function list(sandbox, req)
  return query.page(rows(sandbox), req.params, "pq", fields, function(r) return r[1] end)
end

local function may_schedule(user, store)
  if store and not auth.may_schedule(user, store.ContainerName) then
    util.fail(403, "forbidden", string.format("User %s may not schedule jobs in container %s", user.name,
      store.ContainerName))
  end
end

-- The rows a body selects: by its id list (each must be among `all`,
-- keyed by `key_of(row)`) or by Query over `query_fields`.
local function select_rows(body, ids_name, all, key_of, query_fields, what)
  local ids = body[ids_name]
  local text = check.string(body, "Query", false)
  if (ids == nil or ids == util.null) and (text == nil or text == "") then
    util.fail(400, "missing_field", ids_name .. " or Query is required")
  end
  local chosen = {}
  if ids ~= nil and ids ~= util.null then
    local by_key = {}
    for _, r in ipairs(all) do by_key[key_of(r)] = r end
    for i, id in ipairs(ids) do
      local r = by_key[type(id) == "string" and id:lower() or id]
      if not r then util.not_found(string.format("%s[%d]: no %s %s", ids_name, i, what, tostring(id))) end
      chosen[#chosen + 1] = r
    end
  end
  if text and text ~= "" then
    local predicate = query.compile(text, query_fields)
    for _, r in ipairs(all) do
      if predicate(r) then chosen[#chosen + 1] = r end
    end
  end
  return chosen
end

local function unschedule(sandbox, req)
  local body = check.body(req, { JobIds = a("string"), Query = "string" })
  for i, id in ipairs(check.array(body, "JobIds", false) or {}) do
    if not util.is_guid(id) then util.bad_request(string.format("JobIds[%d]: '%s' is not a GUID", i, id)) end
  end
  local chosen = select_rows(body, "JobIds", rows(sandbox), function(r) return r[1].Id end, fields, "scheduled job")
  for _, r in ipairs(chosen) do may_schedule(req.user, r[3]) end
  for _, r in ipairs(chosen) do
    if r[2] then r[2].status = "unscheduled" else r[3].InventorySchedule = util.null end
  end
  return nil, 204
end

local AUDIT_FIELDS = { JobAuditIds = a("int"), Query = "string" }

local function finished(sandbox, body)
  local ids = check.int_array(body, "JobAuditIds", false)
  if ids then body = util.copy(body); body.JobAuditIds = ids end
  return select_rows(body, "JobAuditIds", history.rows(sandbox), function(r) return r[1].JobHistoryId end,
    history.fields, "finished job with JobHistoryId")
end

local function reschedule(sandbox, req)
  local chosen = finished(sandbox, check.body(req, AUDIT_FIELDS))
  for _, r in ipairs(chosen) do may_schedule(req.user, state.store_by_id(sandbox.state, r[2].store_id)) end
  for _, r in ipairs(chosen) do
    local old = r[2]
    jobs.add(sandbox, { kind = old.kind, cert_id = old.cert_id, store_id = old.store_id, alias = old.alias,
      overwrite = old.overwrite, rescheduled_from = r[1].JobHistoryId })
  end
  return nil, 204
end

local function acknowledge(sandbox, req)
  for _, r in ipairs(finished(sandbox, check.body(req, AUDIT_FIELDS))) do r[2].acknowledged = true end
  return nil, 204
end

local function schedule_inventory(sandbox, req)
  local body = check.body(req, { StoreIds = a("string"), Schedule = SCHEDULE })
  local ids = check.array(body, "StoreIds", true)
  local schedule = check.object(body, "Schedule")
  if not schedule then util.fail(400, "missing_field", "Schedule is required") end
  local chosen = {}
  for i, id in ipairs(ids) do
    if not util.is_guid(id) then util.bad_request(string.format("StoreIds[%d]: '%s' is not a GUID", i, id)) end
    chosen[i] = stores.find(sandbox, id)
    may_schedule(req.user, chosen[i])
  end
  for _, st in ipairs(chosen) do st.InventorySchedule = schedule end
  return nil, 204
end

scheduled.routes = {
  { method = "GET", path = "/OrchestratorJobs/ScheduledJobs", handler = list,
    summary = "Jobs waiting to run: management jobs not yet due, store inventories (paged, pq.*)" },
  { method = "POST", path = "/OrchestratorJobs/Unschedule", handler = unschedule,
    summary = "Take scheduled jobs off (JobIds or Query)" },
  { method = "POST", path = "/OrchestratorJobs/Reschedule", handler = reschedule,
    summary = "Run finished jobs again (JobAuditIds or a job history Query)" },
  { method = "POST", path = "/OrchestratorJobs/Acknowledge", handler = acknowledge,
    summary = "Acknowledge finished jobs (JobAuditIds or a job history Query)" },
  { method = "POST", path = "/CertificateStores/Schedule", handler = schedule_inventory,
    summary = "Set the inventory schedule of stores" },
}

return scheduled
