-- bin/keyfactor against a live sandbox: each subcommand's output and exit
-- code, and the repl fed through stdin.
local fixture = require "support.fixture"
local cjson = require "cjson"

local BIN = "bin/keyfactor"

local function quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local read_file = require("support.files").must

describe("bin/keyfactor", function()
  local sb, kf, env, tmp

  -- Runs the tool with `args` (a shell word string) and the sandbox's
  -- environment (or `env_text`); `stdin` text is fed through a file.
  -- Returns stdout, stderr, exit code.
  local function run(args, stdin, env_text)
    local input = "/dev/null"
    if stdin then
      input = tmp .. ".in"
      local f = assert(io.open(input, "wb"))
      f:write(stdin)
      f:close()
    end
    local p = io.popen(string.format("env -u LUA_PATH -u LUA_CPATH %s %s %s <%s 2>%s; echo \"rc=$?\"",
      env_text or env, BIN, args, input, tmp .. ".err"))
    local out = p:read("*a")
    p:close()
    local code = tonumber(out:match("rc=(%d+)%s*$"))
    return (out:gsub("rc=%d+%s*$", "")), read_file(tmp .. ".err"), code
  end

  local function lines(text)
    local out = {}
    for line in text:gmatch("[^\n]+") do out[#out + 1] = line end
    return out
  end

  fixture.live(function(s, k)
    sb, kf = s, k
    local port = sb.url:match("^https://[^:/]+:(%d+)")
    env = table.concat({
      "KEYFACTOR_HOSTNAME=" .. quote("127.0.0.1:" .. port),
      "KEYFACTOR_USERNAME=" .. quote(sb.username), "KEYFACTOR_PASSWORD=" .. quote(sb.password),
      "KEYFACTOR_CA_CERT=" .. quote(sb.ca_file),
    }, " ")
    tmp = os.tmpname()
  end)
  lazy_teardown(function()
    if tmp then
      os.remove(tmp)
      os.remove(tmp .. ".err")
      os.remove(tmp .. ".in")
    end
  end)

  it("status checks the connection", function()
    local out, err, code = run("status")
    assert.are.equal(0, code, err)
    assert.truthy(out:find("^ok: " .. sb.url:gsub("%p", "%%%0") .. " %(%d+ endpoints%)\n$"), out)
    local json_out = run("--json status")
    assert.are.equal("table", type(cjson.decode(json_out)))
  end)

  it("certs prints one line per certificate, filtered by a query; --json an array", function()
    local cn = fixture.unique("cli")
    local a = fixture.enroll(kf, cn).CertificateInformation.KeyfactorId
    local b = fixture.enroll(kf, cn).CertificateInformation.KeyfactorId
    local out, err, code = run("certs " .. quote('IssuedCN -eq "' .. cn .. '"'))
    assert.are.equal(0, code, err)
    local got = lines(out)
    assert.are.equal(2, #got)
    for i, id in ipairs { a, b } do
      local pattern = "^certificate " .. id .. " CN=" .. cn:gsub("%p", "%%%0") .. " %(expires [%d-]+, active%)$"
      assert.truthy(got[i]:find(pattern), got[i])
    end
    local json_out = run("--json certs " .. quote('IssuedCN -eq "' .. cn .. '"'))
    local decoded = cjson.decode(json_out)
    assert.are.equal(2, #decoded)
    assert.are.equal(a, decoded[1].Id)
    assert.are.equal("[]\n", (run("--json certs " .. quote('IssuedCN -eq "nothing.invalid"'))))
  end)

  it("cert shows one certificate by id, thumbprint or serial", function()
    local info = fixture.enroll(kf, fixture.unique("one")).CertificateInformation
    for _, args in ipairs { tostring(info.KeyfactorId), "--thumbprint " .. info.Thumbprint,
                            "--serial " .. info.SerialNumber } do
      local out, err, code = run("cert " .. args)
      assert.are.equal(0, code, err)
      assert.truthy(out:find('Thumbprint = "' .. info.Thumbprint .. '"', 1, true), out)
      assert.truthy(out:find("Id = " .. info.KeyfactorId .. ",", 1, true), out)
    end
    local json_out = run("--json cert " .. info.KeyfactorId)
    assert.are.equal(info.Thumbprint, cjson.decode(json_out).Thumbprint)
  end)

  it("stores prints one line per store with its type name", function()
    local out, err, code = run("stores")
    assert.are.equal(0, code, err)
    local got = lines(out)
    assert.is_true(#got >= 6)
    for _, line in ipairs(got) do
      assert.truthy(line:find("^store %x+%-[%x-]+ [%w.-]+:/[^ ]+ %(P[EMKCS12]+%)$"), line)
    end
    assert.truthy(out:find("web01.sandbox.local:/etc/ssl/web01.pem (PEM)", 1, true), out)
    local restricted = lines((run("stores " .. quote("ContainerId -eq " .. fixture.RESTRICTED))))
    assert.is_true(#restricted >= 1 and #restricted < #got)
  end)

  it("pending lists requests waiting for approval", function()
    local cn = fixture.unique("approve")
    local r = assert(kf:enroll { Template = "WebServerApproval", Subject = "CN=" .. cn, format = "Store" })
    local out, err, code = run("pending")
    assert.are.equal(0, code, err)
    assert.truthy(out:find("request " .. r.CertificateInformation.KeyfactorRequestId .. " CN=" .. cn, 1, true), out)
  end)

  it("remote failures go to stderr with exit code 1", function()
    local out, err, code = run("cert 987654")
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.truthy(err:find("keyfactor: http 404", 1, true), err)
    local bad_env = env:gsub("KEYFACTOR_PASSWORD=%S+", "KEYFACTOR_PASSWORD=wrong-password")
    local _, err2, code2 = run("status", nil, bad_env)
    assert.are.equal(1, code2)
    assert.truthy(err2:find("auth 401", 1, true), err2)
    assert.is_nil(err2:find("wrong-password", 1, true))
  end)

  it("usage mistakes exit 2 with one line and a hint on stderr; --help, COMMAND --help, --version", function()
    local out, _, code = run("--help")
    assert.are.equal(0, code)
    assert.truthy(out:find("usage: keyfactor", 1, true))
    for _, name in ipairs { "enroll", "deploy", "renew", "revoke", "approve", "deny", "download", "recover",
                            "store-types", "containers" } do
      assert.truthy(out:find("\n  " .. name:gsub("%-", "%%-") .. " "), name)
    end
    out, _, code = run("certs --help")
    assert.are.equal(0, code)
    assert.truthy(out:find("^usage: keyfactor certs %[QUERY%]\n"), out)
    out = run("renew --help")
    assert.truthy(out:find("--expiring X", 1, true) and out:find("--dry-run", 1, true), out)
    out, _, code = run("--version")
    assert.are.equal(0, code)
    assert.truthy(out:find("^keyfactor 0%.1%.0 "), out)
    for _, args in ipairs { "", "frobnicate", "cert", "cert abc", "status extra", "--bogus status",
                            "certs --thumbprint X", "cert --serial", "deploy 1", "revoke", "renew --expiring soon" } do
      local o, err, c = run(args)
      assert.are.equal(2, c, "keyfactor " .. args)
      assert.are.equal("", o)
      local got = lines(err)
      assert.are.equal(2, #got, err)
      assert.truthy(got[1]:find("^keyfactor: "), err)
      assert.truthy(got[2]:find("keyfactor COMMAND --help", 1, true), err)
    end
    local _, err, c = run("status", nil, "KEYFACTOR_HOSTNAME=")
    assert.are.equal(2, c)
    assert.are.equal("keyfactor: keyfactor.from_env: KEYFACTOR_HOSTNAME is not set\n", err)
  end)

  it("store-types and containers list the catalog; an empty result says so", function()
    local out, err, code = run("store-types")
    assert.are.equal(0, code, err)
    assert.truthy(out:find("store type 101 PEM", 1, true), out)
    out = run("containers")
    assert.truthy(out:find("container " .. fixture.RESTRICTED .. " Restricted", 1, true), out)
    local o, e, c = run("certs " .. quote('IssuedCN -eq "nothing.invalid"'))
    assert.are.equal(0, c)
    assert.are.equal("", o)
    assert.are.equal("keyfactor: nothing found\n", e)
  end)

  it("enroll, deploy --wait, and --json keeps empty arrays and slashes as the server sent them", function()
    local cn = fixture.unique("cli-enroll")
    local out, err, code = run("enroll --template WebServer --subject " .. quote("CN=" .. cn) .. " --dns " .. cn)
    assert.are.equal(0, code, err)
    local id = tonumber(out:match("^enrolled certificate (%d+) CN="))
    assert.truthy(id, out)
    local pem = fixture.store_ids(kf, fixture.WEB, "PEM")[1]
    out, err, code = run("deploy " .. id .. " --store " .. pem .. " --password entry-1 --wait")
    assert.are.equal(0, code, err)
    assert.are.equal("deployed certificate " .. id .. " to 1 store(s)\n", out)
    local text = run("--json cert " .. id)
    assert.truthy(text:find('"SSLLocations":[]', 1, true), text)
    assert.truthy(text:find('"StorePath":"/etc/ssl/', 1, true), text)
    assert.is_nil(text:find("\\/"), text)
    assert.are.equal(pem, cjson.decode(text).Locations[1].CertStoreId)
    local pfx = tmp .. ".enrolled.pfx"
    local _, enroll_err, enroll_code = run("enroll --template WebServer --subject " .. quote("CN=" .. cn)
      .. " --password pfx-2 --out " .. pfx)
    assert.are.equal(0, enroll_code, enroll_err)
    local key, cert = require("openssl.pkcs12").parse(read_file(pfx), "pfx-2")
    os.remove(pfx)
    assert.truthy(key and cert)
    assert.are.equal(cn, fixture.cn(cert))
    local pending = run("enroll --template WebServerApproval --subject " .. quote("CN=" .. cn))
    assert.truthy(pending:find("^request %d+ waiting for approval"), pending)
  end)

  it("patterns lists the enrollment patterns; enroll --pattern takes a name or an id, with key choices", function()
    local out, err, code = run("patterns")
    assert.are.equal(0, code, err)
    assert.are.equal("pattern 1 WebServer template WebServer\n"
      .. "pattern 2 WebServerApproval template WebServerApproval (approval)\n", out)
    out = run("--json patterns " .. quote('Name -eq "WebServer"'))
    assert.are.equal(1, #cjson.decode(out))
    local cn = fixture.unique("cli-pattern")
    local pfx = tmp .. ".pattern.pfx"
    out, err, code = run("enroll --pattern WebServer --subject " .. quote("CN=" .. cn)
      .. " --key-type ECC --curve 1.3.132.0.34 --owner-role Administrator --password pfx-3 --out " .. pfx)
    assert.are.equal(0, code, err)
    assert.truthy(out:find("^enrolled certificate %d+ CN="), out)
    local key = require("openssl.pkcs12").parse(read_file(pfx), "pfx-3")
    os.remove(pfx)
    assert.truthy(tostring(key:getParameters().group:toPEM()):find("BgUrgQQAIg==", 1, true))   -- P-384
    out, err, code = run("enroll --pattern 1 --subject " .. quote("CN=" .. cn) .. " --key-length 3072")
    assert.are.equal(0, code, err)
    assert.truthy(out:find("^enrolled certificate %d+ CN="), out)
    local _
    _, err, code = run("enroll --pattern NoSuch --subject " .. quote("CN=" .. cn))
    assert.are.equal(1, code)
    assert.truthy(err:find("no enrollment pattern named NoSuch", 1, true), err)
    _, err, code = run("enroll --subject " .. quote("CN=" .. cn))
    assert.are.equal(2, code)
    assert.truthy(err:find("--pattern", 1, true), err)
  end)

  -- A certificate for `cn` expiring in `days` (the sandbox's ValidityDays), key kept on the server.
  local function expiring(cn, days)
    return assert(kf:request("POST", "/Enrollment/PFX", { headers = { ["x-certificateformat"] = "STORE" },
      body = { Template = "WebServer", Subject = "CN=" .. cn, ValidityDays = days,
               Timestamp = os.date("!%Y-%m-%dT%H:%M:%SZ") } })).CertificateInformation.KeyfactorId
  end

  local function store_of(machine)
    for st in kf:stores() do
      if st.ClientMachine == machine then return st.Id end
    end
  end

  local write = require("support.files").write

  it("renew --expiring --deploy: a decoy of the same subject changes nothing, the renewal replaces the old "
     .. "certificate under its alias; without the entry password it exits 1 saying so, and the rerun with "
     .. "--password-file finishes it; a run after success changes nothing", function()
    local cn = fixture.unique("cli-renew")
    local id = expiring(cn, 10)
    local pem, p12 = store_of("web01.sandbox.local"), store_of("app01.sandbox.local")
    assert(kf:deploy { CertificateId = id, Stores = { { StoreId = pem, Alias = "site" } }, Password = "entry-1" })
    assert(kf:deploy { CertificateId = id, Stores = { { StoreId = p12, Alias = "site-p12" } } })
    assert(kf:wait_deployed(id, { pem, p12 }, { timeout = 30 }))
    local decoy = fixture.enroll(kf, cn).CertificateInformation.KeyfactorId
    local select_it = " --query " .. quote('IssuedCN -eq "' .. cn .. '"') .. " --wait 20"
    local out, err, code = run("renew --expiring 30d --deploy --dry-run" .. select_it)
    assert.are.equal(0, code, err)
    assert.are.equal("would renew, then deploy to 2 stores: certificate " .. id .. " CN=" .. cn .. " (expires ",
      out:match("^[^(]+%(expires "), out)
    local _, none = run("renew --expiring 1d" .. select_it)
    assert.are.equal("keyfactor: no certificate expires within 1d\n", none)

    out, err, code = run("renew --expiring 30d --deploy" .. select_it, nil, env .. " KEYFACTOR_ENTRY_PASSWORD=")
    assert.are.equal(1, code, out .. err)
    local new_id = tonumber(err:match("^keyfactor: certificate " .. id
      .. " CN=[^:]+: incomplete, renewed as (%d+), in 1 of 2 stores: "))
    assert.truthy(new_id, err)
    assert.are.equal(1, #lines(err), err)
    assert.truthy(err:find("web01.sandbox.local:/etc/ssl/web01.pem", 1, true), err)
    assert.truthy(err:find("PEM stores take an entry password", 1, true), err)
    assert.is_true(new_id ~= decoy)

    local file = tmp .. ".entry"
    write(file, "entry-1\n")
    out, err, code = run("renew --expiring 30d --deploy --password-file " .. file .. select_it)
    os.remove(file)
    assert.are.equal(0, code, err)
    assert.are.equal("certificate " .. id .. " CN=" .. cn .. ": complete, renewal " .. new_id
      .. ", in 2 of 2 stores\n", out)
    local locations = assert(kf:certificate(new_id, { includeLocations = true })).Locations
    local aliases = {}
    for _, loc in ipairs(locations) do aliases[loc.CertStoreId] = loc.Alias end
    assert.are.same({ [pem] = "site", [p12] = "site-p12" }, aliases)
    assert.are.same({}, assert(kf:certificate(id, { includeLocations = true })).Locations)

    local mark = fixture.log_mark(sb)
    out, err, code = run("--json renew --expiring 30d --deploy" .. select_it)
    assert.are.equal(0, code, err)
    local report = cjson.decode(out)
    assert.is_true(report.Complete)
    assert.are.equal(new_id, report.Certificates[1].SuccessorId)
    assert.are.equal(false, report.Certificates[1].Renewed)
    assert.truthy(out:find('^{"Certificates":%[{"CertificateId":' .. id .. ',"IssuedDN":'), out)
    assert.are.equal(0, fixture.seen_since(sb, mark, "POST", "/KeyfactorAPI/Enrollment/Renew"))
    assert.are.equal(0, fixture.seen_since(sb, mark, "POST", "/KeyfactorAPI/Enrollment/PFX/Deploy"))
  end)

  it("renew: a subject like CN=evil\\ stops nothing; KEYFACTOR_ENTRY_PASSWORD is an entry password", function()
    local evil = fixture.unique("evil") .. "\\"
    local id = expiring(evil, 10)
    local pem = store_of("web02.sandbox.local")
    assert(kf:deploy { CertificateId = id, Stores = { { StoreId = pem, Alias = "evil" } }, Password = "entry-1" })
    assert(kf:wait_deployed(id, { pem }, { timeout = 30 }))
    local out, err, code = run("renew --expiring 30d --deploy --wait 20 --query " .. quote("Id -eq " .. id), nil,
      env .. " KEYFACTOR_ENTRY_PASSWORD=entry-1")
    assert.are.equal(0, code, err)
    assert.truthy(out:find(": complete, renewed as %d+, in 1 of 1 store\n$"), out)
  end)

  it("renew killed with SIGKILL between the renewal and the deploy: the rerun deploys that renewal, "
     .. "renews nothing twice", function()
    local cn = fixture.unique("cli-killed")
    local id = expiring(cn, 10)
    local p12 = store_of("app03.sandbox.local")
    assert(kf:deploy { CertificateId = id, Stores = { { StoreId = p12, Alias = "killed" } } })
    assert(kf:wait_deployed(id, { p12 }, { timeout = 30 }))
    sb:fault { method = "POST", path = "/KeyfactorAPI/Enrollment/PFX/Deploy", delay_ms = 3000, times = 1 }
    local args = "renew --expiring 30d --deploy --wait 20 --query " .. quote('IssuedCN -eq "' .. cn .. '"')
    local p = io.popen(string.format("env -u LUA_PATH -u LUA_CPATH %s %s %s >/dev/null 2>&1 & echo $!", env, BIN,
      args))
    local pid = p:read("l")
    p:close()
    -- once the renewal is recorded on the old certificate, the deploy is on its way (held 3 s): kill
    assert(fixture.poll(function()
      local c = kf:certificate(id, { includeMetadata = true })
      return c and tostring(c.Metadata.RenewalClaim):find("^renewed ")
    end, 20, 0.05))
    os.execute("sleep 0.3; kill -KILL " .. pid)
    local out, err, code = run(args)
    sb:clear_faults()
    assert.are.equal(0, code, err)
    assert.truthy(out:find(": complete, renewal %d+, in 1 of 1 store\n$"), out)
    assert.are.equal(2, #fixture.collect(kf:certificates { query = 'IssuedCN -eq "' .. cn .. '"' }))
  end)

  it("--expiring needs a unit; passwords from a file or the environment; enroll refuses a PFX password "
     .. "without --out", function()
    local _, err, code = run("renew --expiring 1000000")
    assert.are.equal(2, code)
    assert.truthy(err:find("^keyfactor: %-%-expiring takes a duration with a unit %(d, h or w%)"), err)
    local before = fixture.request_count(sb)
    local cn = fixture.unique("cli-pfx")
    _, err, code = run("enroll --template WebServer --subject " .. quote("CN=" .. cn) .. " --password pfx-1")
    assert.are.equal(2, code)
    assert.truthy(err:find("give --out FILE to write it", 1, true), err)
    assert.are.equal(0, #fixture.collect(kf:certificates { query = 'IssuedCN -eq "' .. cn .. '"' }))
    assert.is_true(fixture.request_count(sb) <= before + 1)
    -- the environment's PFX password counts only with --out
    local out
    out, err, code = run("enroll --template WebServer --subject " .. quote("CN=" .. cn), nil,
      env .. " KEYFACTOR_PFX_PASSWORD=pfx-2")
    assert.are.equal(0, code, err)
    local id = tonumber(out:match("^enrolled certificate (%d+)"))
    local pfx = tmp .. ".env.pfx"
    _, err, code = run("enroll --template WebServer --subject " .. quote("CN=" .. cn) .. " --out " .. pfx, nil,
      env .. " KEYFACTOR_PFX_PASSWORD=pfx-2")
    assert.are.equal(0, code, err)
    local key = require("openssl.pkcs12").parse(read_file(pfx), "pfx-2")
    assert.truthy(key)
    os.remove(pfx)
    local secret_file = tmp .. ".secret"
    write(secret_file, "recover-3\n")
    _, err, code = run("recover " .. id .. " --password-file " .. secret_file .. " --out " .. pfx)
    assert.are.equal(0, code, err)
    assert.truthy(require("openssl.pkcs12").parse(read_file(pfx), "recover-3"))
    os.remove(pfx)
    out, err, code = run("deploy " .. id .. " --store " .. store_of("web03.sandbox.local") .. " --password-file "
      .. secret_file .. " --wait")
    os.remove(secret_file)
    assert.are.equal(0, code, err)
    assert.are.equal("deployed certificate " .. id .. " to 1 store(s)\n", out)
  end)

  it("--debug prints the client's redacted request lines on stderr; --json keys are sorted, the same every run",
     function()
    local id = fixture.enroll(kf, fixture.unique("cli-json")).CertificateInformation.KeyfactorId
    local out, err, code = run("--debug --json cert " .. id)
    assert.are.equal(0, code, err)
    assert.truthy(err:find("keyfactor debug: GET /KeyfactorAPI/Certificates/" .. id, 1, true)
      or err:find("keyfactor debug: GET .*/Certificates/" .. id), err)
    assert.is_nil(err:find(sb.password, 1, true))
    local again = run("--json cert " .. id)
    assert.are.equal(out, again)
    local top = {}
    local depth, i = 0, 1
    -- the top-level keys in the order printed
    while i <= #out do
      local c = out:sub(i, i)
      if c == "{" or c == "[" then depth = depth + 1
      elseif c == "}" or c == "]" then depth = depth - 1
      elseif c == '"' then
        local j = i + 1
        while out:sub(j, j) ~= '"' do j = j + (out:sub(j, j) == "\\" and 2 or 1) end
        if depth == 1 and out:sub(j + 1, j + 1) == ":" then top[#top + 1] = out:sub(i + 1, j - 1) end
        i = j
      end
      i = i + 1
    end
    assert.is_true(#top > 10, out)
    local sorted = { table.unpack(top) }
    table.sort(sorted)
    assert.are.same(sorted, top)
  end)

  it("revoke, approve and deny", function()
    local id = fixture.enroll(kf, fixture.unique("cli-revoke")).CertificateInformation.KeyfactorId
    local out, err, code = run("revoke " .. id .. " --comment retired")
    assert.are.equal(0, code, err)
    assert.are.equal("revoked " .. id .. "\n", out)
    assert.are.equal(2, assert(kf:certificate(id)).CertState)
    local function request()
      local r = assert(kf:enroll { Template = "WebServerApproval", Subject = "CN=" .. fixture.unique("cli-wf"),
                                   format = "Store" })
      return r.CertificateInformation.KeyfactorRequestId
    end
    local a, d = request(), request()
    out, err, code = run("approve " .. a)
    assert.are.equal(0, code, err)
    assert.are.equal("approved " .. a .. "\n", out)
    out, err, code = run("deny " .. d .. " --comment no")
    assert.are.equal(0, code, err)
    assert.are.equal("denied " .. d .. "\n", out)
    local still = run("pending")
    assert.is_nil(still:find("request " .. a .. " ", 1, true))
    assert.is_nil(still:find("request " .. d .. " ", 1, true))
  end)

  it("instances, signal and jobs: approvals as workflow instances, jobs waiting to run", function()
    local function request()
      local r = assert(kf:enroll { Template = "WebServerApproval", Subject = "CN=" .. fixture.unique("cli-wfi"),
                                   format = "Store" })
      return r.CertificateInformation.KeyfactorRequestId
    end
    local a, d = request(), request()
    local out, err, code = run("instances --assigned " .. quote("ReferenceId -ge " .. a))
    assert.are.equal(0, code, err)
    local ids = {}
    for _, line in ipairs(lines(out)) do
      local id, ref = line:match("^instance (%S+) request (%d+) at RequireApproval status 3: ")
      assert.truthy(id, line)
      ids[tonumber(ref)] = id
    end
    assert.truthy(ids[a] and ids[d], out)
    out, err, code = run("signal " .. ids[a] .. " Approve --comment fine")
    assert.are.equal(0, code, err)
    assert.are.equal("sent RequireApproval.Approve to " .. ids[a] .. "\n", out)
    assert.are.equal(2, assert(kf:workflow_request(a)).State)
    local _, deny_err, deny_code = run("signal " .. ids[d] .. " RequireApproval.Deny")
    assert.are.equal(0, deny_code, deny_err)
    assert.are.equal(3, assert(kf:workflow_request(d)).State)
    local _, bad, bad_code = run("signal " .. ids[d] .. " Approve")
    assert.are.equal(1, bad_code)
    assert.truthy(bad:find("not waiting for a signal", 1, true), bad)
    out, err, code = run("jobs " .. quote('JobType -eq "Inventory" AND ClientMachine -eq "web01.sandbox.local"'))
    assert.are.equal(0, code, err)
    assert.truthy(out:find("^job %x+%-%S+ Inventory web01%.sandbox%.local:/etc/ssl/web01%.pem .*Minutes = 60"), out)
  end)

  it("download writes the certificate, recover the PFX with its key", function()
    -- format Store: the server keeps the private key, so it can be recovered
    local info = fixture.enroll(kf, fixture.unique("cli-dl"), { Password = nil, format = "Store" })
                        .CertificateInformation
    local out, err, code = run("download " .. info.KeyfactorId .. " --format PEM")
    assert.are.equal(0, code, err)
    assert.truthy(out:find("-----BEGIN CERTIFICATE-----", 1, true), out)
    local file = tmp .. ".pfx"
    local _, err2, code2 = run("recover " .. info.KeyfactorId .. " --password recover-1 --out " .. file)
    assert.are.equal(0, code2, err2)
    local pkcs12 = require "openssl.pkcs12"
    local key, cert = pkcs12.parse(read_file(file), "recover-1")
    local p = io.popen("stat -c %a " .. quote(file))
    assert.are.equal("600", p:read("l"))
    p:close()
    os.remove(file)
    assert.truthy(key and cert)
  end)

  it("download --out needs no luaossl: every openssl module fails to load, the file is written", function()
    local info = fixture.enroll(kf, fixture.unique("cli-nossl")).CertificateInformation
    -- a module directory where each luaossl module the library could load raises
    local stubs = tmp .. ".stubs"
    assert(os.execute("mkdir -p " .. quote(stubs .. "/openssl/x509")))
    for _, name in ipairs { "openssl", "_openssl", "openssl/pkey", "openssl/x509", "openssl/x509/csr",
        "openssl/x509/name", "openssl/x509/altname", "openssl/pkcs12" } do
      local f = assert(io.open(stubs .. "/" .. name .. ".lua", "wb"))
      f:write('error("no luaossl on this host (stub)")\n')
      f:close()
    end
    local no_ossl = env .. " LUA_PATH=" .. quote(stubs .. "/?.lua;;")
    local probe = io.popen("LUA_PATH=" .. quote(stubs .. "/?.lua;;")
      .. " lua5.4 -e 'print(pcall(require, \"openssl.x509\"))'")
    assert.truthy(probe:read("a"):find("^false"))   -- the stubs do shadow the installed luaossl
    probe:close()
    for _, format in ipairs { "PEM", "DER", "P7B" } do
      local file = tmp .. "." .. format
      local _, err, code = run("download " .. info.KeyfactorId .. " --format " .. format .. " --out " .. file,
        nil, no_ossl)
      assert.are.equal(0, code, err)
      local x509 = require "openssl.x509"
      local text = read_file(file)
      if format == "PEM" then
        assert.are.equal(info.Thumbprint:upper(), x509.new(text, "PEM"):digest("sha1", "x"):upper())
      elseif format == "DER" then
        assert.are.equal(info.Thumbprint:upper(), x509.new(text, "DER"):digest("sha1", "x"):upper())
      else
        assert.are.equal(0x30, text:byte(1))   -- a DER PKCS#7 SEQUENCE, not base64 text
      end
      os.remove(file)
    end
    os.execute("rm -rf " .. quote(stubs))
  end)

  it("repl evaluates lines from stdin with kf preloaded and exits at end of input", function()
    local password = "Canary-Repl-Pass-5"
    local out, err, code = run("repl", table.concat({
      "r = kf:enroll{Template = 'WebServer', Subject = 'CN=repl.example.com', Password = '" .. password .. "'}",
      "show(r.CertificateInformation)",
      "r.CertificateInformation",
      "c = kf:certificate(r.CertificateInformation.KeyfactorId)",
      "tostring(c)",
      "kf:certificate(987654)",
      "n = 0",
      "for s in kf:stores() do n = n + 1 end",
      "n > 0",
      "error('boom')",
    }, "\n") .. "\n")
    assert.are.equal(0, code, err)
    assert.is_nil(out:find(password, 1, true))
    assert.truthy(out:find("Pkcs12Blob = <redacted %d+ bytes>"), out)
    local got = lines(out)
    local text = table.concat(got, "\n")
    assert.truthy(text:find('"certificate %d+ CN=repl.example.com %(expires [%d-]+, active%)"'), text)
    -- results on one line by default, show() prints all
    assert.truthy(text:find("\n{ [^\n]*%(show%(_%) for all%)\n"), text)
    assert.truthy(text:find("nil, keyfactor: http 404", 1, true), text)
    assert.are.equal("true", got[#got - 1])
    assert.truthy(got[#got]:find("^error: .*boom"), got[#got])
  end)
end)
