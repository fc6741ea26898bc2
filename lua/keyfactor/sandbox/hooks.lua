-- The /_sandbox/ test hooks: reset, the request log, faults, token expiry
-- and a summary of the state.  Open for a throwaway sandbox (no --data);
-- a --data sandbox keeps state worth protecting from any local user, so
-- its hooks want the admin's credentials, unless started with --open-hooks.
local util = require "keyfactor.sandbox.util"
local state = require "keyfactor.sandbox.state"
local auth = require "keyfactor.sandbox.auth"
local faults = require "keyfactor.sandbox.faults"
local jobs = require "keyfactor.sandbox.jobs"
local http = require "keyfactor.sandbox.http"

local hooks = {}

local function state_summary(sandbox)
  local certs = util.array()
  for _, c in ipairs(sandbox.state.certificates) do
    certs[#certs + 1] = { Id = c.id, Thumbprint = c.thumbprint, IssuedDN = c.issued_dn,
      CertRequestId = c.request_id, HasPrivateKey = c.key_pem ~= nil, CertState = c.state }
  end
  local store_list = util.array()
  for _, st in ipairs(sandbox.state.stores) do
    local inv = util.array()
    for _, item in ipairs(st.inventory) do inv[#inv + 1] = { Alias = item.alias, CertificateId = item.cert_id } end
    store_list[#store_list + 1] = { Id = st.Id, ContainerName = st.ContainerName, Inventory = inv }
  end
  local job_list = util.array()
  for _, j in ipairs(sandbox.state.jobs) do
    job_list[#job_list + 1] = { Id = j.id, Kind = j.kind, CertificateId = j.cert_id, StoreId = j.store_id,
      Alias = j.alias, Status = j.status, Due = j.due, Message = j.message }
  end
  return { certificates = certs, stores = store_list, jobs = job_list,
    requests = #sandbox.state.requests, faults = #sandbox.faults }
end

function hooks.reset(sandbox)
  sandbox.state = state.fresh()
  sandbox.tokens, sandbox.faults, sandbox.request_log = {}, {}, {}
  state.persist(sandbox, true)
end

local routes = {
  ["POST /_sandbox/reset"] = function(sandbox)
    hooks.reset(sandbox)
    return { reset = true }
  end,
  ["GET /_sandbox/requests"] = function(sandbox)
    return util.array(sandbox.request_log)
  end,
  ["POST /_sandbox/faults"] = function(sandbox, req)
    local body = req:json()
    if type(body) ~= "table" then util.bad_request("fault must be a JSON object or array") end
    if body[1] then
      for _, f in ipairs(body) do faults.add(sandbox, f) end
    else
      faults.add(sandbox, body)
    end
    return { faults = util.array(sandbox.faults) }
  end,
  ["GET /_sandbox/faults"] = function(sandbox) return util.array(sandbox.faults) end,
  ["DELETE /_sandbox/faults"] = function(sandbox)
    sandbox.faults = {}
    return { faults = util.array() }
  end,
  ["POST /_sandbox/expire-tokens"] = function(sandbox)
    auth.expire_tokens(sandbox)
    return { expired = true }
  end,
  -- {StoreId, CertificateId, Alias}: what an inventory found in a store
  -- before its orchestrator broke (the seed store on state.BROKEN_MACHINE
  -- can hold nothing otherwise: every job there fails)
  ["POST /_sandbox/inventory"] = function(sandbox, req)
    local body = req:json()
    if type(body) ~= "table" then util.bad_request("inventory must be a JSON object") end
    local store = state.store_by_id(sandbox.state, tostring(body.StoreId))
    local cert = sandbox.state.certificates[tonumber(body.CertificateId) or 0]
    if not store or not cert or type(body.Alias) ~= "string" then
      util.bad_request("StoreId, CertificateId and Alias must name a store, a certificate and an alias")
    end
    local s = sandbox.state
    store.inventory[#store.inventory + 1] = { alias = body.Alias, cert_id = cert.id, item_id = s.next_item }
    s.next_item = s.next_item + 1
    req.changed = true
    return { Alias = body.Alias, CertificateId = cert.id, StoreId = store.Id }
  end,
  ["GET /_sandbox/state"] = function(sandbox, req)
    if jobs.process(sandbox) > 0 then req.changed = true end
    return state_summary(sandbox)
  end,
}

-- Raises 401/403 unless the hooks are open to this request.
local function check_access(sandbox, req)
  if not sandbox.persistent or sandbox.opts.open_hooks then return end
  auth.require_admin(auth.authenticate(sandbox, req.headers), "use the /_sandbox/ hooks of a --data sandbox")
end

function hooks.handle(sandbox, stream, req)
  local hook = routes[req.method .. " " .. req.lower_path:gsub("/$", "")]
  local b, refusal, message = http.read_body(stream, req.headers)
  if not b then
    if refusal then return http.reject(stream, refusal, message) end
    return http.abort(stream)
  end
  req.body = b
  local ok, status, body, headers = pcall(function()
    check_access(sandbox, req)
    if not hook then util.not_found("No sandbox hook " .. req.method .. " " .. req.path) end
    return 200, util.encode(hook(sandbox, req))
  end)
  if not ok then status, body, headers = http.failure_answer(status) end
  state.persist(sandbox, req)
  http.send(stream, status, body, nil, headers)
end

return hooks
