-- keyfactor.renewal against a live sandbox: renewal recorded on the old
-- certificate, deployed in its place (same alias, Overwrite) in every store,
-- confirmed by the server; resumable and idempotent.
local fixture = require "support.fixture"
local renewal = require "keyfactor.renewal"
local query = require "keyfactor.query"

local DAY = 86400

describe("keyfactor.renewal", function()
  local sb, kf
  local store = {}        -- ClientMachine -> store id

  fixture.live(function(s, k)
    sb, kf = s, k
    for st in kf:stores() do store[st.ClientMachine] = st.Id end
  end)

  -- A certificate for `cn` expiring in `days` (the sandbox's ValidityDays),
  -- its key kept on the server; the enrollment answer.
  local function enroll_short(cn, days, template)
    return assert(kf:request("POST", "/Enrollment/PFX", { headers = { ["x-certificateformat"] = "STORE" },
      body = { Template = template or "WebServer", Subject = "CN=" .. cn, ValidityDays = days,
               Timestamp = os.date("!%Y-%m-%dT%H:%M:%SZ") } })).CertificateInformation
  end
  local function expiring(cn, days) return enroll_short(cn, days or 10).KeyfactorId end

  local function place(id, machine, alias, password)
    assert(kf:deploy { CertificateId = id, Stores = { { StoreId = store[machine], Alias = alias } },
      Password = password or "entry-1" })
    assert(kf:wait_deployed(id, { store[machine] }, { timeout = 30, interval = 0.1 }))
  end

  -- alias -> certificate ids in the store's inventory
  local function inventory(machine)
    local out = {}
    for _, entry in ipairs(assert(kf:request("GET", "/CertificateStores/" .. store[machine] .. "/Inventory"))) do
      out[entry.Name] = out[entry.Name] or {}
      table.insert(out[entry.Name], entry.Certificates[1].Id)
    end
    return out
  end

  local function of_subject(cn)
    return fixture.collect(kf:certificates { query = query.clause("IssuedCN", "-eq", cn), includeRevoked = true,
      includeExpired = true })
  end

  local function opts(cn, extra)
    local o = { within = 30 * DAY, query = query.clause("IssuedCN", "-eq", cn), password = "entry-1",
      wait = 20, interval = 0.1, settle = 0.2 }
    for k, v in pairs(extra or {}) do o[k] = v end
    if o.password == false then o.password = nil end
    return o
  end

  it("replaces the expiring certificate in a PEM and a PKCS12 store under the same alias; a decoy of the "
     .. "same subject changes nothing; a run after success does nothing", function()
    local cn = fixture.unique("decoy")
    local old = expiring(cn, 10)
    place(old, "web01.sandbox.local", "web-tls")
    place(old, "app01.sandbox.local", "app-tls")
    local decoy = expiring(cn, 200)       -- someone else's certificate of the same subject
    local plan = assert(renewal.plan(kf, opts(cn)))
    assert.are.equal(1, #plan.items)
    assert.are.equal(old, plan.items[1].CertificateId)
    assert.are.equal("renew, then deploy to 2 stores", plan.items[1].Action)
    assert.are.equal(2, #of_subject(cn))                 -- the plan changed nothing

    local report = assert(renewal.run(kf, opts(cn)))
    assert.is_true(report.Complete, renewal.line(report.Certificates[1]))
    local entry = report.Certificates[1]
    assert.are.equal("complete", entry.State)
    assert.is_true(entry.Renewed)
    local new = entry.SuccessorId
    assert.is_true(new > decoy)
    assert.are.equal(2, #entry.Stores)
    for _, p in ipairs(entry.Stores) do assert.is_true(p.Deployed, p.CertStoreId) end
    -- in both stores, in the old one's place; the old one is in none
    assert.are.same({ new }, inventory("web01.sandbox.local")["web-tls"])
    assert.are.same({ new }, inventory("app01.sandbox.local")["app-tls"])
    assert.are.same({}, assert(kf:certificate(old, { includeLocations = true })).Locations)
    assert.are.same({}, assert(kf:certificate(decoy, { includeLocations = true })).Locations)
    -- the successor is a real certificate of the same subject, from the CA
    local content = assert(kf:download { CertID = new, format = "PEM" }).Content
    local x509 = fixture.x509(content:find("BEGIN", 1, true) and content or fixture.base64_decode(content))
    assert.are.equal(cn, fixture.cn(x509))
    fixture.assert_issued_by_ca(sb, x509)
    -- the record, read back
    local mark = assert(kf:certificate(old, { includeMetadata = true })).Metadata.RenewalClaim
    assert.truthy(mark:find("^renewed of=" .. old .. " new=" .. new .. " "), mark)

    local before = fixture.log_mark(sb)
    local again = assert(renewal.run(kf, opts(cn)))
    assert.is_true(again.Complete)
    assert.is_false(again.Certificates[1].Renewed)
    assert.are.equal(new, again.Certificates[1].SuccessorId)
    assert.are.equal(0, fixture.seen_since(sb, before, "POST", "/KeyfactorAPI/Enrollment/Renew"))
    assert.are.equal(0, fixture.seen_since(sb, before, "POST", "/KeyfactorAPI/Enrollment/PFX/Deploy"))
    assert.are.equal(0, fixture.seen_since(sb, before, "PUT", "/KeyfactorAPI/Certificates/Metadata"))
    assert.are.equal(3, #of_subject(cn))
  end)

  it("a deploy that needs an entry password stays incomplete, saying so; the rerun with it deploys the same "
     .. "successor", function()
    local cn = fixture.unique("entry")
    local old = expiring(cn, 10)
    place(old, "web02.sandbox.local", "web")
    place(old, "app02.sandbox.local", "app")
    local first = assert(renewal.run(kf, opts(cn, { password = false })))
    assert.is_false(first.Complete)
    local entry = first.Certificates[1]
    assert.are.equal("incomplete", entry.State)
    assert.are.equal(1, #entry.Reasons, renewal.line(entry))
    assert.truthy(entry.Reasons[1]:find("web02.sandbox.local:/etc/ssl/web02.pem", 1, true), entry.Reasons[1])
    assert.truthy(entry.Reasons[1]:find("PEM stores take an entry password", 1, true), entry.Reasons[1])
    local new = entry.SuccessorId
    assert.are.same({ new }, inventory("app02.sandbox.local")["app"])   -- PKCS12 needs none
    assert.are.same({ old }, inventory("web02.sandbox.local")["web"])

    local second = assert(renewal.run(kf, opts(cn)))
    assert.is_true(second.Complete, renewal.line(second.Certificates[1]))
    assert.are.equal(new, second.Certificates[1].SuccessorId)
    assert.is_false(second.Certificates[1].Renewed)
    assert.are.same({ new }, inventory("web02.sandbox.local")["web"])
    assert.are.equal(2, #of_subject(cn))
  end)

  it("a run stopped between renewing and recording (or deploying) is finished by the next, with one renewal",
     function()
    for _, stage in ipairs { "renewed", "recorded" } do
      local cn = fixture.unique("killed-" .. stage)
      local old = expiring(cn, 10)
      place(old, "web03.sandbox.local", "w3-" .. stage)
      local o = opts(cn, { on_stage = function(s) if s == stage then error("killed at " .. s) end end })
      local first = assert(renewal.run(kf, o))
      assert.is_false(first.Complete)
      assert.truthy(tostring(first.Certificates[1].Reasons[1]):find("killed at " .. stage, 1, true))
      assert.are.equal(2, #of_subject(cn))                     -- renewed, not deployed
      local second = assert(renewal.run(kf, opts(cn)))
      assert.is_true(second.Complete, renewal.line(second.Certificates[1]))
      assert.is_false(second.Certificates[1].Renewed)
      assert.are.equal(2, #of_subject(cn), stage)              -- still one renewal
      assert.are.same({ second.Certificates[1].SuccessorId }, inventory("web03.sandbox.local")["w3-" .. stage])
    end
  end)

  it("a store whose job fails leaves the certificate incomplete with the job's message", function()
    local cn = fixture.unique("broken")
    local old = expiring(cn, 10)
    place(old, "web01.sandbox.local", "ok-" .. cn)
    sb:plant { StoreId = store["broken.sandbox.local"], CertificateId = old, Alias = "broken-" .. cn }
    local report = assert(renewal.run(kf, opts(cn)))
    assert.is_false(report.Complete)
    local entry = report.Certificates[1]
    assert.are.equal("incomplete", entry.State)
    assert.are.equal(1, #entry.Reasons, renewal.line(entry))
    assert.truthy(entry.Reasons[1]:find("^store broken.sandbox.local:/etc/ssl/broken.pem %(.*alias broken%-"),
      entry.Reasons[1])
    assert.truthy(entry.Reasons[1]:find("the job failed: Unable to reach broken.sandbox.local", 1, true),
      entry.Reasons[1])
    assert.are.same({ entry.SuccessorId }, inventory("web01.sandbox.local")["ok-" .. cn])
  end)

  it("a renewal waiting for approval is pending, and the run after the approval finishes it", function()
    local cn = fixture.unique("approval")
    local old = enroll_short(cn, 10, "WebServerApproval").KeyfactorRequestId
    assert(kf:approve { old })
    old = assert(kf:certificate { CertRequestId = old }).Id
    place(old, "app03.sandbox.local", "approved")
    local first = assert(renewal.run(kf, opts(cn)))
    local entry = first.Certificates[1]
    assert.is_false(first.Complete)
    assert.are.equal("pending", entry.State)
    assert.is_nil(entry.SuccessorId)
    assert.truthy(entry.Reasons[1]:find("^renewal request " .. entry.RequestId .. ": .*pending approval"),
      entry.Reasons[1])
    local still = assert(renewal.run(kf, opts(cn)))
    assert.are.equal("pending", still.Certificates[1].State)
    assert.are.equal(entry.RequestId, still.Certificates[1].RequestId)
    local waiting = {}
    for r in kf:pending() do waiting[r.Id] = true end
    assert.is_true(waiting[entry.RequestId])
    assert(kf:approve { entry.RequestId })
    local done = assert(renewal.run(kf, opts(cn)))
    assert.is_true(done.Complete, renewal.line(done.Certificates[1]))
    local new = done.Certificates[1].SuccessorId
    assert.are.equal(entry.RequestId, assert(kf:certificate(new)).CertRequestId)
    assert.are.same({ new }, inventory("app03.sandbox.local")["approved"])
    assert.are.equal(2, #of_subject(cn))
  end)

  it("an odd subject (CN=evil\\, a quote) is looked up as itself and stops nothing", function()
    local evil = fixture.unique("evil") .. "\\"
    local quoted = fixture.unique("say-\"hi\"")
    local a = expiring(evil, 10)
    local b = expiring(quoted, 10)
    assert.are.equal(a, assert(kf:certificate { IssuedCN = evil }).Id)
    assert.are.equal(b, assert(kf:certificate { IssuedCN = quoted }).Id)
    local dn = assert(kf:certificate(a)).IssuedDN          -- RFC 4514: CN=evil\\ (the DN escapes it too)
    assert.are.equal(a, assert(kf:certificate { IssuedDN = dn }).Id)
    local report = assert(renewal.run(kf, opts(evil, { query = query.clause("Id", "-eq", a) .. " OR "
      .. query.clause("Id", "-eq", b) })))
    assert.is_true(report.Complete, renewal.line(report.Certificates[1]))
    assert.are.equal(2, #report.Certificates)
  end)

  it("its one-line report names no subject it does not know, and no stores when it deploys nowhere", function()
    local missing = renewal.finish(kf, 987654321, { settle = 0.2 })
    assert.are.equal("failed", missing.State)
    assert.truthy(renewal.line(missing):find("^certificate 987654321: failed: "), renewal.line(missing))
    local cn = fixture.unique("line")
    local id = expiring(cn)
    place(id, "app01.sandbox.local", "line-a")
    local report = assert(renewal.run(kf, opts(cn, { deploy = false })))
    local entry = report.Certificates[1]
    assert.are.equal(string.format("certificate %d CN=%s: complete, renewed as %d", id, cn, entry.SuccessorId),
      renewal.line(entry))
  end)
end)
