-- keyfactor.show (formatting, redaction), the tostring of certificates and
-- stores from a live sandbox, and keyfactor.repl fed from a file.
local fixture = require "support.fixture"
local keyfactor = require "keyfactor"
local show = require "keyfactor.show"
local cjson = require "cjson"

local function contains(text, part)
  return text:find(part, 1, true) ~= nil
end

describe("keyfactor.show", function()
  it("is exported as keyfactor.show", function()
    assert.are.equal(show.format, keyfactor.show)
  end)

  it("prints scalars, null, and small tables on one line with sorted keys", function()
    assert.are.equal("42", keyfactor.show(42))
    assert.are.equal("1.5", keyfactor.show(1.5))
    assert.are.equal('"a\\nb \\"q\\""', keyfactor.show('a\nb "q"'))
    assert.are.equal("null", keyfactor.show(cjson.null))
    assert.are.equal("nil", keyfactor.show(nil))
    assert.are.equal("{}", keyfactor.show({}))
    assert.are.equal('{ 1, 2, b = true, c = null, ["two words"] = "x" }',
      keyfactor.show({ 1, 2, c = cjson.null, b = true, ["two words"] = "x" }))
  end)

  it("indents nested tables that do not fit one line", function()
    local text = keyfactor.show({
      CertificateInformation = { KeyfactorId = 7, Thumbprint = string.rep("AB", 20),
                                 DispositionMessage = "The certificate was issued." },
      Metadata = {},
    })
    assert.are.equal(table.concat({
      "{",
      "  CertificateInformation = {",
      '    DispositionMessage = "The certificate was issued.",',
      "    KeyfactorId = 7,",
      '    Thumbprint = "' .. string.rep("AB", 20) .. '",',
      "  },",
      "  Metadata = {},",
      "}",
    }, "\n"), text)
  end)

  it("elides long arrays and long strings, stops at max_depth and at cycles", function()
    local long = {}
    for i = 1, 50 do long[i] = { Id = i } end
    local text = keyfactor.show(long)
    assert.truthy(contains(text, "{ Id = 20 }"))
    assert.is_false(contains(text, "{ Id = 21 }"))
    assert.truthy(contains(text, "... 30 more"))
    local s = keyfactor.show({ ContentBytes = string.rep("M", 1000) })
    assert.truthy(contains(s, '..." (1000 bytes)'), s)
    assert.is_true(#s < 200)
    assert.are.equal("{ a = { b = {...} } }", keyfactor.show({ a = { b = { c = { d = 1 } } } }, { max_depth = 2 }))
    local cyclic = { name = "x" }
    cyclic.self = cyclic
    assert.truthy(contains(keyfactor.show(cyclic), "self = <cycle>"))
    assert.are.equal("{ 1, 2, ... 3 more }", keyfactor.show({ 1, 2, 3, 4, 5 }, { max_items = 2 }))
  end)

  it("redacts secrets by field name and PEM private keys anywhere", function()
    local key_pem = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMG\n-----END PRIVATE KEY-----\n"
    local text = keyfactor.show({
      Pkcs12Blob = "MIIKcanaryblob", PKCS12Blob = "MIIKcanary2", Password = "canary-pw",
      StorePassword = { Value = "canary-store-pw", IsManaged = false },
      ClientSecret = "canary-secret", access_token = "canary-token", PrivateKey = "canary-key-text",
      Key = "canary-plain-key", Note = key_pem,
      KeyfactorId = 5, KeyType = 1, KeySizeInBits = 2048, HasPrivateKey = true, Thumbprint = "ABCD",
    })
    assert.is_false(contains(text, "canary"), text)
    assert.is_false(contains(text, "MIGHAgEAMBMG"), text)
    assert.truthy(contains(text, "Password = <redacted 9 bytes>"), text)
    assert.truthy(contains(text, "Pkcs12Blob = <redacted 14 bytes>"), text)
    assert.truthy(contains(text, "IsManaged = false"), text)
    for _, visible in ipairs { "KeyfactorId = 5", "KeyType = 1", "KeySizeInBits = 2048",
                               "HasPrivateKey = true", 'Thumbprint = "ABCD"' } do
      assert.truthy(contains(text, visible), visible .. " missing in " .. text)
    end
  end)

  it("shows a keyfactor error as its one line", function()
    local err = keyfactor.errors.new { kind = "http", status = 404, method = "GET", path = "/Certificates/9",
                                       message = "not found" }
    assert.are.equal("keyfactor: http 404 GET /Certificates/9: not found", keyfactor.show(err))
  end)

  it("describes certificates by state and expiry", function()
    local d = show.describe_certificate
    assert.are.equal("certificate 3 CN=a (expires 2999-01-02, active)",
      d { Id = 3, IssuedDN = "CN=a", NotAfter = "2999-01-02T03:04:05Z", CertState = 1 })
    assert.are.equal("certificate 3 CN=a (expired 2001-01-02)",
      d { Id = 3, IssuedDN = "CN=a", NotAfter = "2001-01-02T03:04:05Z", CertState = 1 })
    assert.are.equal("certificate 4 CN=b (expires 2999-01-02, revoked)",
      d { Id = 4, IssuedDN = cjson.null, IssuedCN = "b", NotAfter = "2999-01-02T03:04:05Z", CertState = 2 })
  end)
end)

describe("tostring of certificates and stores", function()
  local kf, id, cn

  fixture.live(function(_, k)
    kf = k
    cn = fixture.unique("show")
    id = fixture.enroll(kf, cn).CertificateInformation.KeyfactorId
  end)

  it("kf:certificate (by id and by lookup) and kf:certificates give one informative line", function()
    local cert = assert(kf:certificate(id))
    local line = "certificate " .. id .. " CN=" .. cn .. " (expires " .. cert.NotAfter:sub(1, 10) .. ", active)"
    assert.are.equal(line, tostring(cert))
    assert.are.equal(line, tostring(assert(kf:certificate { Thumbprint = cert.Thumbprint })))
    local found = fixture.collect(kf:certificates { query = 'IssuedCN -eq "' .. cn .. '"' })
    assert.are.equal(1, #found)
    assert.are.equal(line, tostring(found[1]))
    assert.truthy(contains(keyfactor.show(cert), 'Thumbprint = "' .. cert.Thumbprint .. '"'))
  end)

  it("the metatable has only __tostring: fields map 1:1 to the JSON", function()
    local cert = assert(kf:certificate(id))
    local mt = getmetatable(cert)
    assert.is_nil(rawget(mt, "__index"))
    assert.is_nil(rawget(mt, "__newindex"))
    assert.is_nil(cert.nonexistent)
    local copy = cjson.decode(cjson.encode(cert))
    assert.are.equal(cert.Thumbprint, copy.Thumbprint)
    assert.are.equal(cert.Id, copy.Id)
  end)

  it("revoked certificates say so", function()
    local other = fixture.enroll(kf, fixture.unique("revoked")).CertificateInformation.KeyfactorId
    assert(kf:revoke { CertificateIds = { other }, Comment = "spec" })
    assert.truthy(tostring(assert(kf:certificate(other))):find(", revoked%)$"))
  end)

  it("kf:store and kf:stores give host:path and the store type", function()
    local stores = fixture.collect(kf:stores())
    assert.is_true(#stores >= 6)
    for _, s in ipairs(stores) do
      assert.are.equal(string.format("store %s %s:%s (type %d)", s.Id, s.ClientMachine, s.StorePath,
        s.CertStoreType), tostring(s))
    end
    local one = assert(kf:store(stores[1].Id))
    assert.are.equal(tostring(stores[1]), tostring(one))
    local types = {}
    for _, t in ipairs(assert(kf:store_types())) do types[t.StoreType] = t.ShortName end
    assert.truthy(show.describe_store(one, types):find("%((PEM)%)$") or
                  show.describe_store(one, types):find("%((PKCS12)%)$"))
  end)

  it("a canary PFX blob and password never appear in show() output", function()
    local password = "Canary-Pfx-Password-931"
    local r = assert(kf:enroll { Template = "WebServer", Subject = "CN=" .. fixture.unique("canary"),
                                 Password = password, IncludeChain = true })
    local blob = r.CertificateInformation.Pkcs12Blob
    assert.is_true(#blob > 100)
    local text = keyfactor.show({ answer = r, request = { Password = password, Template = "WebServer" } })
    assert.is_false(contains(text, password))
    for i = 1, #blob - 24, 24 do
      assert.is_false(contains(text, blob:sub(i, i + 23)), "part of the blob is shown")
    end
    assert.truthy(contains(text, "Pkcs12Blob = <redacted " .. #blob .. " bytes>"))
  end)
end)

describe("keyfactor.repl", function()
  -- Runs the REPL over `lines` with a stand-in client; returns its output.
  local function run(lines, kf)
    local input, output = io.tmpfile(), io.tmpfile()
    input:write(table.concat(lines, "\n"), "\n")
    input:seek("set")
    keyfactor.repl(kf or {}, { input = input, output = output })
    output:seek("set")
    local text = output:read("*a")
    input:close()
    output:close()
    return text
  end

  it("evaluates expressions and statements, keeps globals, continues unfinished input", function()
    local out = run {
      "x = 40", "x + 2", "function twice(n)", "  return 2 * n", "end", "twice(x)",
      "{ b = 1, a = { 'y' } }", "print('hello', 3)", "",
    }
    assert.are.equal("42\n80\n{ a = { \"y\" }, b = 1 }\nhello\t3\n", out)
  end)

  it("prints nil, err readably, raised errors and syntax errors, and the stand-in kf", function()
    local fake = {}
    function fake.certificate() return nil, keyfactor.errors.new {
      kind = "http", status = 404, method = "GET", path = "/Certificates/9", message = "missing" } end
    local out = run({ "kf.certificate()", "error('boom')", "1 +* 2", "nil", "keyfactor.VERSION",
                      "collect(coroutine.wrap(function() coroutine.yield(5) coroutine.yield(6) end))" }, fake)
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.are.equal("nil, keyfactor: http 404 GET /Certificates/9: missing", lines[1])
    assert.truthy(lines[2]:find("^error: .*boom"))
    assert.truthy(lines[3]:find("^syntax error: "))
    assert.are.equal("nil", lines[4])
    assert.are.equal('"' .. keyfactor.VERSION .. '"', lines[5])
    assert.are.equal("{ 5, 6 }", lines[6])
  end)

  it("reports input that ends inside a statement", function()
    assert.truthy(run { "for i = 1, 2 do" }:find("unfinished input", 1, true))
  end)
end)
