-- Argument checking: every call raises a Lua error naming the call and the
-- field, at the caller's line, before anything is sent (the sandbox log
-- proves it); calls on a closed client raise.
local unpack = table.unpack or unpack   -- luacheck: ignore 113
local fixture = require "support.fixture"
local keyfactor = require "keyfactor"

local GUID = "5a4db0c5-0104-4e5a-9d00-000000000004"
local ZERO = "00000000-1111-2222-3333-444444444444"

-- { description, function(kf, sb), substrings the message must contain }
local CASES = {
  -- keyfactor.new
  { "new: options not a table", function() keyfactor.new("https://x") end,
    { "keyfactor.new", "options must be a table" } },
  { "new: url missing", function() keyfactor.new {} end, { "keyfactor.new", "options.url is required" } },
  { "new: url of the wrong type", function() keyfactor.new { url = 42 } end, { "options.url must be a string" } },
  { "new: url scheme", function() keyfactor.new { url = "ftp://host/KeyfactorAPI" } end,
    { "keyfactor.new", "options.url must start with https://" } },
  { "new: unknown option", function(_, sb) keyfactor.new { url = sb.url, colour = "red" } end,
    { "keyfactor.new", "options.colour is not a known field" } },
  { "new: password missing", function(_, sb) keyfactor.new { url = sb.url, username = "u" } end,
    { "options.password is required" } },
  { "new: two credential kinds",
    function(_, sb) keyfactor.new { url = sb.url, username = "u", password = "p", token = "t" } end,
    { "keyfactor.new", "give one of" } },
  { "new: oauth without token_url", function(_, sb)
      keyfactor.new { url = sb.url, oauth = { client_id = "c", client_secret = "s" } }
    end, { "options.oauth.token_url is required" } },
  { "new: oauth unknown field", function(_, sb)
      keyfactor.new { url = sb.url,
        oauth = { token_url = sb.token_url, client_id = "c", client_secret = "s", realm = "x" } }
    end, { "options.oauth.realm is not a known field" } },
  { "new: timeout of the wrong type", function(_, sb) keyfactor.new { url = sb.url, timeout = "60" } end,
    { "options.timeout must be a number" } },
  { "new: negative retries", function(_, sb) keyfactor.new { url = sb.url, retries = -1 } end,
    { "options.retries must not be negative" } },
  { "new: headers values", function(_, sb) keyfactor.new { url = sb.url, headers = { ["x-a"] = 1 } } end,
    { "options.headers.x-a must be a string" } },
  { "new: debug not a function", function(_, sb) keyfactor.new { url = sb.url, debug = true } end,
    { "options.debug must be a function" } },

  -- kf:enroll (PFX)
  { "enroll: no request", function(kf) kf:enroll() end, { "kf:enroll", "must be a table" } },
  { "enroll: neither pattern nor Template", function(kf) kf:enroll { Subject = "CN=a", Password = "p" } end,
    { "kf:enroll: EnrollmentPatternId, EnrollmentPattern (a pattern name) or Template is required" } },
  { "enroll: Subject missing", function(kf) kf:enroll { Template = "WebServer", Password = "p" } end,
    { "kf:enroll: Subject is required" } },
  { "enroll: Subject of the wrong type",
    function(kf) kf:enroll { Template = "WebServer", Subject = 5, Password = "p" } end,
    { "kf:enroll: Subject must be a string" } },
  { "enroll: unknown field",
    function(kf) kf:enroll { Template = "WebServer", Subject = "CN=a", Password = "p", Sans = {} } end,
    { "kf:enroll: Sans is not a known field" } },
  { "enroll: SANs entry not an array", function(kf)
      kf:enroll { Template = "WebServer", Subject = "CN=a", Password = "p", SANs = { dns = "a" } }
    end, { "kf:enroll: SANs.dns must be an array" } },
  { "enroll: SANs item not a string", function(kf)
      kf:enroll { Template = "WebServer", Subject = "CN=a", Password = "p", SANs = { dns = { "a", 2 } } }
    end, { "kf:enroll: SANs.dns[2] must be a string" } },
  { "enroll: Metadata value a table", function(kf)
      kf:enroll { Template = "WebServer", Subject = "CN=a", Password = "p", Metadata = { Owner = {} } }
    end, { "kf:enroll: Metadata.Owner must be a string, number or boolean" } },
  { "enroll: unknown format",
    function(kf) kf:enroll { Template = "WebServer", Subject = "CN=a", Password = "p", format = "P12" } end,
    { "kf:enroll: format must be one of" } },
  { "enroll: PFX without Password", function(kf) kf:enroll { Template = "WebServer", Subject = "CN=a" } end,
    { "kf:enroll: Password is required" } },
  { "enroll: Timestamp not ISO 8601", function(kf)
      kf:enroll { Template = "WebServer", Subject = "CN=a", Password = "p", Timestamp = "yesterday" }
    end, { "kf:enroll: Timestamp must be ISO 8601" } },
  { "enroll: RenewalCertificateId 0", function(kf)
      kf:enroll { Template = "WebServer", Subject = "CN=a", Password = "p", RenewalCertificateId = 0 }
    end, { "kf:enroll: RenewalCertificateId" } },
  { "enroll: IncludeChain of the wrong type", function(kf)
      kf:enroll { Template = "WebServer", Subject = "CN=a", Password = "p", IncludeChain = "yes" }
    end, { "kf:enroll: IncludeChain must be a boolean" } },

  -- kf:enroll (CSR)
  { "enroll CSR: empty CSR", function(kf) kf:enroll { CSR = "", Template = "WebServer" } end,
    { "kf:enroll: CSR must not be empty" } },
  { "enroll CSR: CSR of the wrong type", function(kf) kf:enroll { CSR = 1, Template = "WebServer" } end,
    { "kf:enroll: CSR must be a string" } },
  { "enroll CSR: neither pattern nor Template", function(kf) kf:enroll { CSR = "-----BEGIN" } end,
    { "kf:enroll: EnrollmentPatternId, EnrollmentPattern (a pattern name) or Template is required" } },
  { "enroll CSR: PFX-only field",
    function(kf) kf:enroll { CSR = "-----BEGIN", Template = "WebServer", Password = "p" } end,
    { "kf:enroll: Password is not a known field" } },
  { "enroll CSR: PFX format", function(kf) kf:enroll { CSR = "-----BEGIN", Template = "WebServer", format = "PFX" } end,
    { "kf:enroll: format must be one of \"PEM\", \"DER\"" } },

  -- kf:deploy
  { "deploy: StoreId of the wrong type", function(kf)
      kf:deploy { CertificateId = 1, Stores = { { StoreId = GUID }, { StoreId = 7 } } }
    end, { "kf:deploy: Stores[2].StoreId must be a string" } },
  { "deploy: StoreId not a GUID", function(kf) kf:deploy { CertificateId = 1, Stores = { { StoreId = "web01" } } } end,
    { "kf:deploy: Stores[1].StoreId must be a GUID" } },
  { "deploy: StoreId missing", function(kf) kf:deploy { CertificateId = 1, Stores = { { Alias = "a" } } } end,
    { "kf:deploy: Stores[1].StoreId is required" } },
  { "deploy: unknown field of a store", function(kf)
      kf:deploy { CertificateId = 1, Stores = { { StoreId = GUID, Overwrite = true, Pasword = "x" } } }
    end, { "kf:deploy: Stores[1].Pasword is not a known field" } },
  { "deploy: Overwrite of the wrong type", function(kf)
      kf:deploy { CertificateId = 1, Stores = { { StoreId = GUID, Overwrite = "yes" } } }
    end, { "kf:deploy: Stores[1].Overwrite must be a boolean" } },
  { "deploy: empty Stores", function(kf) kf:deploy { CertificateId = 1, Stores = {} } end,
    { "kf:deploy: Stores must have at least 1 item" } },
  { "deploy: no stores at all", function(kf) kf:deploy { CertificateId = 1 } end,
    { "kf:deploy: Stores (or the legacy StoreIds) is required" } },
  { "deploy: no certificate", function(kf) kf:deploy { Stores = { { StoreId = GUID } } } end,
    { "kf:deploy: CertificateId or RequestId is required" } },
  { "deploy: CertificateId a string",
    function(kf) kf:deploy { CertificateId = "12", Stores = { { StoreId = GUID } } } end,
    { "kf:deploy: CertificateId must be an integer" } },
  { "deploy: RequestId fractional", function(kf) kf:deploy { RequestId = 1.5, Stores = { { StoreId = GUID } } } end,
    { "kf:deploy: RequestId must be an integer" } },
  { "deploy: JobTime not ISO 8601", function(kf)
      kf:deploy { CertificateId = 1, Stores = { { StoreId = GUID } }, JobTime = "2024-01-01 10:00" }
    end, { "kf:deploy: JobTime must be ISO 8601" } },
  { "deploy: JobTime with a non-UTC offset", function(kf)
      kf:deploy { CertificateId = 1, Stores = { { StoreId = GUID } }, JobTime = "2024-01-01T10:00:00+02:00" }
    end, { "kf:deploy: JobTime must be ISO 8601 UTC" } },
  { "deploy: Password of the wrong type",
    function(kf) kf:deploy { CertificateId = 1, Stores = { { StoreId = GUID } }, Password = 1 } end,
    { "kf:deploy: Password must be a string" } },
  { "deploy: unknown top-level field", function(kf) kf:deploy { CertificateId = 1, Store = { { StoreId = GUID } } } end,
    { "kf:deploy: Store is not a known field" } },
  { "deploy: legacy StoreIds item", function(kf) kf:deploy { CertificateId = 1, StoreIds = { GUID, "nope" } } end,
    { "kf:deploy: StoreIds[2] must be a GUID" } },
  { "deploy: legacy StoreTypes without StoreTypeId", function(kf)
      kf:deploy { CertificateId = 1, StoreIds = { GUID }, StoreTypes = { { Alias = "a" } } }
    end, { "kf:deploy: StoreTypes[1].StoreTypeId is required" } },

  -- kf:renew
  { "renew: neither id nor thumbprint", function(kf) kf:renew {} end,
    { "kf:renew: CertificateId or Thumbprint is required" } },
  { "renew: id a string", function(kf) kf:renew { CertificateId = "1" } end,
    { "kf:renew: CertificateId must be an integer" } },
  { "renew: unknown field", function(kf) kf:renew { CertificateId = 1, Subject = "CN=x" } end,
    { "kf:renew: Subject is not a known field" } },
  { "renew: not a table", function(kf) kf:renew(5) end, { "kf:renew", "must be a table" } },

  -- kf:certificate
  { "certificate: id a string", function(kf) kf:certificate("12") end, { "kf:certificate: id must be an integer" } },
  { "certificate: id infinite", function(kf) kf:certificate(math.huge) end,
    { "kf:certificate: id must be an integer" } },
  { "certificate: id missing", function(kf) kf:certificate() end, { "kf:certificate: id must be an integer" } },
  { "certificate: option of the wrong type", function(kf) kf:certificate(1, { includeLocations = "yes" }) end,
    { "kf:certificate: opts.includeLocations must be a boolean" } },
  { "certificate: unknown option", function(kf) kf:certificate(1, { locations = true }) end,
    { "kf:certificate: opts.locations is not a known field" } },
  { "certificate: empty lookup", function(kf) kf:certificate {} end, { "kf:certificate: lookup needs one of" } },
  { "certificate: unknown lookup field", function(kf) kf:certificate { Colour = "red" } end,
    { "kf:certificate: lookup.Colour is not a known field" } },
  { "certificate: empty lookup value", function(kf) kf:certificate { Thumbprint = "" } end,
    { "kf:certificate: lookup.Thumbprint must not be empty" } },

  -- kf:certificates
  { "certificates: page_size 0", function(kf) kf:certificates { page_size = 0 } end,
    { "kf:certificates: opts.page_size must be at least 1" } },
  { "certificates: page_size a string", function(kf) kf:certificates { page_size = "2" } end,
    { "kf:certificates: opts.page_size must be an integer" } },
  { "certificates: query of the wrong type", function(kf) kf:certificates { query = 5 } end,
    { "kf:certificates: opts.query must be a string" } },
  { "certificates: unknown option", function(kf) kf:certificates { pagesize = 2 } end,
    { "kf:certificates: opts.pagesize is not a known field" } },
  { "certificates: includeRevoked of the wrong type", function(kf) kf:certificates { includeRevoked = 1 } end,
    { "kf:certificates: opts.includeRevoked must be a boolean" } },

  -- kf:revoke
  { "revoke: Comment missing", function(kf) kf:revoke { CertificateIds = { 1 } } end,
    { "kf:revoke: Comment is required" } },
  { "revoke: CertificateIds missing", function(kf) kf:revoke { Comment = "c" } end,
    { "kf:revoke: CertificateIds is required" } },
  { "revoke: CertificateIds empty", function(kf) kf:revoke { CertificateIds = {}, Comment = "c" } end,
    { "kf:revoke: CertificateIds must have at least 1 item" } },
  { "revoke: id a string", function(kf) kf:revoke { CertificateIds = { 1, "2" }, Comment = "c" } end,
    { "kf:revoke: CertificateIds[2] must be an integer" } },
  { "revoke: EffectiveDate",
    function(kf) kf:revoke { CertificateIds = { 1 }, Comment = "c", EffectiveDate = "now" } end,
    { "kf:revoke: EffectiveDate must be ISO 8601" } },
  { "revoke: unknown field", function(kf) kf:revoke { CertificateIds = { 1 }, Comment = "c", Reasons = 1 } end,
    { "kf:revoke: Reasons is not a known field" } },

  -- kf:stores, kf:store
  { "stores: query a table", function(kf) kf:stores { query = {} } end, { "kf:stores: opts.query must be a string" } },
  { "stores: ascending a number", function(kf) kf:stores { ascending = 1 } end,
    { "kf:stores: opts.ascending must be a boolean" } },
  { "stores: unknown option", function(kf) kf:stores { container = 1 } end,
    { "kf:stores: opts.container is not a known field" } },
  { "store: id a number", function(kf) kf:store(5) end, { "kf:store: id must be a string" } },
  { "store: id not a GUID", function(kf) kf:store("web01") end, { "kf:store: id must be a GUID" } },

  -- kf:pending, kf:approve, kf:deny
  { "pending: page_size negative", function(kf) kf:pending { page_size = -1 } end,
    { "kf:pending: opts.page_size must be at least 1" } },
  { "pending: unknown option", function(kf) kf:pending { state = 1 } end,
    { "kf:pending: opts.state is not a known field" } },
  { "approve: nothing", function(kf) kf:approve() end, { "kf:approve: ids is required" } },
  { "approve: empty array", function(kf) kf:approve {} end, { "kf:approve: ids must have at least 1 item" } },
  { "approve: id a string", function(kf) kf:approve { 1, "2" } end, { "kf:approve: ids[2] must be an integer" } },
  { "deny: comment missing", function(kf) kf:deny(1) end, { "kf:deny: comment is required" } },
  { "deny: empty comment", function(kf) kf:deny({ 1 }, "") end, { "kf:deny: comment must not be empty" } },
  { "deny: id a string", function(kf) kf:deny("1", "c") end, { "kf:deny: ids must be an integer" } },

  -- kf:wait_deployed
  { "wait_deployed: cert_id a string", function(kf) kf:wait_deployed("1", { GUID }) end,
    { "kf:wait_deployed: cert_id must be an integer" } },
  { "wait_deployed: no stores", function(kf) kf:wait_deployed(1, {}) end,
    { "kf:wait_deployed: store_ids must have at least 1 item" } },
  { "wait_deployed: store not a GUID", function(kf) kf:wait_deployed(1, { GUID, "web01" }) end,
    { "kf:wait_deployed: store_ids[2] must be a GUID" } },
  { "wait_deployed: timeout a string", function(kf) kf:wait_deployed(1, GUID, { timeout = "5" }) end,
    { "kf:wait_deployed: opts.timeout must be a number" } },
  { "wait_deployed: unknown option", function(kf) kf:wait_deployed(1, GUID, { every = 1 }) end,
    { "kf:wait_deployed: opts.every is not a known field" } },

  -- kf:request
  { "request: method a number", function(kf) kf:request(1, "/Status/Endpoints") end,
    { "kf:request: method must be a string" } },
  { "request: relative path", function(kf) kf:request("GET", "Status/Endpoints") end,
    { "kf:request: path must start with" } },
  { "request: body a number", function(kf) kf:request("POST", "/x", { body = 5 }) end,
    { "kf:request: opts.body must be a table or a string" } },
  { "request: header value a number", function(kf) kf:request("GET", "/x", { headers = { ["x-a"] = 1 } }) end,
    { "kf:request: opts.headers.x-a must be a string" } },
  { "request: unknown option", function(kf) kf:request("GET", "/x", { params = {} }) end,
    { "kf:request: opts.params is not a known field" } },

  -- kf:parallel
  { "parallel: fns not a table", function(kf) kf:parallel("f") end, { "kf:parallel: fns must be an array" } },
  { "parallel: item not a function", function(kf) kf:parallel { function() end, 5 } end,
    { "kf:parallel: fns[2] must be a function" } },
  { "parallel: concurrency 0", function(kf) kf:parallel({ function() end }, { concurrency = 0 }) end,
    { "kf:parallel: opts.concurrency must be at least 1" } },
  { "parallel: unknown option", function(kf) kf:parallel({ function() end }, { workers = 2 }) end,
    { "kf:parallel: opts.workers is not a known field" } },

  -- programming mistakes name the mistake (issue 13 item 14)
  { "status called with a dot", function(kf) kf.status() end,
    { "kf:status: called with '.' instead of ':'" } },
  { "enroll called with a dot", function(kf)
      kf.enroll { Template = "WebServer", Subject = "CN=a", Password = "p" }
    end, { "kf:enroll: called with '.' instead of ':'" } },
  { "deploy called with a dot on the client", function(kf) kf.deploy(kf == nil) end,
    { "kf:deploy: called with '.' instead of ':'" } },
  { "Store instead of Stores", function(kf) kf:deploy { CertificateId = 1, Store = { { StoreId = GUID } } } end,
    { "kf:deploy: Store is not a known field (did you mean Stores?)" } },
  { "certificateId instead of CertificateId", function(kf) kf:deploy { certificateId = 1, StoreIds = { GUID } } end,
    { "kf:deploy: certificateId is not a known field (did you mean CertificateId?)" } },
  { "a far miss suggests nothing", function(kf) kf:deploy { Zebra = 1 } end,
    { "kf:deploy: Zebra is not a known field" } },
  { "a nested near miss", function(kf) kf:deploy { CertificateId = 1, Stores = { { StoreID = GUID } } } end,
    { "kf:deploy: Stores[1].StoreID is not a known field (did you mean StoreId?)" } },
  -- new calls check before sending
  { "add_to_stores: store entry without id", function(kf)
      kf:add_to_stores { CertificateId = 1, CertificateStores = { { Alias = "a" } } }
    end, { "kf:add_to_stores: CertificateStores[1].CertificateStoreId is required" } },
  { "store_type: a table", function(kf) kf:store_type {} end, { "kf:store_type: id must be an integer" } },
  { "enroll: JobTime without Stores", function(kf)
      kf:enroll { Template = "WebServer", Subject = "CN=a", Password = "p", JobTime = os.time() }
    end, { "kf:enroll: JobTime needs Stores" } },
  { "delete_store: not a GUID", function(kf) kf:delete_store("web01") end,
    { "kf:delete_store: id must be a GUID" } },
  { "set_metadata: fields missing", function(kf) kf:set_metadata(1) end, { "kf:set_metadata: fields is required" } },

  -- bounds the endpoint table gives integers
  { "enroll: KeyLength out of range", function(kf)
      kf:enroll { Template = "WebServer", Subject = "CN=a", Password = "p", KeyLength = 20480 }
    end, { "kf:enroll: KeyLength must be from 512 to 16384, not 20480" } },
  { "enroll: RenewalCertificateId negative", function(kf)
      kf:enroll { Template = "WebServer", Subject = "CN=a", Password = "p", RenewalCertificateId = -4 }
    end, { "kf:enroll: RenewalCertificateId must be from 1 to 2147483647, not -4" } },
  { "enroll CSR: RenewalCertificateId 0", function(kf)
      kf:enroll { CSR = "-----BEGIN CERTIFICATE REQUEST-----", Template = "WebServer", RenewalCertificateId = 0 }
    end, { "kf:enroll: RenewalCertificateId must be from 1" } },
  { "create_store_type: PrivateKeyAllowed 3", function(kf)
      kf:create_store_type { Name = "X", ShortName = "X", PrivateKeyAllowed = 3 }
    end, { "kf:create_store_type: PrivateKeyAllowed must be from 0 to 2, not 3" } },
  { "pam_provider: id below the API's 0", function(kf) kf:pam_provider(-1) end,
    { "kf:pam_provider: id must be from 0 to 2147483647, not -1" } },
  { "stores: page_size 0", function(kf) kf:stores { page_size = 0 } end,
    { "kf:stores: opts.page_size must be at least 1, not 0" } },
  { "wait_deployed: concurrency 0", function(kf) kf:wait_deployed({ 1, 2 }, GUID, { concurrency = 0 }) end,
    { "kf:wait_deployed: opts.concurrency must be at least 1" } },
  { "wait_deployed: a certificate without its stores", function(kf)
      kf:wait_deployed({ 1, 2 }, { [1] = { GUID } })
    end, { "kf:wait_deployed: store_ids[2] must be an array, not nil" } },
  { "update_store: a field of create_store checked the same way", function(kf)
      kf:update_store { Id = GUID, CertStoreType = "PEM" }
    end, { "kf:update_store: CertStoreType must be an integer" } },
}

describe("argument checking", function()
  local sb, kf

  fixture.live(function(s, k) sb, kf = s, k end)

  for _, case in ipairs(CASES) do
    local description, fn, texts = case[1], case[2], case[3]
    it(description .. ": raises at the caller's line, naming the call and field; sends nothing", function()
      local before = #sb:requests()
      local message = fixture.raises(function() fn(kf, sb) end, unpack(texts))
      assert.matches("^[^\n]*validation_spec%.lua:%d+: ", message)
      assert.are.equal(before, #sb:requests())
    end)
  end

  it("leaves the caller's request table unchanged (JobTime number stays a number)", function()
    local req = { CertificateId = 123456, JobTime = os.time(), Stores = { { StoreId = ZERO } } }
    local _, err = kf:deploy(req)
    assert.are.equal(404, err.status)
    assert.are.equal("number", type(req.JobTime))
    assert.is_nil(req.Password)
  end)

  it("update_store takes create_store's fields, none required but Id; the CSR fields are the PFX ones", function()
    local endpoints = require "keyfactor.api.endpoints"
    local create, update = endpoints.get("create_store"), endpoints.get("update_store")
    assert.are.equal("Id", update.params[1].name)
    assert.is_true(update.params[1].required)
    assert.are.equal(#create.params + 1, #update.params)
    for i, param in ipairs(create.params) do
      local copy = update.params[i + 1]
      assert.are.equal(param.name, copy.name)
      assert.are.equal(param.check, copy.check)
      assert.is_nil(copy.required)
    end
    local enroll = endpoints.get("enroll")
    local pfx = {}
    for _, param in ipairs(enroll.params) do pfx[param.name] = param end
    local own = { CSR = true, forceEnroll = true, format = true }
    for _, param in ipairs(enroll.csr.params) do
      if not own[param.name] then assert.are.equal(pfx[param.name], param, param.name) end
    end
  end)

  it("a nested kf:parallel is refused inside the parallel run", function()
    local values, errs = kf:parallel { function(c) return c:parallel { function() end } end }
    assert.is_nil(values[1])
    assert.matches("kf:parallel: cannot be nested", tostring(errs[1]), 1, true)
  end)

  describe("a closed client", function()
    local closed

    lazy_setup(function()
      closed = fixture.client(sb)
      closed:close()
      closed:close()            -- closing twice is harmless
    end)

    local CALLS = {
      enroll = function(c) c:enroll { Template = "WebServer", Subject = "CN=a", Password = "p" } end,
      deploy = function(c) c:deploy { CertificateId = 1, Stores = { { StoreId = GUID } } } end,
      renew = function(c) c:renew { CertificateId = 1 } end,
      certificate = function(c) c:certificate(1) end,
      certificates = function(c) c:certificates() end,
      revoke = function(c) c:revoke { CertificateIds = { 1 }, Comment = "c" } end,
      stores = function(c) c:stores() end,
      store = function(c) c:store(GUID) end,
      store_types = function(c) c:store_types() end,
      containers = function(c) c:containers() end,
      pending = function(c) c:pending() end,
      approve = function(c) c:approve(1) end,
      deny = function(c) c:deny(1, "c") end,
      wait_deployed = function(c) c:wait_deployed(1, GUID) end,
      request = function(c) c:request("GET", "/Status/Endpoints") end,
      parallel = function(c) c:parallel { function() end } end,
      status = function(c) c:status() end,
    }
    local names = {}
    for name in pairs(CALLS) do names[#names + 1] = name end
    table.sort(names)

    for _, name in ipairs(names) do
      it("kf:" .. name .. " raises \"client is closed\" and sends nothing", function()
        local before = #sb:requests()
        fixture.raises(function() CALLS[name](closed) end, "kf:" .. name .. ": client is closed")
        assert.are.equal(before, #sb:requests())
      end)
    end

    it("says so in tostring", function()
      assert.matches("closed", tostring(closed))
    end)
  end)
end)
