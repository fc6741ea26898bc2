-- Orchestrators (agents): seed data, one per machine of the seed stores,
-- GET /Agents (paged, pq.*) and GET /Agents/{id}. Stores name their agent by
-- AgentId; store creation and updates must name one of these.
local util = require "keyfactor.sandbox.util"
local state = require "keyfactor.sandbox.state"
local query = require "keyfactor.sandbox.query"

local agents = {}

-- Enums of AgentResponse: Status 2 = Approved; AgentPlatform 2 = the .NET
-- Universal Orchestrator.
local APPROVED, UNIVERSAL_ORCHESTRATOR = 2, 2
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

local function field(get, kind) return { get = get, kind = kind or "string" } end

local fields = {
  agentid = field(function(a) return a.AgentId end),
  id = field(function(a) return a.AgentId end),
  clientmachine = field(function(a) return a.ClientMachine end),
  status = field(function(a) return a.Status end, "number"),
  version = field(function(a) return a.Version end),
  agentplatform = field(function(a) return a.AgentPlatform end, "number"),
}

local function render(a)
  local out = util.copy(a)
  out.Capabilities = util.array(util.copy(a.Capabilities))
  return out
end

local function list(_, req)
  local page = query.page(agents.list, req.params, "pq", fields)
  for i, a in ipairs(page) do page[i] = render(a) end
  return page
end

local function get_one(_, _, id)
  if not util.is_guid(id) then util.bad_request("The value '" .. id .. "' is not a valid agent id (GUID)") end
  local a = agents.find(id)
  if not a then util.not_found("Agent " .. id .. " was not found") end
  return render(a)
end

agents.routes = {
  { method = "GET", path = "/Agents", handler = list, summary = "Orchestrators (paged, pq.*)" },
  { method = "GET", path = "/Agents/{id}", handler = get_one, summary = "One orchestrator by GUID" },
}

return agents
