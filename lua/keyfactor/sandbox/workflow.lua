-- Certificate request workflow: GET /Workflow/Certificates/Pending and
-- /Denied, GET /Workflow/Certificates/{id}, POST .../Approve and .../Deny
-- (which also settle the request's workflow instance: workflow_instances.lua).
local util = require "keyfactor.sandbox.util"
local state = require "keyfactor.sandbox.state"
local query = require "keyfactor.sandbox.query"
local check = require "keyfactor.sandbox.check"
local auth = require "keyfactor.sandbox.auth"
local enrollment = require "keyfactor.sandbox.enrollment"
local instances = require "keyfactor.sandbox.workflow_instances"

local workflow = {}

-- Workflow State enum as the sandbox uses it: 1 Pending, 2 Issued, 3 Denied.
local STATES = { pending = 1, issued = 2, denied = 3 }
local STATE_NAMES = { pending = "Pending", issued = "Issued", denied = "Denied" }

local function common_name(dn)
  return dn and dn:match("CN%s*=%s*([^,]+)") or ""
end

local function render(r)
  return {
    Id = r.id, CARequestId = r.ca_request_id, CommonName = common_name(r.subject),
    DistinguishedName = r.subject, SubmissionDate = util.iso(r.submitted),
    CertificateAuthority = state.CA_NAME, Template = r.template, Requester = r.requester,
    State = STATES[r.status], StateString = STATE_NAMES[r.status], Metadata = r.metadata or {},
  }
end

local field = query.field

local fields = {
  id = field(function(r) return r.id end, "number"),
  commonname = field(function(r) return common_name(r.subject) end),
  distinguishedname = field(function(r) return r.subject end),
  submissiondate = field(function(r) return r.submitted end, "date"),
  template = field(function(r) return r.template end),
  requester = field(function(r) return r.requester end),
  state = field(function(r) return STATES[r.status] end, "number"),
}

local function listing(status)
  return function(sandbox, req)
    local matching = {}
    for _, r in ipairs(sandbox.state.requests) do
      if r.status == status then matching[#matching + 1] = r end
    end
    return query.page(matching, req.params, "pagedQuery", fields, render)
  end
end

local function get_one(sandbox, _, id)
  local r = state.request(sandbox.state, check.path_int(id, "id"))
  if not r then util.not_found("Certificate request " .. id .. " was not found") end
  return render(r)
end

local function outcome(r, comment)
  return { CARowId = r.id, CARequestId = r.ca_request_id, CAHost = "sandbox.local",
    CALogicalName = "SandboxCA", KeyfactorRequestId = r.id, Comment = comment }
end

local function failure(id, comment)
  return { CARowId = 0, CARequestId = "", CAHost = "sandbox.local", CALogicalName = "SandboxCA",
    KeyfactorRequestId = id, Comment = comment }
end

local function approve(sandbox, req)
  auth.require_admin(req.user, "approve certificate requests")
  local body = check.array_body(req)
  local result = { Successes = util.array(), Failures = util.array(), Denials = util.array() }
  check.conform(body, check.array_of("int"), "request ids")
  for _, v in ipairs(body) do
    local id = util.integer(v)
    local r = state.request(sandbox.state, id)
    if not r then
      table.insert(result.Failures, failure(id, "Certificate request " .. id .. " was not found"))
    elseif r.status ~= "pending" then
      table.insert(result.Failures, failure(id, "Certificate request " .. id .. " is not pending"))
    else
      enrollment.issue(sandbox, r)
      instances.settle_request(sandbox, r, "Approve")
      table.insert(result.Successes, outcome(r, "Approved"))
    end
  end
  return result
end

local function deny(sandbox, req)
  auth.require_admin(req.user, "deny certificate requests")
  local body = check.body(req, { Comment = "string", CertificateRequestIds = check.array_of("int") })
  local comment = check.string(body, "Comment", false) or ""
  local ids = check.int_array(body, "CertificateRequestIds", true)
  local result = { Successes = util.array(), Failures = util.array(), Denials = util.array() }
  for _, id in ipairs(ids) do
    local r = state.request(sandbox.state, id)
    if not r then
      table.insert(result.Failures, failure(id, "Certificate request " .. id .. " was not found"))
    elseif r.status ~= "pending" then
      table.insert(result.Failures, failure(id, "Certificate request " .. id .. " is not pending"))
    else
      r.status = "denied"
      r.denial_comment = comment
      instances.settle_request(sandbox, r, "Deny", comment)
      table.insert(result.Denials, outcome(r, comment))
    end
  end
  return result
end

workflow.routes = {
  { method = "GET", path = "/Workflow/Certificates/Pending", handler = listing("pending"),
    summary = "Requests waiting for approval" },
  { method = "GET", path = "/Workflow/Certificates/Denied", handler = listing("denied"),
    summary = "Denied requests" },
  { method = "POST", path = "/Workflow/Certificates/Approve", handler = approve,
    summary = "Approve pending requests" },
  { method = "POST", path = "/Workflow/Certificates/Deny", handler = deny,
    summary = "Deny pending requests" },
  { method = "GET", path = "/Workflow/Certificates/{id:int}", handler = get_one,
    summary = "One certificate request by id" },
}

return workflow
