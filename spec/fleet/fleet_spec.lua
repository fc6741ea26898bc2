-- keyfactor.fleet against a real redis-server (127.0.0.1, a free port, no
-- persistence) and the sandbox: workers killed with SIGKILL at every stage of
-- the claim protocol, and four worker processes sharing one queue with one of
-- them killed in the middle of its jobs.  Each certificate must be renewed
-- exactly once (counted in the sandbox's request log and in the certificates
-- themselves) and no job may stay unacknowledged.
local fixture = require "support.fixture"
local pki = require "keyfactor.pki"
local claim = require "keyfactor.fleet.claim"
local redis = require "support.redis"

local sh = fixture.sh

local ROOT = sh("pwd"):match("^(.-)%s*$")
local LEASE = 5                -- short, so taken-over claims resolve within the spec

describe("fleet", function()
  local sb, kf, fleet, port, dir, env
  local key = pki.key { type = "EC" }   -- EC: the sandbox's renewals stay quick

  fixture.live(function(s, k)
    sb, kf = s, k
    fleet = require "keyfactor.fleet"
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    port = redis.start(dir, "redis")
    assert(fixture.poll(function() return select(2, sh("redis-cli -p " .. port .. " ping")) == 0 end, 10))
    env = ("KEYFACTOR_HOSTNAME=%s KEYFACTOR_API_PATH=KeyfactorAPI KEYFACTOR_USERNAME='%s' "
      .. "KEYFACTOR_PASSWORD=%s KEYFACTOR_CA_CERT=%s KF_REDIS_HOST=127.0.0.1 KF_REDIS_PORT=%d "
      .. "LUA_PATH='%s/lua/?.lua;%s/lua/?/init.lua;;' LUA_CPATH='%s/build/lua5.4/?.so;;' ")
      :format(sb.base, sb.username, sb.password, sb.ca_file, port, ROOT, ROOT, ROOT)
  end)

  lazy_teardown(function()
    if dir then
      redis.stop(dir, "redis")
      sh("rm -rf " .. dir)
    end
  end)

  -- n fresh certificates with unique subjects; returns their ids and CNs
  local function enroll(n, prefix)
    local fns = {}
    for i = 1, n do
      fns[i] = function(k)
        local cn = fixture.unique(prefix .. i)
        local r = assert(k:enroll { CSR = pki.csr { key = key, subject = "CN=" .. cn }, Template = "WebServer",
          format = "PEM" })
        return { id = r.CertificateInformation.KeyfactorId, cn = cn }
      end
    end
    local certs, errs = kf:parallel(fns, { progress = false })
    assert.is_nil(next(errs))
    return certs
  end

  local function member(prefix, extra)
    local opts = { kf = kf, redis = { host = "127.0.0.1", port = port }, prefix = prefix, name = "recoverer",
      lease = LEASE, settle = 0.5, reclaim_idle = 0.5 }
    for k, v in pairs(extra or {}) do opts[k] = v end
    return fleet.new(opts)
  end

  -- Every certificate of `certs` has exactly one newer certificate, and its
  -- RenewalClaim names it.
  local function assert_renewed_once(certs)
    for _, c in ipairs(certs) do
      local same = fixture.collect(kf:certificates { query = 'IssuedCN -eq "' .. c.cn .. '"',
        includeRevoked = true, includeExpired = true })
      assert.equal(2, #same, "certificates for " .. c.cn)
      local newer = same[1].Id == c.id and same[2] or same[1]
      local old = assert(kf:certificate(c.id, { includeMetadata = true }))
      local mark = claim.parse(old.Metadata[claim.FIELD], c.id)
      assert.is_table(mark, c.cn)
      assert.equal("renewed", mark.state)
      assert.equal(newer.Id, mark.new)
    end
  end

  local function renew_posts(status)
    local n = 0
    for _, r in ipairs(fixture.requests(sb, "POST", "/Enrollment/Renew")) do
      if r.status == status then n = n + 1 end
    end
    return n
  end

  local function assert_drained(f)
    local s = f:status()
    assert.same({ 0, 0, 0, 0 }, { s.pending, s.stream, s.queued, s.due })
  end

  it("ignores a mark that is about another certificate (one copied by a renewal)", function()
    local value = claim.format("claimed", { of = 7, after = 9, at = 100, by = "w", token = "ab" })
    assert.same({ state = "claimed", of = 7, after = 9, at = 100, by = "w", token = "ab" }, claim.parse(value, 7))
    assert.is_nil(claim.parse(value, 8))
    assert.is_nil(claim.parse("", 7))
  end)

  it("resolves a worker killed at any stage without a second renewal and without losing one", function()
    local stages = { "claimed", "settled", "renewing", "in-flight", "renewed", "recorded" }
    local certs = enroll(#stages, "crash")
    local before = renew_posts(200)
    -- the renewal POST of the in-flight case is held 1 s, and killed 0.3 s in
    sb:fault { method = "POST", path = "/KeyfactorAPI/Enrollment/Renew", delay_ms = 1000, times = 1 }
    local commands = {}
    for i, stage in ipairs(stages) do
      local f = member("crash:" .. stage)
      assert.equal(1, f:schedule { days = 400, query = 'IssuedCN -eq "' .. certs[i].cn .. '"' })
      commands[i] = ("%s lua5.4 spec/fleet/crash_worker.lua %d crash:%s %s %d; echo \"%s:$?\""):format(env, port,
        stage, stage, LEASE, stage)
    end
    -- the in-flight worker first, alone, so the delayed POST is its own
    local out = sh(commands[4])
    assert.truthy(out:find("in-flight:137", 1, true), out)
    table.remove(commands, 4)
    out = sh(table.concat(commands, " & ") .. "; wait")
    for i, stage in ipairs(stages) do
      if i ~= 4 then assert.truthy(out:find(stage .. ":137", 1, true), out) end
    end
    for _, stage in ipairs(stages) do
      local f = member("crash:" .. stage)
      assert.equal(1, f:status().pending, stage)      -- died holding its job
      f:work { idle_exit = 0.2, block = 0.2, max_seconds = 3 * LEASE }
      assert_drained(f)
    end
    assert_renewed_once(certs)
    -- one renewal answered per certificate, the killed in-flight one never answered
    assert.equal(#stages, renew_posts(200) - before)
  end)

  it("with deploy off, says renewed and never deployed everywhere (the log and keyfactor-fleet work)", function()
    local certs = enroll(2, "nodeploy")
    local lines = {}
    local f = member("nodeploy", { deploy = false, log = function(line) lines[#lines + 1] = line end })
    assert.equal(1, f:schedule { days = 400, query = 'IssuedCN -eq "' .. certs[1].cn .. '"' })
    assert.equal(1, f:work { idle_exit = 0.2, block = 0.2, max_seconds = 3 * LEASE }.renewed)
    local text = table.concat(lines, "\n")
    assert.truthy(text:find("recoverer: certificate " .. certs[1].id .. " renewed %-> %d+\n")
      or text:find("recoverer: certificate " .. certs[1].id .. " renewed %-> %d+$"), text)
    assert.is_nil(text:find("everywhere", 1, true), text)
    local query = " --prefix nodeploy-cli --query " .. "'IssuedCN -eq \"" .. certs[2].cn .. "\"'"
    local out = sh(env .. "bin/keyfactor-fleet schedule --days 400" .. query)
    assert.truthy(out:find("scheduled 1 certificates", 1, true), out)
    out = sh(env .. "bin/keyfactor-fleet work --no-deploy --idle-exit 0.5 --prefix nodeploy-cli --lease " .. LEASE
      .. " --settle 0.5 2>&1")
    assert.truthy(out:find(": 1 renewed, 0 already renewed, 0 pending approval, 0 deferred, 0 failed\n", 1, true), out)
    assert.is_nil(out:find("everywhere", 1, true), out)
    assert_renewed_once(certs)
  end)

  it("renews after the Retry-After of a 429 answer to the renewal POST", function()
    local certs = enroll(1, "busy")
    local f = member("busy")
    assert.equal(1, f:schedule { days = 400, query = 'IssuedCN -eq "' .. certs[1].cn .. '"' })
    sb:fault { method = "POST", path = "/KeyfactorAPI/Enrollment/Renew", status = 429, retry_after = 1, times = 1 }
    local counts = f:work { idle_exit = 0.2, block = 0.2, max_seconds = 3 * LEASE }
    assert.equal(1, counts.renewed)
    local posts = fixture.requests(sb, "POST", "/Enrollment/Renew")
    local refused, done = posts[#posts - 1], posts[#posts]
    assert.same({ 429, 200 }, { refused.status, done.status })
    assert.is_true(done.started - refused.started >= 1, "the Retry-After was not honoured")
    assert_renewed_once(certs)
    assert_drained(f)
  end)

  it("releases the claim when the server refuses the renewal, and renews on the next schedule", function()
    local certs = enroll(1, "refused")
    local f = member("refused")
    local only = 'IssuedCN -eq "' .. certs[1].cn .. '"'
    assert.equal(1, f:schedule { days = 400, query = only })
    sb:fault { method = "POST", path = "/KeyfactorAPI/Enrollment/Renew", status = 400, times = 1 }
    assert.equal(1, f:work { idle_exit = 0.2, block = 0.2, max_seconds = 3 * LEASE }.failed)
    local s = f:status()
    assert.equal(1, s.failed)
    assert.equal(0, s.pending)
    local old = assert(kf:certificate(certs[1].id, { includeMetadata = true }))
    assert.equal("released", claim.parse(old.Metadata[claim.FIELD], certs[1].id).state)
    assert.equal(1, f:schedule { days = 400, query = only })
    assert.equal(1, f:work { idle_exit = 0.2, block = 0.2, max_seconds = 3 * LEASE }.renewed)
    assert.equal(0, f:status().failed)
    assert_renewed_once(certs)
  end)

  it("four workers share one queue, some jobs delivered twice; one killed with SIGKILL mid-batch: "
    .. "nothing lost, nothing doubled", function()
    local n = 24
    local certs = enroll(n, "fleet")
    local before = renew_posts(200)
    sb:fault { method = "POST", path = "/KeyfactorAPI/Enrollment/Renew", delay_ms = 100, times = 1000 }
    local f = member("fleet4")
    for _, c in ipairs(certs) do
      f.db:zadd(f.keys.due, 0, string.format("%d", c.id))
    end
    f:promote()
    -- what a Redis failover can do: deliver a job twice (here six of them)
    for i = 1, 6 do f.db:xadd(f.keys.jobs, "*", "certificate", string.format("%d", certs[i].id)) end
    local outs = {}
    local launch = {}
    for w = 1, 4 do
      outs[w] = dir .. "/w" .. w .. ".out"
      launch[#launch + 1] = ("%s bin/keyfactor-fleet work --prefix fleet4 --name w%d --concurrency 3 "
        .. "--max-seconds 60 --batch 6 --lease %d --settle 0.5 --reclaim-idle 1 --idle-exit 1 >%s 2>&1 & echo $!")
        :format(env, w, LEASE, outs[w])
    end
    local pids = {}
    for pid in sh(table.concat(launch, "; ")):gmatch("(%d+)") do pids[#pids + 1] = pid end
    assert.equal(4, #pids)
    -- kill w1 once it has finished two jobs (it holds up to four more)
    assert(fixture.poll(function()
      local text = sh("cat " .. outs[1])
      local _, done = text:gsub(": certificate %d+ ", "")
      return done >= 2
    end, 30, 0.02))
    sh("kill -KILL " .. pids[1])
    local held = f.db:xpending(f.keys.jobs, "renewers", "-", "+", 100, "w1")
    assert.is_true(#held > 0, "w1 held no job when killed")
    sh("for p in " .. table.concat(pids, " ", 2) .. "; do while kill -0 $p 2>/dev/null; do sleep 0.1; done; done")
    sb:clear_faults()
    assert_drained(f)
    local status = sh(env .. "bin/keyfactor-fleet status --prefix fleet4")
    assert.truthy(status:find("due 0, queued 0, stream 0, pending 0, failed 0", 1, true), status)
    local usage, code = sh(env .. "bin/keyfactor-fleet work --concurrency")
    assert.equal(2, code)
    assert.truthy(usage:find("--concurrency needs a value", 1, true), usage)
    assert_renewed_once(certs)
    assert.equal(n, renew_posts(200) - before)
  end)

  -- `n` certificates of one subject `cn`, 10 days from expiry, keys kept on the server
  local function short_lived(n, cn, template)
    local out = {}
    for i = 1, n do
      local info = assert(kf:request("POST", "/Enrollment/PFX", { headers = { ["x-certificateformat"] = "STORE" },
        body = { Template = template or "WebServer", Subject = "CN=" .. cn, ValidityDays = 10,
                 Timestamp = os.date("!%Y-%m-%dT%H:%M:%SZ") } })).CertificateInformation
      out[i] = info.KeyfactorId ~= 0 and info.KeyfactorId or info.KeyfactorRequestId
    end
    return out
  end

  local function pkcs12_store()
    for st in kf:stores() do
      if st.ClientMachine == "app02.sandbox.local" then return st.Id end
    end
  end

  it("six certificates of one subject, renewed at once: each gets its own renewal, in its place in the store "
     .. "(a certificate of the same subject is not taken for another one's renewal)", function()
    local cn = fixture.unique("six")
    local ids = short_lived(6, cn)
    local store = pkcs12_store()
    for i, id in ipairs(ids) do
      assert(kf:deploy { CertificateId = id, Stores = { { StoreId = store, Alias = cn .. "-" .. i } } })
    end
    assert(kf:wait_deployed(ids, { store }, { timeout = 30, interval = 0.1 }))
    local f = member("six", { concurrency = 6, wait = 20 })
    local only = 'IssuedCN -eq "' .. cn .. '"'
    assert.equal(6, f:schedule { days = 30, query = only })
    local counts = f:work { idle_exit = 0.2, block = 0.2, max_seconds = 6 * LEASE }
    assert.equal(6, counts.renewed)
    assert.equal(6, counts.complete)
    local all = fixture.collect(kf:certificates { query = only, includeLocations = true })
    assert.equal(12, #all)
    local successors = {}
    for i, id in ipairs(ids) do
      local old = assert(kf:certificate(id, { includeMetadata = true, includeLocations = true }))
      local mark = claim.parse(old.Metadata[claim.FIELD], id)
      assert.equal("renewed", mark.state)
      assert.is_nil(successors[mark.new], "two certificates renewed as " .. tostring(mark.new))
      successors[mark.new] = true
      assert.same({}, old.Locations)
      local new = assert(kf:certificate(mark.new, { includeLocations = true }))
      assert.equal(cn .. "-" .. i, new.Locations[1].Alias)
    end
    assert.equal(0, f:schedule { days = 30, query = only })     -- complete: nothing left to do
    assert_drained(f)
  end)

  it("a renewal waiting for approval stays pending and is finished by a later round once approved", function()
    local cn = fixture.unique("approve")
    local request = short_lived(1, cn, "WebServerApproval")[1]
    assert(kf:approve { request })
    local old = assert(kf:certificate { CertRequestId = request }).Id
    local f = member("approve", { recheck = 0.5 })
    assert.equal(1, f:schedule { days = 30, query = 'IssuedCN -eq "' .. cn .. '"' })
    local counts = f:work { idle_exit = 0.2, block = 0.2, max_seconds = 2 }
    assert.equal(0, counts.renewed)
    assert.is_true(counts.pending >= 1)
    local mark = claim.parse(assert(kf:certificate(old, { includeMetadata = true })).Metadata[claim.FIELD], old)
    assert.equal("pending", mark.state)
    assert.equal(1, f:status().due)                       -- kept, to be looked at again
    assert(kf:approve { mark.request })
    counts = f:work { idle_exit = 0.2, block = 0.2, max_seconds = 3 * LEASE }
    assert.equal(1, counts.already)
    assert.equal(1, counts.complete)
    local new = assert(kf:certificate { CertRequestId = mark.request }).Id
    assert.equal(new, claim.parse(assert(kf:certificate(old, { includeMetadata = true })).Metadata[claim.FIELD],
      old).new)
    assert_drained(f)
  end)

  it("waits at most a quarter of the lease for a Retry-After of hours", function()
    local certs = enroll(1, "hours")
    local f = member("hours")
    assert.equal(1, f:schedule { days = 400, query = 'IssuedCN -eq "' .. certs[1].cn .. '"' })
    sb:fault { method = "POST", path = "/KeyfactorAPI/Enrollment/Renew", status = 503, retry_after = 7200, times = 1 }
    local core = require "keyfactor.core"
    local started = core.now()
    local counts = f:work { idle_exit = 0.2, block = 0.2, max_seconds = 2 * LEASE }
    assert.is_true(core.now() - started < 2 * LEASE, "slept the Retry-After")
    assert.equal(1, counts.renewed)
    assert_renewed_once(certs)
  end)

  it("a renewal the server finished after the client gave up is found by its claim, not renewed again, "
     .. "and a decoy of the same subject is not taken for it", function()
    local certs = enroll(1, "late")
    local impatient = fixture.client(sb, { timeout = 1, retries = 0 })
    local f = member("late", { kf = impatient })
    assert.equal(1, f:schedule { days = 400, query = 'IssuedCN -eq "' .. certs[1].cn .. '"' })
    local before = renew_posts(200)
    sb:fault { method = "POST", path = "/KeyfactorAPI/Enrollment/Renew", delay_ms = 2500, times = 1 }
    local first = f:run(f:take(1))[1]
    assert.equal("deferred", first.result)
    -- meanwhile someone enrolls a certificate of the same subject
    local decoy = assert(kf:enroll { CSR = pki.csr { key = key, subject = "CN=" .. certs[1].cn },
      Template = "WebServer", format = "PEM" }).CertificateInformation.KeyfactorId
    fixture.poll(function() return renew_posts(200) > before end, 5)
    require("keyfactor.core").sleep(LEASE + 1.5)
    f.db:zadd(f.keys.due, 0, string.format("%d", certs[1].id))
    local counts = f:work { idle_exit = 0.2, block = 0.2, max_seconds = 3 * LEASE }
    assert.equal(1, counts.already)
    assert.equal(1, renew_posts(200) - before)
    local old = assert(kf:certificate(certs[1].id, { includeMetadata = true }))
    local mark = claim.parse(old.Metadata[claim.FIELD], certs[1].id)
    assert.equal("renewed", mark.state)
    assert.is_true(mark.new ~= decoy)
    assert.equal(old.IssuedDN, assert(kf:certificate(mark.new)).IssuedDN)
    impatient:close()
  end)

  it("compares a claim's age with the server's clock (its Date header), not a host clock that jumped", function()
    local certs = enroll(1, "clock")
    local id = certs[1].id
    -- another worker's fresh claim, written on the server's time
    local _, _, headers = kf:request("GET", "/Certificates/" .. id)
    local server_now = assert(claim.http_date(headers.date))
    assert(claim.set_mark(kf, id, claim.format("claimed", { of = id, after = id, at = server_now, by = "other",
      token = "0123456789abcdef" })))
    local real_time = os.time
    -- this host's clock jumped ten leases ahead
    os.time = function(t) return t and real_time(t) or real_time() + 10 * LEASE end -- luacheck: ignore 122
    local ok, result = pcall(claim.renew_once, kf, id, { owner = "jumped", lease = LEASE, settle = 0.2 })
    os.time = real_time -- luacheck: ignore 122
    assert(ok, result)
    assert.equal("deferred", result.result)
    assert.equal("claimed by other", result.reason)
    -- when the claim expires, on this host's (jumped) clock, which schedules the retry
    assert.is_true(math.abs(result.retry_at - (real_time() + 10 * LEASE + LEASE + 1)) <= 2, tostring(result.retry_at))
    assert.equal(1, #fixture.collect(kf:certificates { query = 'IssuedCN -eq "' .. certs[1].cn .. '"' }))
  end)
end)
