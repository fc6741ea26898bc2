-- Approvals as Command 10+ runs them: an enrollment whose template needs
-- approval starts a workflow instance (ReferenceId = the request id) that
-- waits at the step RequireApproval for the signal Approve or Deny.
-- GET /Workflow/Instances[/AssignedToMe|/My] (paged, pq.*), GET /{id},
-- POST /{id}/Signals (204). Approve issues the certificate as
-- POST /Workflow/Certificates/Approve does; approving or denying through
-- those legacy calls settles the instance too (workflow.lua).
local util = require "keyfactor.sandbox.util"
local state = require "keyfactor.sandbox.state"
local query = require "keyfactor.sandbox.query"
local check = require "keyfactor.sandbox.check"
local auth = require "keyfactor.sandbox.auth"
local enrollment = require "keyfactor.sandbox.enrollment"

local instances = {}

-- KeyfactorWorkflowsWorkflowInstanceStatus (0..6 in the OpenAPI document;
-- its names are not in the reference, so this numbering is the sandbox's).
instances.STATUS = { Unknown = 0, Failed = 1, Running = 2, Suspended = 3, Complete = 4, Rejected = 5, Restarted = 6 }
local S = instances.STATUS

instances.STEP = "RequireApproval"
instances.SIGNALS = { "Approve", "Deny" }

local DEFINITION = { Id = "9d5a8f3e-2b1c-4e7a-8f00-000000000001", DisplayName = "Enrollment approval",
  Version = 1, WorkflowType = "Enrollment" }
local STEP_ID = "9d5a8f3e-2b1c-4e7a-8f00-0000000000a1"
local END_ID = "9d5a8f3e-2b1c-4e7a-8f00-0000000000ff"

local function list(sandbox)
  local s = sandbox.state
  s.workflow_instances = s.workflow_instances or {}
  return s.workflow_instances
end

local function guid(n, signal)
  return string.format("6e1f3a20-%04d-4b7c-9a00-%012d", signal or 0, n)
end

--- Starts the approval instance of a pending certificate request; returns it.
function instances.start(sandbox, request)
  local all = list(sandbox)
  local n = #all + 1
  local data = { CertificateRequestId = request.id, Subject = request.subject, Template = request.template,
    Requester = request.requester, CertificateAuthority = state.CA_NAME }
  local instance = { n = n, id = guid(n), request_id = request.id, status = S.Suspended,
    step = instances.STEP, started = util.now(), modified = util.now(), starter = request.requester,
    title = string.format("Approve certificate request %d for %s", request.id, request.subject),
    received = {}, initial = data, current = util.copy(data) }
  all[n] = instance
  return instance
end

local function find(sandbox, id)
  if not util.is_guid(id) then util.bad_request("The value '" .. tostring(id) .. "' is not valid for instanceId") end
  for _, instance in ipairs(list(sandbox)) do
    if instance.id == id:lower() then return instance end
  end
  util.not_found("Workflow instance " .. id .. " was not found")
end

--- The instance of certificate request `request_id`, or nil.
function instances.of_request(sandbox, request_id)
  for _, instance in ipairs(list(sandbox)) do
    if instance.request_id == request_id then return instance end
  end
end

-- Records `signal` (with its data) and ends the instance.
local function settle(instance, signal, data)
  instance.received[signal] = true
  for k, value in pairs(data or {}) do instance.current[k] = value end
  instance.status = signal == "Approve" and S.Complete or S.Rejected
  instance.step = nil
  instance.modified = util.now()
end

--- The legacy calls (workflow.lua) approved or denied the request: the
-- instance waiting for it ends as if it had received the signal.
function instances.settle_request(sandbox, request, signal, comment)
  local instance = instances.of_request(sandbox, request.id)
  if instance and instance.status == S.Suspended then
    settle(instance, signal, comment and comment ~= "" and { Comment = comment } or nil)
  end
end

local function render(instance, full)
  local waiting = instance.status == S.Suspended
  local out = {
    Id = instance.id, Status = instance.status, CurrentStepId = waiting and STEP_ID or END_ID,
    StatusMessage = waiting and "Waiting for approval" or util.null, Definition = util.copy(DEFINITION),
    CurrentStepDisplayName = waiting and "Require Approval" or "End",
    CurrentStepUniqueName = waiting and instances.STEP or "End",
    Title = instance.title, LastModified = util.iso(instance.modified), StartDate = util.iso(instance.started),
    ReferenceId = instance.request_id,
  }
  if full then
    out.Signals = util.array()
    if waiting then
      for i, name in ipairs(instances.SIGNALS) do
        out.Signals[i] = { SignalName = name, StepSignalId = guid(instance.n, i),
          SignalReceived = instance.received[name] == true }
      end
    end
    out.InitialData, out.CurrentStateData = util.copy(instance.initial), util.copy(instance.current)
  end
  return out
end

local field = query.field
local fields = {
  id = field(function(i) return i.id end),
  status = field(function(i) return i.status end, "number"),
  referenceid = field(function(i) return i.request_id end, "number"),
  title = field(function(i) return i.title end),
  startdate = field(function(i) return i.started end, "date"),
  lastmodified = field(function(i) return i.modified end, "date"),
  currentstepuniquename = field(function(i) return i.step end),
  workflowtype = field(function() return DEFINITION.WorkflowType end),
}

-- `which(instance, user)`: whether the listing shows it.
local function listing(which)
  return function(sandbox, req)
    local rows = {}
    for _, instance in ipairs(list(sandbox)) do
      if which(instance, req.user) then rows[#rows + 1] = instance end
    end
    return query.page(rows, req.params, "pq", fields, function(instance) return render(instance, false) end)
  end
end

local function get_one(sandbox, _, id)
  return render(find(sandbox, id), true)
end

local function signal(sandbox, req, id)
  local instance = find(sandbox, id)
  local body = check.body(req, { SignalKey = "string", Data = "object" })
  local key = check.string(body, "SignalKey", true)
  local step, name = key:match("^([^%.]+)%.(.+)$")
  if not step then util.bad_request("SignalKey '" .. key .. "' must be \"<step unique name>.<signal name>\"") end
  if instance.status ~= S.Suspended then
    util.bad_request("Workflow instance " .. instance.id .. " is not waiting for a signal")
  end
  if step:lower() ~= instance.step:lower() then
    util.bad_request(string.format("SignalKey '%s': the instance is at step '%s', not '%s'", key, instance.step, step))
  end
  local known
  for _, s in ipairs(instances.SIGNALS) do
    if s:lower() == name:lower() then known = s end
  end
  if not known then
    util.bad_request(string.format("SignalKey '%s': step '%s' has no signal '%s' (it has %s)", key, instance.step,
      name, table.concat(instances.SIGNALS, ", ")))
  end
  auth.require_admin(req.user, known:lower() .. " certificate requests")
  local request = state.request(sandbox.state, instance.request_id)
  if not request or request.status ~= "pending" then
    util.bad_request("Certificate request " .. instance.request_id .. " is not pending")
  end
  local data = check.object(body, "Data") or {}
  if known == "Approve" then
    enrollment.issue(sandbox, request)
  else
    request.status = "denied"
    request.denial_comment = type(data.Comment) == "string" and data.Comment or ""
  end
  settle(instance, known, data)
  return nil, 204
end

instances.routes = {
  { method = "GET", path = "/Workflow/Instances", handler = listing(function() return true end),
    summary = "Workflow instances (paged, pq.*)" },
  { method = "GET", path = "/Workflow/Instances/AssignedToMe",
    handler = listing(function(i, user) return i.status == S.Suspended and user.admin end),
    summary = "Workflow instances waiting on the caller (approvers: admins)" },
  { method = "GET", path = "/Workflow/Instances/My",
    handler = listing(function(i, user) return i.starter == user.name end),
    summary = "Workflow instances the caller started" },
  { method = "GET", path = "/Workflow/Instances/{id}", handler = get_one,
    summary = "One workflow instance with its signals" },
  { method = "POST", path = "/Workflow/Instances/{id}/Signals", handler = signal,
    summary = "Send a signal (RequireApproval.Approve or .Deny)" },
}

return instances
