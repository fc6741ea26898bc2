-- core.encode_json (csrc/json_encode.c): request bodies, with empty arrays
-- sent as [] (issue 13.13), checked on the wire by a recording server.
local cjson = require "cjson"
local core = require "keyfactor.core"
local capture = require "support.capture"
local keyfactor = require "keyfactor"

local encode, decode = core.encode_json, core.decode_json

-- Deep equality where numbers compare by value.
local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

local function raises(value, ...)
  local ok, err = pcall(encode, value)
  assert.is_false(ok, "expected an error")
  for i = 1, select("#", ...) do
    local text = select(i, ...)
    assert.truthy(tostring(err):find(text, 1, true), tostring(err) .. " lacks " .. text)
  end
end

describe("core.encode_json", function()
  it("tells arrays from objects: marked or 1..n is an array, an unmarked empty table {}", function()
    assert.are.equal("[]", encode(core.array()))
    assert.are.equal("[]", encode(setmetatable({}, core.array_mt)))
    assert.are.equal("{}", encode({}))
    assert.are.equal("[1,2,3]", encode({ 1, 2, 3 }))
    assert.are.equal('[1,"a"]', encode(core.array { 1, "a" }))
    assert.are.equal('{"a":[]}', encode({ a = core.array() }))
    assert.are.equal('{"x":1}', encode({ x = 1 }))
    assert.are.equal("[null,true,false]", encode({ cjson.null, true, false }))
    assert.are.equal("null", encode(nil))
  end)

  it("escapes strings as RFC 8259 asks, and '/' not at all", function()
    assert.are.equal('"a/b"', encode("a/b"))
    assert.are.equal('"q\\"b\\\\s\\n\\r\\t\\b\\f\\u0001\\u001f"', encode('q"b\\s\n\r\t\b\f\1\31'))
    assert.are.equal('"\195\164\226\130\172"', encode("\195\164\226\130\172"))   -- UTF-8 as is
    assert.are.equal('"a\\u0000b"', encode("a\0b"))
  end)

  it("writes integers exactly and floats so that they read back the same", function()
    assert.are.equal("9007199254740992", encode(2 ^ 53))
    if math.tointeger then   -- integers beyond 2^53 (5.3+; LuaJIT has only doubles)
      assert.are.equal("9007199254740993", encode(tonumber("9007199254740993")))
      assert.are.equal("9223372036854775807", encode(math.maxinteger))
      assert.are.equal("-9223372036854775808", encode(math.mininteger))
    end
    assert.are.equal("42", encode(42))
    assert.are.equal("5", encode(5.0))
    assert.are.equal("0.1", encode(0.1))
    assert.are.equal("-2.5", encode(-2.5))
    for _, x in ipairs { 0.1, 1 / 3, 1e300, -1e-300, 2 ^ 60, 123.456 } do
      assert.are.equal(x, decode(encode(x)))
    end
  end)

  it("round-trips through the decoder, [] and {} included", function()
    local text = '{"a":[1,2,{"b":[]}],"c":{},"d":"x/y\\n","e":null,"f":-1.5,"g":[[],{}]}'
    local value = assert(decode(text))
    local again = assert(decode(encode(value)))
    assert.is_true(same(value, again))
    assert.truthy(encode(value):find('"b":[]', 1, true))
    assert.truthy(encode(value):find('"c":{}', 1, true))
    assert.truthy(encode(value):find('"g":[[],{}]', 1, true))
  end)

  it("raises naming the place for values JSON cannot hold", function()
    raises({ a = { b = { 1, 0 / 0 } } }, "value.a.b[2]", "not finite")
    raises({ x = math.huge }, "value.x", "not finite")
    raises({ f = print }, "value.f", "function")
    raises({ u = io.stdout }, "value.u", "userdata")
    raises({ [1] = 1, [3] = 3, x = 1 }, "not a string")
    raises({ [true] = 1 }, "boolean key")
    local cycle = {}
    cycle.self = { cycle }
    raises(cycle, "value.self[1]", "cycle")
    local deep = {}
    local t = deep
    for _ = 1, 250 do t.next = {}; t = t.next end
    raises(deep, "nested too deeply")
  end)
end)

describe("request bodies on the wire", function()
  local server, kf

  lazy_setup(function()
    server = capture.start()
    kf = keyfactor.new { url = server.url .. "/KeyfactorAPI" }   -- plain http, no credentials
  end)
  lazy_teardown(function()
    if kf then kf:close() end
    if server then server:stop() end
  end)

  local function last_body(path)
    local found
    for _, r in ipairs(server:requests()) do
      if r.target == "/KeyfactorAPI" .. path then found = r.body end
    end
    assert.is_not_nil(found, "nothing reached " .. path)
    return found
  end

  it("deploy sends StoreTypes = {} as []", function()
    kf:deploy { CertificateId = 7, StoreIds = { "00000000-1111-2222-3333-444444444444" }, StoreTypes = {} }
    local body = last_body("/Enrollment/PFX/Deploy")
    assert.truthy(body:find('"StoreTypes":[]', 1, true), body)
    assert.truthy(body:find('"CertificateId":7', 1, true), body)
  end)

  it("enroll sends SANs = {dns = {}} as {\"dns\":[]}", function()
    kf:enroll { Template = "WebServer", Subject = "CN=empty-sans.example.com", Password = "pw", SANs = { dns = {} } }
    local body = last_body("/Enrollment/PFX")
    assert.truthy(body:find('"SANs":{"dns":[]}', 1, true), body)
  end)

  it("kf:request sends a marked empty array as []", function()
    kf:request("POST", "/Anything", { body = { Ids = core.array() } })
    assert.are.equal('{"Ids":[]}', last_body("/Anything"))
  end)
end)
