-- Fidelity to Keyfactor's published schemas (issue 14 item 5): a full
-- workflow against the sandbox, every answer recorded, then all of them
-- validated in one run of spec/support/openapi_check.py (python3-jsonschema)
-- against the response schema of their endpoint in Keyfactor's OpenAPI
-- documents. Those documents are reference material kept outside the
-- project: $KEYFACTOR_REFERENCE_DIR, or ../shared/reference beside the checkout.
local sandbox = require "keyfactor.sandbox"
local fixture = require "support.fixture"
local cjson = require "cjson"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec/sandbox"
local root = here .. "/../.."

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() end
  return f ~= nil
end

local function reference_dir()
  local candidates = { os.getenv("KEYFACTOR_REFERENCE_DIR") or false, root .. "/../shared/reference",
    root .. "/../../shared/reference" }
  for _, dir in ipairs(candidates) do
    if dir and exists(dir .. "/keyfactor-v1-2022.openapi.yaml") then return dir end
  end
end

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function enc(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- Endpoints the 2022 document lacks (keyfactor-api.md §7.1): their answers
-- cannot be checked against it.
local UNDOCUMENTED = {
  "^GET /CertificateStores$", "^GET /CertificateStores/[%x%-]+$", "^POST /CertificateStores$",
  "^PUT /CertificateStores$", "^GET /CertificateStoreContainers/%d+$",
}

describe("sandbox answers against Keyfactor's OpenAPI documents", function()
  local sb
  local records = {}

  -- The 2022 document describes the 2022 generation (Command 25's additions
  -- are checked against command-25-models.md by models_spec.lua).
  lazy_setup(function() sb = sandbox.start{ port = 0, job_delay = 0.05, generation = "2022" } end)
  lazy_teardown(function() if sb then sb:stop() end end)

  -- One API call, recorded; returns status and decoded body.
  local function call(method, path, opts)
    opts = opts or {}
    local status, body, _, raw = sb:http(method, path, opts)
    records[#records + 1] = { method = method, path = path, status = status, body = raw,
      version = opts.headers and opts.headers["x-keyfactor-api-version"] or "1" }
    return status, body
  end
  local function get(path, query) return call("GET", path, { query = query }) end
  local function post(path, body, headers) return call("POST", path, { body = body, headers = headers }) end
  local function int(v) return math.tointeger(v) end

  local function flow()
    local PFX, STORE = { ["x-certificateformat"] = "PFX" }, { ["x-certificateformat"] = "STORE" }
    -- catalog
    get("/Status/Endpoints")
    get("/Templates"); get("/Templates/1"); get("/Templates/2"); get("/Templates", "sq.returnLimit=1")
    get("/CertificateAuthority"); get("/CertificateAuthority/1")
    get("/Enrollment/PFX/Context/My"); get("/Enrollment/CSR/Context/My")
    get("/CertificateStoreTypes"); get("/CertificateStoreTypes/101"); get("/CertificateStoreTypes/102")
    get("/CertificateStoreTypes/Name/PEM"); get("/CertificateStoreTypes/Name/pkcs12")
    get("/CertificateStoreContainers"); get("/CertificateStoreContainers/1")
    local _, stores = get("/CertificateStores", "certificateStoreQuery.returnLimit=100")
    local by_machine = {}
    for _, st in ipairs(stores) do by_machine[st.ClientMachine] = st end
    local web01, app01, broken = by_machine["web01.sandbox.local"], by_machine["app01.sandbox.local"],
      by_machine["broken.sandbox.local"]
    get("/CertificateStores/" .. web01.Id)
    local _, agents = get("/Agents"); get("/Agents/" .. agents[1].AgentId); get("/Agents", "pq.returnLimit=2")
    get("/MetadataFields")
    call("POST", "/Agents/" .. agents[1].AgentId .. "/Reset")
    post("/Agents/Approve", { agents[1].AgentId })
    -- enrollment
    local _, stored = post("/Enrollment/PFX", { Template = "WebServer", Subject = "CN=schema.example.com",
      SANs = { dns = { "schema.example.com" } }, Metadata = { Owner = "schema" } }, STORE)
    local id = int(stored.CertificateInformation.KeyfactorId)
    local _, pfx = post("/Enrollment/PFX", { Template = "WebServer", Subject = "CN=pfx.example.com",
      Password = "pw", IncludeChain = true }, PFX)
    local pfx_id = int(pfx.CertificateInformation.KeyfactorId)
    local _, pending = post("/Enrollment/PFX", { Template = "WebServerApproval", Subject = "CN=wait.example.com",
      Password = "pw" }, PFX)
    local _, to_deny = post("/Enrollment/PFX", { Template = "WebServerApproval", Subject = "CN=no.example.com",
      Password = "pw" }, PFX)
    local _, csr = fixture.csr("csr.example.com", { "csr.example.com" })
    post("/Enrollment/CSR", { Template = "WebServer", CSR = csr:toPEM(), IncludeChain = true },
      { ["x-certificateformat"] = "PEM" })
    post("/Enrollment/CSR", { Template = "WebServer", CSR = csr:toPEM() }, { ["x-certificateformat"] = "DER" })
    post("/Enrollment/CSR", { Template = "WebServerApproval", CSR = csr:toPEM() }, { ["x-certificateformat"] = "PEM" })
    local v2 = { ["x-certificateformat"] = "PFX", ["x-keyfactor-api-version"] = "2" }
    post("/Enrollment/PFX", { Template = "WebServer", Subject = "CN=v2.example.com", Password = "pw",
      Stores = { { StoreId = app01.Id, Alias = "v2", Overwrite = true } } }, v2)
    post("/Enrollment/PFX", { Template = "WebServerApproval", Subject = "CN=v2wait.example.com", Password = "pw",
      Stores = { { StoreId = app01.Id } } }, v2)
    -- deploy, with a refused store and a failing one
    post("/Enrollment/PFX/Deploy", { CertificateId = id, Password = "entry-pw", Stores = {
      { StoreId = web01.Id, Alias = "schema", Overwrite = true }, { StoreId = app01.Id },
      { StoreId = broken.Id }, { StoreId = "00000000-0000-4000-8000-00000000beef" } } })
    -- workflow
    get("/Workflow/Certificates/Pending"); get("/Workflow/Certificates/" .. int(pending.CertificateInformation
      .KeyfactorRequestId))
    post("/Workflow/Certificates/Approve", "[" .. int(pending.CertificateInformation.KeyfactorRequestId) .. ", 999999]")
    post("/Workflow/Certificates/Deny", { Comment = "no", CertificateRequestIds = {
      int(to_deny.CertificateInformation.KeyfactorRequestId) } })
    get("/Workflow/Certificates/Denied")
    os.execute("sleep 0.4")   -- the jobs run
    -- certificates
    get("/Certificates"); get("/Certificates", "pq.queryString=" .. enc('IssuedCN -contains "example"')
      .. "&pq.returnLimit=2&includeLocations=true")
    get("/Certificates/" .. id, "includeLocations=true&includeMetadata=true")
    get("/Certificates/Locations/" .. id)
    call("PUT", "/Certificates/Metadata",
      { body = { Id = id, Metadata = { Environment = "Test", TicketNumber = "7" } } })
    post("/Certificates/Recover", { CertID = id, Password = "pw", IncludeChain = true }, PFX)
    post("/Certificates/Recover", { CertID = id, Password = "pw" }, { ["x-certificateformat"] = "PEM" })
    post("/Certificates/Recover", { CertID = pfx_id, Password = "pw" }, PFX)          -- no key: 400
    post("/Certificates/Download", { CertID = id, IncludeChain = true })
    post("/Certificates/Download", { CertID = id, IncludeChain = true, ChainOrder = "RootFirst" },
      { ["x-certificateformat"] = "PEM" })
    post("/Certificates/Download", { CertID = id }, { ["x-certificateformat"] = "DER" })
    -- renew, replace, add, remove, inventory
    local _, renewed = post("/Enrollment/Renew", { CertificateId = id })
    post("/Enrollment/PFX/Replace", { ExistingCertificateId = id, CertificateId = int(renewed.KeyfactorId),
      Password = "entry-pw" })
    post("/CertificateStores/Certificates/Add", { CertificateId = pfx_id, Schedule = { Immediate = true },
      CertificateStores = { { CertificateStoreId = app01.Id, Alias = "added" } } })
    os.execute("sleep 0.2")
    get("/CertificateStores/" .. app01.Id .. "/Inventory")
    get("/CertificateStores/" .. app01.Id .. "/Inventory", "query.returnLimit=1&query.pageReturned=2")
    post("/CertificateStores/Certificates/Remove", { Schedule = { Immediate = true },
      CertificateStores = { { CertificateStoreId = app01.Id, Alias = "added" } } })
    -- store management
    local _, created = call("POST", "/CertificateStores", { body = { ContainerId = 1,
      ClientMachine = "web01.sandbox.local", StorePath = "/etc/ssl/schema.pem", CertStoreType = 101,
      AgentId = web01.AgentId, Properties = "{}" } })
    call("PUT", "/CertificateStores", { body = { Id = created.Id, CreateIfMissing = true } })
    call("DELETE", "/CertificateStores/" .. created.Id)
    local _, new_type = post("/CertificateStoreTypes", { Name = "Java Keystore", ShortName = "JKS" })
    call("DELETE", "/CertificateStoreTypes/" .. int(new_type.StoreType))
    os.execute("sleep 0.2")
    get("/OrchestratorJobs/JobHistory"); get("/OrchestratorJobs/JobHistory", "pq.queryString="
      .. enc("Result -eq 3"))
    post("/Certificates/Revoke", { CertificateIds = { pfx_id }, Comment = "done", Reason = 5 })
    -- error answers carry Keyfactor's error body
    get("/Certificates/999999"); get("/CertificateStoreTypes/999"); get("/Agents/00000000-0000-4000-8000-000000000000")
    post("/Enrollment/PFX/Deploy", { CertificateId = id })
    post("/Certificates/Revoke", '{"CertificateIds":{},"Comment":"x"}')
  end

  -- Runs openapi_check.py over `list`; returns its result table.
  local function validate(dir, list)
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(cjson.encode(list))
    f:close()
    local script = root .. "/spec/support/openapi_check.py"
    local p = assert(io.popen(string.format("python3 %s %s %s 2>&1", shell_quote(script),
      shell_quote(dir), shell_quote(path))))
    local out = p:read("a")
    p:close()
    os.remove(path)
    local ok, result = pcall(cjson.decode, out)
    assert(ok, "openapi_check.py failed: " .. out)
    return result
  end

  it("reports answers that break the schema", function()
    local dir = reference_dir()
    if not dir then return pending("Keyfactor's OpenAPI documents were not found (set KEYFACTOR_REFERENCE_DIR)") end
    local bad = {
      { "GET", "/Templates/1", 200, '{"Id":1,"AllowedEnrollmentTypes":3}', "AllowedEnrollmentTypes" },
      { "GET", "/CertificateAuthority", 200, '[{"Id":1,"Agent":""}]', "Agent" },
      { "GET", "/Certificates/Locations/1", 200, '{"Details":[{"StoreType":101}]}', "StoreType" },
      { "GET", "/Certificates/2", 200, '{"Id":2.0}', "$.Id: 2.0 is not of type" },
      { "GET", "/Certificates/1", 200, '{"Id":1,"KeyfactorID":1}', "KeyfactorID" },
      { "POST", "/Certificates/Revoke", 200, '{"RevokedIds":{}}', "RevokedIds" },
      { "GET", "/Agents", 200, '[{"LastSeen":"yesterday"}]', "LastSeen" },
      { "POST", "/Certificates/Recover", 200, '{"PFX":"not base64!"}', "PFX" },
      { "GET", "/Certificates/1", 404, '{"Message":"gone"}', "ErrorCode" },
      { "PUT", "/Certificates/Metadata", 204, '{}', "no body" },
      { "POST", "/Enrollment/PFX", 200, '{"SuccessfulStores":[],"FailedStores":[]}', "FailedStores", "2" },
    }
    local list = {}
    for i, b in ipairs(bad) do
      list[i] = { method = b[1], path = b[2], status = b[3], body = b[4], version = b[6] or "1" }
    end
    local result = validate(dir, list)
    for i, b in ipairs(bad) do
      local request = string.format("%s %s -> %d", b[1], b[2], b[3])
      local found = false
      for _, e in ipairs(result.errors) do
        -- each record's problems name its field; several records share a request line
        if e.request == request and e.error:find(b[5], 1, true) then found = true end
      end
      assert.is_true(found, "not reported: record " .. i .. " (" .. b[5] .. ")")
    end
  end)

  it("validates every answer of a full workflow", function()
    local dir = reference_dir()
    if not dir then
      pending("Keyfactor's OpenAPI documents were not found (set KEYFACTOR_REFERENCE_DIR)")
      return
    end
    flow()
    local result = validate(dir, records)
    local problems = {}
    for _, e in ipairs(result.errors) do problems[#problems + 1] = e.request .. ": " .. e.error end
    assert.same({}, problems)
    for _, key in ipairs(result.no_schema) do
      local known = false
      for _, pattern in ipairs(UNDOCUMENTED) do known = known or key:match(pattern) ~= nil end
      assert.is_true(known, key .. " has no schema in the document")
    end
    local endpoints = 0
    for _ in pairs(result.endpoints) do endpoints = endpoints + 1 end
    assert.is_true(result.checked >= 64, "answers checked: " .. result.checked)
    assert.is_true(endpoints >= 40, "endpoints checked: " .. endpoints)
    print(string.format("\n  schema check: %d answers of %d endpoints valid; %d answers of endpoints the "
      .. "document lacks", result.checked, endpoints, #records - result.checked))
  end)
end)
