-- Small helpers shared by the sandbox modules: JSON, time, base64, GUIDs,
-- and the Keyfactor-shaped error that handlers raise.
local cjson = require "cjson"
local cqueues = require "cqueues"
local basexx = require "basexx"
local rand = require "openssl.rand"

local util = {}

local decoder = cjson.new()
decoder.decode_invalid_numbers(false)

---------------------------------------------------------------- JSON
-- lua-cjson 2.1.0 (Debian 12) cannot encode an empty array, so responses are
-- encoded here; strings still go through cjson for correct escaping.
local ARRAY = { __name = "json.array" }
util.null = cjson.null

function util.array(t)
  return setmetatable(t or {}, ARRAY)
end

local function is_array(t)
  if getmetatable(t) == ARRAY then return true end
  local n = #t
  if n == 0 then return false end
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 or k > n then return false end
  end
  return true
end

local encode_value

-- cjson escapes "/" as "\/"; undo that for readable PEM and paths.
local function encode_string(s)
  return (cjson.encode(s):gsub("\\/", "/"))
end

local function encode_number(n)
  if math.type(n) == "integer" then return string.format("%d", n) end
  if n ~= n or n == math.huge or n == -math.huge then return "null" end
  if n == math.floor(n) and math.abs(n) < 2^53 then
    return string.format("%d", math.tointeger(n))
  end
  return string.format("%.17g", n)
end

local function encode_table(t, out)
  if is_array(t) then
    out[#out + 1] = "["
    for i = 1, #t do
      if i > 1 then out[#out + 1] = "," end
      encode_value(t[i], out)
    end
    out[#out + 1] = "]"
    return
  end
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  out[#out + 1] = "{"
  for i, k in ipairs(keys) do
    if i > 1 then out[#out + 1] = "," end
    out[#out + 1] = encode_string(k)
    out[#out + 1] = ":"
    local v = t[k]
    if v == nil then v = t[tonumber(k)] end
    encode_value(v, out)
  end
  out[#out + 1] = "}"
end

function encode_value(v, out)
  local tv = type(v)
  if v == nil or v == util.null then
    out[#out + 1] = "null"
  elseif tv == "boolean" then
    out[#out + 1] = tostring(v)
  elseif tv == "number" then
    out[#out + 1] = encode_number(v)
  elseif tv == "string" then
    out[#out + 1] = encode_string(v)
  elseif tv == "table" then
    encode_table(v, out)
  else
    error("cannot encode " .. tv .. " as JSON")
  end
end

function util.encode(v)
  local out = {}
  encode_value(v, out)
  return table.concat(out)
end

-- Returns value or nil, message.
function util.decode(s)
  local ok, v = pcall(decoder.decode, s)
  if not ok then return nil, (tostring(v):gsub("^.-:%d+: ", "")) end
  return v
end

---------------------------------------------------------------- errors
-- Handlers raise util.fail(...) tables; the server turns them into answers.
util.codes = {
  internal = "0xA0000000",
  bad_request = "0xA0100001",
  bad_json = "0xA0100002",
  missing_field = "0xA0100003",
  wrong_type = "0xA0100004",
  bad_query = "0xA0100005",
  not_found = "0xA0200001",
  unauthorized = "0xA0300001",
  forbidden = "0xA0300002",
  fault = "0xA0F00000",
}

local Failure = { __name = "sandbox.failure" }
Failure.__tostring = function(f) return string.format("%d %s", f.status, f.message) end

function util.failure(status, class, message)
  return setmetatable({ status = status, code = util.codes[class] or class,
    message = message }, Failure)
end

function util.fail(status, class, message)
  error(util.failure(status, class, message), 0)
end

function util.is_failure(v)
  return getmetatable(v) == Failure
end

function util.bad_request(message) util.fail(400, "bad_request", message) end
function util.not_found(message) util.fail(404, "not_found", message) end

---------------------------------------------------------------- time
-- Wall clock with sub-second precision: os.time() has whole seconds only, so
-- anchor once on `date +%s.%N` and advance with the monotonic clock.
local wall_base, mono_base
local function anchor()
  local p = io.popen("date +%s.%N 2>/dev/null")
  local s = p and p:read("l")
  if p then p:close() end
  wall_base = tonumber(s) or os.time()
  mono_base = cqueues.monotime()
end

function util.now()
  if not wall_base then anchor() end
  return wall_base + (cqueues.monotime() - mono_base)
end

util.monotime = cqueues.monotime

function util.iso(t)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t))
end

-- Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

-- Parses ISO 8601 (date, or date-time with optional fraction and Z/offset).
-- Returns epoch seconds (float) or nil.
function util.parse_iso(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d, rest = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)(.*)$")
  if not y then return nil end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  if mo < 1 or mo > 12 or d < 1 or d > 31 then return nil end
  local h, mi, sec, frac, zone = 0, 0, 0, "", ""
  if rest ~= "" then
    h, mi, sec, frac, zone = rest:match("^[T ](%d%d):(%d%d):?(%d?%d?)(%.?%d*)(.*)$")
    if not h then return nil end
    h, mi, sec = tonumber(h), tonumber(mi), tonumber(sec) or 0
    if h > 23 or mi > 59 or sec > 60 or frac == "." then return nil end
  end
  local offset = 0
  if zone ~= "" and zone ~= "Z" and zone ~= "z" then
    local sign, oh, om = zone:match("^([+-])(%d%d):?(%d%d)$")
    if not sign then return nil end
    offset = (tonumber(oh) * 3600 + tonumber(om) * 60) * (sign == "-" and -1 or 1)
  end
  local t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset
  return t + (tonumber("0" .. frac) or 0)
end

---------------------------------------------------------------- files, URLs
-- The whole file, or nil when it cannot be read.
function util.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data = f:read("a")
  f:close()
  return data
end

-- Writes `data` to `path` atomically with mode 0600 (the client's
-- pki.write_file); raises on failure.
function util.write_private(path, data)
  assert(require("keyfactor.pki").write_file(path, data, "0600"))
end

-- %XX escapes and "+" as space (queries and forms).
function util.url_decode(s)
  return (s:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- This process's id (/proc/self is whoever opens it).
function util.pid()
  local stat = util.read_file("/proc/self/stat")
  return tonumber(stat and stat:match("^(%d+)")) or 0
end

---------------------------------------------------------------- misc
function util.base64(s) return basexx.to_base64(s) end

function util.unbase64(s)
  return basexx.from_base64((s:gsub("%s", "")))
end

function util.sha1_hex(s)
  local d = require("openssl.digest").new("sha1"):final(s)
  return (d:gsub(".", function(c) return string.format("%02X", c:byte()) end))
end

function util.random_hex(bytes)
  return (rand.bytes(bytes):gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local GUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"
function util.is_guid(s)
  return type(s) == "string" and s:match(GUID) ~= nil
end

-- An integer from a decoded JSON number (cjson decodes every number as float).
function util.integer(v)
  if type(v) == "number" then return math.tointeger(v) end
  return nil
end

function util.copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

function util.log(fmt, ...)
  io.stderr:write(os.date("!%H:%M:%S "), "keyfactor-sandbox: ",
    string.format(fmt, ...), "\n")
  io.stderr:flush()
end

return util
