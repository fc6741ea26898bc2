-- core.decode_json: answer bodies to Lua values (csrc/json.c).
local cjson = require "cjson"
local core = require "keyfactor.core"

local decode = core.decode_json
local has_integers = math.type ~= nil

local function integer(x)
  return (has_integers and math.type(x) == "integer") or (not has_integers and type(x) == "number")
end

-- Deep equality where numbers compare by value.
local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do
    if not same(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

local function fails(text, pattern)
  local value, err = decode(text)
  assert.is_nil(value, text)
  assert.are.equal("string", type(err))
  if pattern then assert.truthy(err:find(pattern), err) end
  return err
end

describe("core.decode_json", function()
  it("decodes objects, arrays and scalars the way cjson shapes them", function()
    local value = assert(decode(' { "a" : [1, "two", true, false, null, {}, []], "b": {"c": -3} } '))
    assert.are.equal(1, value.a[1])
    assert.are.equal("two", value.a[2])
    assert.is_true(value.a[3])
    assert.is_false(value.a[4])
    assert.are.equal(cjson.null, value.a[5])
    assert.are.same({}, value.a[6])
    assert.are.same({}, value.a[7])
    assert.are.equal(7, #value.a)
    assert.are.equal(-3, value.b.c)
    assert.are.equal("x", decode('"x"'))
    assert.are.equal(5, decode(" 5 "))
    assert.are.equal(cjson.null, decode("null"))
  end)

  it("keeps integers integers and floats floats", function()
    local v = assert(decode('[42, -7, 0, -0, 1.5, -2.25e1, 1e2, 5.0, 123456789012345678]'))
    for _, i in ipairs { 1, 2, 3, 4, 7, 8, 9 } do
      assert.is_true(integer(v[i]), "item " .. i)
    end
    assert.are.equal(42, v[1])
    assert.are.equal(100, v[7])
    assert.are.equal(5, v[8])
    assert.are.equal(1.5, v[5])
    assert.are.equal(-22.5, v[6])
    if has_integers then
      assert.are.equal("float", math.type(v[5]))
      assert.are.equal(123456789012345678, v[9])
    end
  end)

  if has_integers then
    it("reads 64-bit integers exactly and larger ones as floats", function()
      assert.are.equal(math.maxinteger, decode("9223372036854775807"))
      assert.are.equal(math.mininteger, decode("-9223372036854775808"))
      assert.are.equal("integer", math.type(decode("9007199254740993")))
      assert.are.equal(9007199254740993, decode("9007199254740993"))
      assert.are.equal("float", math.type(decode("9223372036854775808")))
      assert.are.equal("float", math.type(decode("1e300")))
    end)
  end

  it("refuses numbers beyond a double (1e400) instead of reading infinity, which cannot be sent back", function()
    fails("1e400", "number out of range")
    fails("[-1e400]", "number out of range")
  end)

  it("decodes escapes, \\u escapes and surrogate pairs to UTF-8", function()
    assert.are.equal('a"b\\c/d\b\f\n\r\te', decode([["a\"b\\c\/d\b\f\n\r\te"]]))
    assert.are.equal("\xC3\xA9", decode([["\u00e9"]]))
    assert.are.equal("A\xE2\x82\xAC", decode([["\u0041\u20AC"]]))
    assert.are.equal("\xF0\x9F\x98\x80", decode([["\uD83D\uDE00"]]))
    assert.are.equal("caf\xC3\xA9 ok", decode('"caf\xC3\xA9 ok"'))   -- raw UTF-8 passes through
    assert.are.equal("MIIB/x+y==", decode([["MIIB\/x+y=="]]))
    assert.are.equal("a\tb\nc\0d", decode('"a\tb\nc\0d"'))   -- raw control characters, as cjson takes them
  end)

  it("stores containers larger than one batch, in order, last duplicate key winning", function()
    local items, fields = {}, {}
    for i = 1, 1000 do items[i] = i * 3 end
    for i = 1, 100 do fields[i] = string.format('"k%d": %d', i, i) end
    fields[#fields + 1] = '"k1": "last"'
    local array = assert(decode("[" .. table.concat(items, ",") .. "]"))
    assert.are.equal(1000, #array)
    for i = 1, 1000 do assert.are.equal(i * 3, array[i]) end
    local object = assert(decode("{" .. table.concat(fields, ",") .. "}"))
    assert.are.equal("last", object.k1)
    assert.are.equal(100, object.k100)
    local count = 0
    for _ in pairs(object) do count = count + 1 end
    assert.are.equal(100, count)
  end)

  it("gives what cjson gives for documents cjson encoded", function()
    math.randomseed(8)
    local function random_string()
      local bytes = {}
      for i = 1, math.random(0, 12) do
        local pick = math.random(1, 6)
        bytes[i] = pick == 1 and string.char(math.random(0, 31))
          or pick == 2 and ({ '"', "\\", "/" })[math.random(1, 3)]
          or pick == 3 and "\xE2\x82\xAC"
          or string.char(math.random(32, 126))
      end
      return table.concat(bytes)
    end
    local function random_value(depth)
      local pick = math.random(1, depth > 3 and 5 or 7)
      if pick == 1 then return math.random(-1000000, 1000000) end
      if pick == 2 then return math.random(-1000, 1000) / 8 end
      if pick == 3 then return random_string() end
      if pick == 4 then return math.random(1, 2) == 1 end
      if pick == 5 then return cjson.null end
      local t = {}
      if pick == 6 then
        for i = 1, math.random(1, 40) do t[i] = random_value(depth + 1) end
      else
        for _ = 1, math.random(1, 40) do t["k" .. random_string()] = random_value(depth + 1) end
      end
      return t
    end
    for _ = 1, 300 do
      local original = random_value(0)
      local text = cjson.encode(original)
      local decoded, err = decode(text)
      assert.is_nil(err, text)
      assert.is_true(same(cjson.decode(text), decoded), text)
    end
  end)

  it("gives every key its own bytes, whatever the cache of keys holds (csrc/json.c, KEY_SLOTS)", function()
    -- same length, same first and last eight bytes: the same slot, told apart by the bytes
    local a, b = "aaaaaaaaXbbbbbbbb", "aaaaaaaaYbbbbbbbb"
    for _ = 1, 3 do
      local object = assert(decode(string.format('{"%s": 1, "%s": 2}', a, b)))
      assert.are.equal(1, object[a])
      assert.are.equal(2, object[b])
    end
    -- more distinct keys than slots, twice over; 40 and 41 bytes (the longest cached and the shortest not);
    -- escaped keys; the empty key
    local fields, expected = {}, {}
    for i = 1, 1500 do
      local key = "key" .. i .. string.rep("x", i % 45)
      fields[#fields + 1] = string.format('"%s": %d', key, i)
      expected[key] = i
    end
    for _, key in ipairs { string.rep("k", 40), string.rep("k", 41), "" } do
      fields[#fields + 1] = string.format('"%s": "%s"', key, key)
      expected[key] = key
    end
    fields[#fields + 1] = '"quo\\"te": 1'
    expected['quo"te'] = 1
    fields[#fields + 1] = '"\\u00e9t\\u00e9": 2'
    expected["\195\169t\195\169"] = 2
    local text = "{" .. table.concat(fields, ",") .. "}"
    for _ = 1, 2 do assert.is_true(same(expected, assert(decode(text)))) end
    assert.is_true(same({ { aaaaaaaaXbbbbbbbb = { [a] = 3 } } },
      assert(decode('[{"aaaaaaaaXbbbbbbbb": {"' .. a .. '": 3}}]'))))
  end)

  it("refuses malformed text with the reason and the byte offset", function()
    assert.are.equal("unexpected end of text at byte 1", fails(""))
    assert.are.equal("unexpected character at byte 1 ('x')", fails("x"))
    fails("[1, 2", "unexpected end of text at byte 6")
    fails("[1 2]", "expected ',' or ']' at byte 4")
    fails('{"a" 1}', "expected ':' at byte 6")
    fails('{"a": 1,}', "expected a string key at byte 9")
    fails("[1,]", "unexpected character at byte 4")
    fails('{"a": 1} x', "text after the value at byte 10")
    fails("01", "leading zero")
    fails("-", "invalid number")
    fails("1.", "invalid number")
    fails("1e", "invalid number")
    fails(".5", "unexpected character")
    fails("+1", "unexpected character")
    fails("tru", "unexpected character")
    fails("nul", "unexpected character")
    fails("NaN", "unexpected character")
    fails('"abc', "unterminated string")
    fails('"a\\', "unterminated string")
    fails('"\\x"', "invalid escape in string at byte 3")
    fails('"\\u12"', "invalid \\u escape")
    fails('"\\u12G4"', "invalid \\u escape")
    fails('"\\uDE00"', "unpaired surrogate")
    fails('"\\uD83D"', "unpaired surrogate")
    fails('"\\uD83Dx"', "unpaired surrogate")
    fails('"\\uD83D\\u0041"', "unpaired surrogate")
  end)

  it("refuses nesting deeper than 200 and accepts 200", function()
    assert.truthy(decode(string.rep("[", 200) .. string.rep("]", 200)))
    fails(string.rep("[", 201) .. string.rep("]", 201), "nested too deeply")
    fails(string.rep('{"a":', 201) .. "1" .. string.rep("}", 201), "nested too deeply")
    fails(string.rep("[", 100000), "nested too deeply")
  end)

  it("never raises on wide and deep text: 200 levels of 31 keys each decode (issue 13.9)", function()
    -- LuaJIT's smaller Lua stack made this raise "stack overflow (decode_json)"
    local function level(depth)
      local parts = {}
      for k = 1, 30 do parts[k] = string.format('"k%d":%d', k, k) end
      parts[31] = '"next":' .. (depth > 1 and level(depth - 1) or "null")
      return "{" .. table.concat(parts, ",") .. "}"
    end
    for _, depth in ipairs { 150, 200 } do
      local ok, value, err = pcall(decode, level(depth))
      assert.is_true(ok, tostring(value))
      assert.is_table(value, err)
      local t, n = value, 0
      while type(t) == "table" do
        assert.are.equal(30, t.k30)
        t, n = t.next, n + 1
      end
      assert.are.equal(depth, n)
    end
    local ok, value, err = pcall(decode, string.rep('{"a":[1,2,3,', 150))
    assert.is_true(ok, tostring(value))
    assert.is_nil(value)
    assert.is_string(err)
  end)

  it("gives [] core.array_mt, so that it goes back out as []", function()
    local value = assert(decode('{"a":[],"b":{}}'))
    assert.are.equal(core.array_mt, getmetatable(value.a))
    assert.is_nil(getmetatable(value.b))
  end)

  it("raises for a non-string argument, naming it", function()
    local ok, err = pcall(decode, {})
    assert.is_false(ok)
    assert.truthy(tostring(err):find("bad argument #1", 1, true), err)
  end)
end)
