-- What "The calls" (docs/gen-reference.lua, the endpoint table) tells a
-- script about the answers it meets, checked against a live sandbox: the
-- documented short-lived certificate snippet runs as written, the NotAfter
-- query finds what is due, Locations name their store CertStoreId (and
-- deploy takes it back as StoreId), and the renewal's new id is KeyfactorId
-- at the top of its answer.
local fixture = require "support.fixture"
local endpoints = require "keyfactor.api.endpoints"

local read = require("support.files").must

describe("the answers the reference describes", function()
  local kf, calls_md
  fixture.live(function(_, k)
    kf = k
    local out, code = fixture.sh("mkdir -p build/docs && lua5.4 docs/gen-reference.lua build/docs/answers-spec.md")
    assert(code == 0, out)
    calls_md = read("build/docs/answers-spec.md")
  end)

  -- The Lua code block that follows `marker` in the generated page.
  local function snippet(marker)
    local at = assert(calls_md:find(marker, 1, true), "the reference lost: " .. marker)
    return assert(calls_md:match("```lua\n(.-)\n```", at), "no code after " .. marker)
  end

  it("runs the sandbox's short-lived certificate snippet, and the NotAfter query finds it", function()
    local code = snippet("**Trying a renewal in the sandbox.**") .. "\nreturn id, renewed"
    local env = setmetatable({ kf = kf }, { __index = _G })
    local id, renewed = assert(load(code, "=reference", "t", env))()
    local cert = assert(kf:certificate(id))
    local y, m, d = cert.NotAfter:match("^(%d+)-(%d+)-(%d+)T")
    local days = (os.time { year = y, month = m, day = d, hour = 12 } - os.time()) / 86400
    assert.is_true(days > 1 and days < 4.5, cert.NotAfter)
    -- the renewal answer: flat, the new id in KeyfactorId
    assert.is_nil(renewed.CertificateInformation)
    assert.is_true(fixture.is_integer(renewed.KeyfactorId) and renewed.KeyfactorId ~= id)
    assert.truthy(endpoints.get("renew").returns:find("KeyfactorId (the new certificate's id)", 1, true))
    -- the expiry query of the reference: finds the 3-day one, not a 365-day one
    local long = fixture.enroll(kf, fixture.unique("long")).CertificateInformation.KeyfactorId
    local due = {}
    local query = snippet("so queries compare them as text:"):match("local soon = [^\n]+")
    local soon = assert(load(query .. "\nreturn soon", "=reference", "t", { os = os }))()
    for c in kf:certificates { query = 'NotAfter -le "' .. soon .. '"' } do due[c.Id] = true end
    assert.is_true(due[id])
    assert.is_nil(due[long])
    assert.truthy(endpoints.get("certificates").example:find("NotAfter -le", 1, true))
  end)

  it("Locations name the store CertStoreId, and deploy takes it as StoreId", function()
    local store = fixture.store_ids(kf, 1, "PKCS12")[1]
    local id = fixture.enroll(kf, fixture.unique("where"), { format = "STORE", Password = nil })
      .CertificateInformation.KeyfactorId
    assert(kf:deploy { CertificateId = id, Stores = { { StoreId = store, Alias = "where" } }, Password = "p" })
    assert(kf:wait_deployed(id, { store }, { interval = 0.05 }))
    local cert = assert(kf:certificate(id, { includeLocations = true }))
    local loc = cert.Locations[1]
    assert.are.equal(store, loc.CertStoreId)
    assert.are.equal("where", loc.Alias)
    assert.is_nil(loc.StoreId)
    -- the documented translation deploys again where it is
    assert(kf:deploy { CertificateId = id, Password = "p",
                       Stores = { { StoreId = loc.CertStoreId, Alias = loc.Alias, Overwrite = true } } })
    local returns = endpoints.get("certificate").returns
    assert.truthy(returns:find("CertStoreId", 1, true) and returns:find("StoreId", 1, true), returns)
    assert.truthy(calls_md:find("{StoreId = loc.CertStoreId, Alias = loc.Alias}", 1, true))
  end)
end)
