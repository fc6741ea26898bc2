-- bin/keyfactor against a live sandbox: each subcommand's output and exit
-- code, and the repl fed through stdin.
local fixture = require "support.fixture"
local cjson = require "cjson"

local BIN = "bin/keyfactor"

local function quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("*a")
  f:close()
  return text
end

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

  it("renew --expiring --deploy renews what expires and redeploys it where the old one was; --dry-run changes nothing",
     function()
    local cn = fixture.unique("cli-renew")
    local id = fixture.enroll(kf, cn, { Password = nil, format = "Store" }).CertificateInformation.KeyfactorId
    local pem = fixture.store_ids(kf, fixture.WEB, "PEM")[1]
    assert(kf:deploy { CertificateId = id, Stores = { { StoreId = pem } }, Password = "entry-1" })
    assert(kf:wait_deployed(id, { pem }, { timeout = 30 }))
    local select_it = " --query " .. quote('IssuedCN -eq "' .. cn .. '"')
    local out, err, code = run("renew --expiring 400d --deploy --dry-run" .. select_it)
    assert.are.equal(0, code, err)
    assert.truthy(out:find("^would renew certificate " .. id .. " CN=.* and deploy to 1 store%(s%)\n$"), out)
    assert.are.equal(1, #fixture.collect(kf:certificates { query = 'IssuedCN -eq "' .. cn .. '"' }))
    local _, none = run("renew --expiring 1d" .. select_it)
    assert.are.equal("keyfactor: no certificate expires within 1d\n", none)
    out, err, code = run("renew --expiring 400d --deploy --password entry-1" .. select_it)
    assert.are.equal(0, code, err)
    local new_id = tonumber(out:match("^renewed certificate " .. id .. " %-> (%d+), deploying to 1 store%(s%)\n$"))
    assert.truthy(new_id, out)
    assert(kf:wait_deployed(new_id, { pem }, { timeout = 30 }))
    -- the next cron run renews the renewal only, not the certificate it replaced
    local again, skipped = run("renew --expiring 400d --dry-run" .. select_it)
    assert.truthy(again:find("^would renew certificate " .. new_id .. " CN="), again)
    assert.are.equal("keyfactor: skipping certificate " .. id .. ": renewed already as " .. new_id .. "\n", skipped)
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
