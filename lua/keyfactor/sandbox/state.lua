-- Seed data and the mutable state of the sandbox (certificates, requests,
-- jobs, store inventories), with reset and JSON persistence under --data DIR.
local util = require "keyfactor.sandbox.util"

local state = {}

state.CA_NAME = "sandbox.local\\SandboxCA"
state.CA_ID = 1

---------------------------------------------------------------- static seed
state.templates = {
  { Id = 1, CommonName = "WebServer", TemplateName = "WebServer", DisplayName = "WebServer",
    Oid = "1.3.6.1.4.1.311.21.8.1000.1", KeySize = "2048", KeyType = "RSA",
    RequiresApproval = false },
  { Id = 2, CommonName = "WebServerApproval", TemplateName = "WebServerApproval",
    DisplayName = "WebServerApproval", Oid = "1.3.6.1.4.1.311.21.8.1000.2",
    KeySize = "2048", KeyType = "RSA", RequiresApproval = true },
}

-- Key algorithms every seed pattern allows (Policies.KeyInfo): RSA sizes, and
-- ECDSA curves by OID (P-256, P-384), as Command lists them.
state.RSA_BITS = { 2048, 3072, 4096 }
state.CURVES = { { oid = "1.2.840.10045.3.1.7", names = { "P-256", "secp256r1", "prime256v1" }, bits = 256,
                   openssl = "prime256v1" },
                 { oid = "1.3.132.0.34", names = { "P-384", "secp384r1" }, bits = 384, openssl = "secp384r1" } }

-- Enrollment patterns (Command 25): one per seed template, named like it
-- (a script finds the pattern of template "WebServer" by that name); `template`
-- is the template's Id.
state.enrollment_patterns = {}
for i, t in ipairs(state.templates) do
  state.enrollment_patterns[i] = { Id = i, Name = t.CommonName, template = t.Id,
    Description = "Enrollment with the " .. t.CommonName .. " template" }
end

function state.enrollment_pattern(id)
  for _, pattern in ipairs(state.enrollment_patterns) do
    if pattern.Id == id then return pattern end
  end
end

function state.template_by_id(id)
  for _, t in ipairs(state.templates) do
    if t.Id == id then return t end
  end
end

function state.template(name)
  if type(name) ~= "string" then return nil end
  for _, t in ipairs(state.templates) do
    if t.CommonName:lower() == name:lower() or t.DisplayName:lower() == name:lower() then
      return t
    end
  end
end

state.STORE_TYPE_PEM = 101
state.STORE_TYPE_PKCS12 = 102

state.containers = {
  { Id = 1, Name = "Web", OverwriteSchedules = false, Schedule = util.null, CertStoreType = 0 },
  { Id = 2, Name = "Restricted", OverwriteSchedules = false, Schedule = util.null, CertStoreType = 0 },
}

-- The agent (orchestrator) of seed store n's machine.
function state.agent_id(n)
  return string.format("0b9a1b4e-7a1f-4f6e-8f55-5a2d5e0c%04d", n)
end

state.BROKEN_MACHINE = "broken.sandbox.local"   -- every management job on it fails

local function store(n, container, type_id, machine, path)
  local guid = string.format("5a4db0c5-%04d-4e5a-9d00-0000000000%02d", container * 100 + n, n)
  return {
    Id = guid, ContainerId = container,
    ContainerName = state.containers[container].Name,
    ClientMachine = machine, StorePath = path, CertStoreType = type_id,
    DisplayName = machine .. ":" .. path,
    Properties = type_id == state.STORE_TYPE_PEM
      and '{"separatePrivateKey":{"value":"false"}}' or "{}",
    AgentId = state.agent_id(n),   -- one orchestrator per store machine
  }
end

-- Fixed GUIDs so scripts can rely on them across resets and restarts.
function state.seed_stores()
  local P, K = state.STORE_TYPE_PEM, state.STORE_TYPE_PKCS12
  return {
    store(1, 1, P, "web01.sandbox.local", "/etc/ssl/web01.pem"),
    store(2, 1, P, "web02.sandbox.local", "/etc/ssl/web02.pem"),
    store(3, 1, P, "web03.sandbox.local", "/etc/ssl/web03.pem"),
    store(4, 1, K, "app01.sandbox.local", "/opt/app/keystore.p12"),
    store(5, 1, K, "app02.sandbox.local", "/opt/app/keystore.p12"),
    store(6, 1, K, "app03.sandbox.local", "/opt/app/keystore.p12"),
    store(7, 2, P, "vault01.sandbox.local", "/etc/ssl/vault01.pem"),
    store(8, 2, K, "vault02.sandbox.local", "/opt/vault/keystore.p12"),
    store(9, 1, P, state.BROKEN_MACHINE, "/etc/ssl/broken.pem"),
  }
end

-- Security identities and roles (security.lua keeps them in the state as
-- `security`): the seed users, and the role Administrator holding SANDBOX\admin.
state.PERMISSION_SET_ID = "8c1d2e3f-0000-4a00-9b00-000000000001"   -- the global permission set
function state.seed_security()
  return {
    identities = {
      { id = 1, account = "SANDBOX\\admin", kind = "User", sid = "S-1-5-21-1004336348-1177238915-682003330-1001" },
      { id = 2, account = "SANDBOX\\operator", kind = "User", sid = "S-1-5-21-1004336348-1177238915-682003330-1002" },
    },
    roles = {
      { id = 1, name = "Administrator", description = "Every permission", email = "", enabled = true,
        private = false, immutable = false, permission_set_id = state.PERMISSION_SET_ID,
        permissions = { "AdminPortal:Read", "Agents:Modify", "Certificates:Read", "Certificates:Import",
          "Certificates:Revoke", "Certificates:Recover", "Certificates:EditMetadata", "CertificateCollections:Modify",
          "CertificateEnrollment:EnrollPFX", "CertificateEnrollment:EnrollCSR", "CertificateStoreManagement:Schedule",
          "PkiManagement:Modify", "SecuritySettings:Modify", "WorkflowManagement:Modify" },
        identities = { "SANDBOX\\admin" } },
    },
    next_identity = 3, next_role = 2,
  }
end

---------------------------------------------------------------- mutable state
function state.fresh()
  local s = {
    version = 1,
    next_job = 1,
    next_item = 1,
    certificates = {},   -- index == certificate id
    requests = {},       -- index == request id
    jobs = {},
    stores = state.seed_stores(),
  }
  for _, st in ipairs(s.stores) do st.inventory = {} end
  return s
end

function state.store_by_id(s, id)
  if type(id) ~= "string" then return nil end
  id = id:lower()
  for _, st in ipairs(s.stores) do
    if st.Id == id then return st end
  end
end

function state.certificate(s, id)
  id = math.tointeger(id)
  return id and s.certificates[id] or nil
end

function state.request(s, id)
  id = math.tointeger(id)
  return id and s.requests[id] or nil
end

function state.add_certificate(s, cert)
  cert.id = #s.certificates + 1
  s.certificates[cert.id] = cert
  return cert
end

function state.add_request(s, req)
  req.id = #s.requests + 1
  s.requests[req.id] = req
  return req
end

---------------------------------------------------------------- persistence
-- Loads DIR/state.json; falls back to a fresh state when absent or unreadable.
function state.load(dir)
  local data = dir and util.read_file(dir .. "/state.json")
  if not data then return state.fresh() end
  local s, err = util.decode(data)
  if type(s) ~= "table" or s.version ~= 1 then
    util.log("ignoring unreadable %s/state.json: %s", dir, tostring(err or "bad version"))
    return state.fresh()
  end
  -- JSON round-trips numbers as floats; ids are integers.
  for _, list in ipairs{ s.certificates, s.requests, s.jobs } do
    for _, r in ipairs(list) do
      for k, v in pairs(r) do
        if type(v) == "number" and math.tointeger(v) and k ~= "due" then r[k] = math.tointeger(v) end
      end
    end
  end
  for _, st in ipairs(s.stores) do
    st.ContainerId = math.tointeger(st.ContainerId)
    st.CertStoreType = math.tointeger(st.CertStoreType)
    for _, item in ipairs(st.inventory) do
      item.cert_id = math.tointeger(item.cert_id)
      item.item_id = math.tointeger(item.item_id)
    end
  end
  s.next_job, s.next_item = math.tointeger(s.next_job), math.tointeger(s.next_item)
  return s
end

-- Atomic write, mode 0600 (util.write_private): retained private keys are in it.
function state.save(s, dir)
  if not dir then return end
  local ok, err = pcall(util.write_private, dir .. "/state.json", util.encode(s))
  if not ok then util.log("cannot save state: %s", tostring(err)) end
end

-- Persistence by construction: saves (with --data) after a request that may
-- have changed the state: any non-GET request that reached a handler, or one
-- during which the job sweep completed a job. Handlers do nothing for it.
function state.persist(sandbox, req)
  if sandbox.persistent and (req == true or req.changed or (req.routed and req.method ~= "GET")) then
    state.save(sandbox.state, sandbox.dir)
  end
end

return state
