-- Fidelity to Keyfactor Command 25 (issue 22): the sandbox's enrollment and
-- enrollment-pattern answers hold exactly the fields of the models in
-- command-25-models.md, with their types. The model tables are read from that
-- file at test time (it is reference material kept outside the project:
-- $KEYFACTOR_REFERENCE_DIR, or ../shared/reference beside the checkout).
local fixture = require "support.fixture"
local cjson = require "cjson"
local core = require "keyfactor.core"
local command25 = require "support.models"    -- reads and parses command-25-models.md

-- The decoder marks empty arrays with core.array_mt; a non-empty one has [1].
local function is_array(v)
  return type(v) == "table" and (getmetatable(v) == core.array_mt or v[1] ~= nil)
end
local function is_object(v) return type(v) == "table" and not is_array(v) end

local GUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"
local ISO = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d"

-- Problems of `value` against the Go SDK type `kind` (see the file's
-- conventions), appended to `out`: stricter than support.models' checker
-- (every field present, enums integers), as enrollment answers are.
local conform
local function check_model(models, name, value, where, out)
  local model = models[name]
  if not is_object(value) then
    out[#out + 1] = where .. " must be an object (" .. name .. ")"
    return
  end
  if not model then return end      -- a model the file does not transcribe
  local known = {}
  for _, f in ipairs(model.fields) do
    known[f.name] = true
    if value[f.name] == nil then out[#out + 1] = where .. "." .. f.name .. " is missing (" .. name .. ")" end
    conform(models, f.type, value[f.name], where .. "." .. f.name, out)
  end
  for key in pairs(value) do
    if not known[key] then out[#out + 1] = where .. "." .. tostring(key) .. " is not in " .. name end
  end
end

function conform(models, kind, value, where, out)
  if value == nil then return end
  local nullable, base = kind:match("^(Nullable)(.*)$")
  if nullable then
    if value == cjson.null then return end
    kind = ({ String = "string", Int32 = "int32", Int64 = "int64", Bool = "bool", Time = "time.Time" })[base] or base
  end
  local function bad(what) out[#out + 1] = string.format("%s must be %s (%s), not %s", where, what, kind,
    value == cjson.null and "null" or type(value)) end
  local item = kind:match("^%[%](.+)$")
  if item then
    if not is_array(value) then return bad("an array") end
    for i, v in ipairs(value) do conform(models, item, v, where .. "[" .. i .. "]", out) end
    return
  end
  local map = kind:match("^map%[string%](.+)$")
  if map then
    -- a Go map decodes null as nil: Command sends null for an empty EnrollmentContext
    if value == cjson.null then return end
    if not is_object(value) then return bad("an object") end
    for k, v in pairs(value) do conform(models, map, v, where .. "." .. tostring(k), out) end
    return
  end
  if kind == "int32" or kind == "int64" then
    if math.type(value) ~= "integer" then bad("an integer") end
  elseif kind == "string" then
    if type(value) ~= "string" then bad("a string") end
  elseif kind == "string (uuid)" then
    if type(value) ~= "string" or not value:match(GUID) then bad("a GUID") end
  elseif kind == "bool" then
    if type(value) ~= "boolean" then bad("a boolean") end
  elseif kind == "time.Time" then
    if type(value) ~= "string" or not value:match(ISO) then bad("an ISO 8601 date-time") end
  elseif kind == "interface{}" then
    return
  elseif kind:match("^CSSCMSCoreEnums") then
    if math.type(value) ~= "integer" then bad("an integer enum") end
  else
    check_model(models, kind, value, where, out)
  end
end

describe("sandbox answers against the Command 25 models", function()
  local sb, models
  local loaded = command25.load()
  local text = loaded and true

  lazy_setup(function()
    if loaded then
      models = loaded.models
      sb = fixture.sandbox()
    end
  end)
  lazy_teardown(function() if sb then sb:stop() end end)

  -- status and body, decoded as the client decodes it: integers stay
  -- integers, arrays carry core.array_mt (so [] and {} differ)
  local function http(method, path, opts)
    local status, _, _, raw = sb:http(method, path, opts)
    return status, core.decode_json(raw)
  end

  local function problems(name, value, where)
    local out = {}
    check_model(models, name, value, where or "$", out)
    return out
  end

  it("reads the model tables it checks against, and finds a wrong answer wrong", function()
    if not text then return pending("command-25-models.md was not found (set KEYFACTOR_REFERENCE_DIR)") end
    for _, name in ipairs { "EnrollmentPatternsEnrollmentPatternResponse",
        "CSSCMSDataModelModelsPkcs12CertificateResponse", "EnrollmentPFXEnrollmentManagementResponse" } do
      assert.is_true(#models[name].fields >= 3, name)
    end
    local bad = problems("EnrollmentPatternsEnrollmentPatternTemplateResponse",
      { Id = "1", TemplateName = cjson.null, CommonName = "x", ConfigurationTenant = "t", FriendlyName = "f",
        Extra = 1 })
    table.sort(bad)
    assert.are.same({ "$.Extra is not in EnrollmentPatternsEnrollmentPatternTemplateResponse",
      "$.Id must be an integer (int32), not string",
      "$.RequiresApproval is missing (EnrollmentPatternsEnrollmentPatternTemplateResponse)" }, bad)
  end)

  it("GET /EnrollmentPatterns and /EnrollmentPatterns/{id}", function()
    if not text then return pending("command-25-models.md was not found (set KEYFACTOR_REFERENCE_DIR)") end
    local status, list = http("GET", "/EnrollmentPatterns")
    assert.are.equal(200, status)
    assert.are.equal(2, #list)
    local found = {}
    for i, pattern in ipairs(list) do
      for _, p in ipairs(problems("EnrollmentPatternsEnrollmentPatternResponse", pattern, "$[" .. i .. "]")) do
        found[#found + 1] = p
      end
    end
    local _, one = http("GET", "/EnrollmentPatterns/1")
    for _, p in ipairs(problems("EnrollmentPatternsEnrollmentPatternResponse", one)) do found[#found + 1] = p end
    assert.are.same({}, found)
  end)

  it("enrollment answers: PFX v1 (issued, pending), CSR (issued, pending), PFX v2 with stores", function()
    if not text then return pending("command-25-models.md was not found (set KEYFACTOR_REFERENCE_DIR)") end
    local found, checked = {}, 0
    local function check(name, label, method, path, opts)
      local status, body = http(method, path, opts)
      assert.are.equal(200, status, label .. ": " .. cjson.encode(body))
      for _, p in ipairs(problems(name, body, label)) do found[#found + 1] = p end
      checked = checked + 1
    end
    local PFX = { ["x-certificateformat"] = "PFX" }
    local pfx = "CSSCMSDataModelModelsEnrollmentPFXEnrollmentResponse"
    check(pfx, "pfx", "POST", "/Enrollment/PFX", { headers = PFX, body = { EnrollmentPatternId = 1,
      Subject = "CN=models.example.com", Password = "pw", KeyType = "ECC", Metadata = { Owner = "m" } } })
    check(pfx, "jks", "POST", "/Enrollment/PFX", { headers = { ["x-certificateformat"] = "JKS" },
      body = { EnrollmentPatternId = 1, Subject = "CN=jks.example.com", Password = "pw" } })
    check(pfx, "pfx pending", "POST", "/Enrollment/PFX", { headers = PFX, body = { EnrollmentPatternId = 2,
      Subject = "CN=wait.example.com", Password = "pw" } })
    local _, csr = fixture.csr("models-csr.example.com")
    local csr_model = "CSSCMSDataModelModelsEnrollmentCSREnrollmentResponse"
    check(csr_model, "csr", "POST", "/Enrollment/CSR", { headers = { ["x-certificateformat"] = "PEM" },
      body = { EnrollmentPatternId = 1, CSR = csr:toPEM(), IncludeChain = true } })
    check(csr_model, "csr pending", "POST", "/Enrollment/CSR", { headers = { ["x-certificateformat"] = "DER" },
      body = { EnrollmentPatternId = 2, CSR = csr:toPEM() } })
    local _, stores = http("GET", "/CertificateStores")
    check("EnrollmentPFXEnrollmentManagementResponse", "v2", "POST", "/Enrollment/PFX", {
      headers = { ["x-certificateformat"] = "PFX", ["x-keyfactor-api-version"] = "2" },
      body = { EnrollmentPatternId = 1, Subject = "CN=v2-models.example.com", Password = "pw",
        Stores = { { StoreId = stores[1].Id, Alias = "models" } } } })
    assert.are.same({}, found)
    print(string.format("\n  Command 25 models: %d enrollment answers hold their model's fields and types", checked))
  end)
end)
