-- Orchestrators (agents): seed data, one per machine of the seed stores,
-- GET /Agents (paged, pq.*), GET /Agents/{id}, and POST /Agents/Approve,
-- /Disapprove, /Reset, /Agents/{id}/Reset (204), which change an agent's
-- Status (kept in the state); jobs on the stores of an agent that is not
-- approved fail. Stores name their agent by AgentId; store creation and
-- updates must name one of these.
local util = require "keyfactor.sandbox.util"
local state = require "keyfactor.sandbox.state"
local query = require "keyfactor.sandbox.query"
local check = require "keyfactor.sandbox.check"

local agents = {}

-- Enums of AgentResponse: Status 2 = Approved; AgentPlatform 2 = the .NET
-- Universal Orchestrator.
local NEW, APPROVED, DISAPPROVED, UNIVERSAL_ORCHESTRATOR = 1, 2, 3, 2
agents.APPROVED = APPROVED
local SEEN_AT = "2026-01-01T00:00:00Z"

local function seed()
  local list, by_id = {}, {}
  for _, st in ipairs(state.seed_stores()) do
    if not by_id[st.AgentId] then
      local t = st.CertStoreType == state.STORE_TYPE_PEM and "PEM" or "PKCS12"
      local agent = {
        AgentId = st.AgentId, ClientMachine = st.ClientMachine,
        Username = "SANDBOX\\orchestrator", AgentPlatform = UNIVERSAL_ORCHESTRATOR,
        Version = "10.5.0.0", Status = APPROVED, LastSeen = SEEN_AT,
        Capabilities = util.array{ "CertStores." .. t .. ".Inventory", "CertStores." .. t .. ".Management" },
        Blueprint = "", Thumbprint = util.sha1_hex("agent:" .. st.AgentId), LegacyThumbprint = "",
        AuthCertificateReenrollment = "None", LastThumbprintUsed = util.sha1_hex("agent:" .. st.AgentId),
        LastErrorCode = 0, LastErrorMessage = "",
      }
      list[#list + 1] = agent
      by_id[agent.AgentId] = agent
    end
  end
  return list, by_id
end

agents.list, agents.by_id = seed()

-- The agent with GUID `id` (any case), or nil.
function agents.find(id)
  return type(id) == "string" and agents.by_id[id:lower()] or nil
end

local field = query.field

-- over rendered agents
local fields = {
  agentid = field(function(a) return a.AgentId end),
  id = field(function(a) return a.AgentId end),
  clientmachine = field(function(a) return a.ClientMachine end),
  status = field(function(a) return a.Status end, "number"),
  version = field(function(a) return a.Version end),
  agentplatform = field(function(a) return a.AgentPlatform end, "number"),
}

-- The agent's Status now: the seed's, or what Approve/Disapprove/Reset made it.
function agents.status(sandbox, id)
  local changed = sandbox.state.agent_status
  return changed and changed[id] or agents.by_id[id].Status
end

local function render(sandbox, a)
  local out = util.copy(a)
  out.Capabilities = util.array(util.copy(a.Capabilities))
  out.Status = agents.status(sandbox, a.AgentId)
  return out
end

local function list(sandbox, req)
  local rows = {}
  for i, a in ipairs(agents.list) do rows[i] = render(sandbox, a) end
  return query.page(rows, req.params, "pq", fields)
end

local function existing(id, label)
  if not util.is_guid(id) then
    util.bad_request(label .. ": '" .. tostring(id) .. "' is not a valid agent id (GUID)")
  end
  local a = agents.find(id)
  if not a then util.not_found("Agent " .. id .. " was not found") end
  return a
end

local function get_one(sandbox, _, id)
  return render(sandbox, existing(id, "id"))
end

-- POST handlers taking a bare array of agent GUIDs; every id is checked
-- before any agent changes.
local function set_status(status)
  return function(sandbox, req)
    local ids = check.array_body(req)
    check.conform(ids, check.array_of("string"), "body")
    local found = {}
    for i, id in ipairs(ids) do found[i] = existing(id, string.format("[%d]", i)) end
    sandbox.state.agent_status = sandbox.state.agent_status or {}
    for _, a in ipairs(found) do sandbox.state.agent_status[a.AgentId] = status end
    return nil, 204
  end
end

local function reset_one(sandbox, _, id)
  local a = existing(id, "id")
  sandbox.state.agent_status = sandbox.state.agent_status or {}
  sandbox.state.agent_status[a.AgentId] = NEW
  return nil, 204
end

agents.routes = {
  { method = "GET", path = "/Agents", handler = list, summary = "Orchestrators (paged, pq.*)" },
  { method = "GET", path = "/Agents/{id}", handler = get_one, summary = "One orchestrator by GUID" },
  { method = "POST", path = "/Agents/Approve", handler = set_status(APPROVED),
    summary = "Approves orchestrators (a JSON array of GUIDs); 204" },
  { method = "POST", path = "/Agents/Disapprove", handler = set_status(DISAPPROVED),
    summary = "Disapproves orchestrators (a JSON array of GUIDs); 204" },
  { method = "POST", path = "/Agents/Reset", handler = set_status(NEW),
    summary = "Resets orchestrators to New (a JSON array of GUIDs); 204" },
  { method = "POST", path = "/Agents/{id}/Reset", handler = reset_one, summary = "Resets one orchestrator; 204" },
}

return agents
