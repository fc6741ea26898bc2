-- GET /OrchestratorJobs/JobHistory (paged, pq.*): one entry per finished
-- management job (Deploy, Add, Remove, Replace, enrollment with Stores),
-- Result 1 = success, 3 = failure with the job's message.
local util = require "keyfactor.sandbox.util"
local state = require "keyfactor.sandbox.state"
local query = require "keyfactor.sandbox.query"

local history = {}

local SUCCESS, FAILURE = 1, 3
-- Status says how far the job got; every job in the history ran to its end.
local FINISHED = 4

local function entry(sandbox, n, job)
  local store = state.store_by_id(sandbox.state, job.store_id)
  local schedule = { Immediate = true }
  if job.run_at and job.run_at > job.created then
    schedule = { ExactlyOnce = { Time = util.iso(job.run_at) } }
  end
  local machine = job.machine or (store and store.ClientMachine) or ""
  return {
    JobHistoryId = n, AgentMachine = machine, JobId = job.id, Schedule = schedule,
    JobType = "Management",
    OperationStart = util.iso(job.due), OperationEnd = util.iso(job.finished or job.due),
    Message = job.message or "", Result = job.status == "completed" and SUCCESS or FAILURE,
    Status = FINISHED, StorePath = job.store_path or (store and store.StorePath) or "",
    ClientMachine = machine,
  }, store
end

local field = query.field

-- Query fields over {entry, job}; CertStoreId (the store GUID) is not in the
-- answer, but is how a client finds the jobs of one store.
local fields = {
  id = field(function(r) return r[1].JobHistoryId end, "number"),
  jobhistoryid = field(function(r) return r[1].JobHistoryId end, "number"),
  jobid = field(function(r) return r[1].JobId end),
  jobtype = field(function(r) return r[1].JobType end),
  result = field(function(r) return r[1].Result end, "number"),
  status = field(function(r) return r[1].Status end, "number"),
  clientmachine = field(function(r) return r[1].ClientMachine end),
  agentmachine = field(function(r) return r[1].AgentMachine end),
  storepath = field(function(r) return r[1].StorePath end),
  message = field(function(r) return r[1].Message end),
  operationstart = field(function(r) return r[2].due end, "date"),
  operationend = field(function(r) return r[2].finished end, "date"),
  certstoreid = field(function(r) return r[2].store_id end),
  certificatestoreid = field(function(r) return r[2].store_id end),
  certificateid = field(function(r) return r[2].cert_id end, "number"),
  -- set by POST /OrchestratorJobs/Acknowledge (scheduled_jobs.lua)
  acknowledged = field(function(r) return r[2].acknowledged == true end, "bool"),
}

history.fields = fields

--- {entry, job} of every finished job (not those pending or unscheduled);
-- entry.JobHistoryId is the job audit id of Reschedule and Acknowledge.
function history.rows(sandbox)
  local rows = {}
  for n, job in ipairs(sandbox.state.jobs) do
    if job.status == "completed" or job.status == "failed" then rows[#rows + 1] = { (entry(sandbox, n, job)), job } end
  end
  return rows
end

local function list(sandbox, req)
  local rows = history.rows(sandbox)
  return query.page(rows, req.params, "pq", fields, function(r) return r[1] end)
end

history.routes = {
  { method = "GET", path = "/OrchestratorJobs/JobHistory", handler = list,
    summary = "Finished orchestrator jobs (paged, pq.*); Result 3 = failure" },
}

return history
