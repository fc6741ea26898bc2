--- The client's secrets: kept where walking the client cannot reach them,
-- and redacted from text in every form a server may echo them.
--
--   local vault = secrets.new()
--   vault:add("password", pw, secrets.base64(user .. ":" .. pw))
--   vault:redact(text)      -- text with every form of every secret as "***"
--   vault:get("password")   -- for the code that sends it
--   tostring(vault)         -- "keyfactor.secrets (1 secret)"
--
-- The values live in C memory (core.vault), not in a Lua table or upvalue
-- that a pretty-printer, a debugger or a REPL would dump.
--
-- Forms redacted: the value itself; JSON-escaped (RFC 8259 minimal, with
-- `\/`, and System.Text.Json's \uXXXX style in both hex cases);
-- percent-encoded (either hex case, space as %20 or +); HTML-escaped;
-- base64.  Callers add related strings (the base64 of Basic's
-- "user:password"), which get the same forms.
--
-- Short secrets: in text that came from the server (error messages, pages)
-- every occurrence of every secret is redacted, even of one character —
-- a short password makes messages ugly, never leaky.  Lines the client
-- writes itself (debug lines) redact secrets of 4 characters and more, so a
-- one-digit password cannot mangle "GET /Certificates/42".
-- @module keyfactor.auth.secrets

local core = require "keyfactor.core"

local unpack = table.unpack or unpack   -- luacheck: ignore 113

local secrets = {}

local Vault = {}
Vault.__index = Vault

-- Redaction threshold for lines the client composes (see above).
secrets.OWN_TEXT_MIN = 4

--- Base64 (RFC 4648, padded) of `s` (keyfactor.util.base64).
secrets.base64 = require("keyfactor.util.base64").encode

-- The code points of UTF-8 text, or nil when it is not valid UTF-8.
local function code_points(s)
  local points, i = {}, 1
  while i <= #s do
    local c = s:byte(i)
    local n, cp = 0, c
    if c >= 0xF0 and c < 0xF8 then n, cp = 3, c - 0xF0
    elseif c >= 0xE0 then n, cp = 2, c - 0xE0
    elseif c >= 0xC0 then n, cp = 1, c - 0xC0
    elseif c >= 0x80 then return nil end
    for k = 1, n do
      local cc = s:byte(i + k)
      if not cc or cc < 0x80 or cc >= 0xC0 then return nil end
      cp = cp * 64 + (cc - 0x80)
    end
    points[#points + 1] = cp
    i = i + n + 1
  end
  return points
end

local JSON_SHORT = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
                     ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function json_minimal(s, slash)
  local out = s:gsub('[%c"\\]', function(c)
    return JSON_SHORT[c] or string.format("\\u%04x", c:byte())
  end)
  if slash then out = out:gsub("/", "\\/") end
  return out
end

-- System.Text.Json's default: non-ASCII and HTML-sensitive characters as
-- \uXXXX (surrogate pairs above U+FFFF).
local function json_unicode(s, hex)
  local points = code_points(s)
  if not points then return nil end
  local out = {}
  for _, cp in ipairs(points) do
    local ch = cp < 0x80 and string.char(cp) or nil
    if ch and (ch:match("[%w %-%./:;=?@%[%]^_{|}~!#$%%()*,]")) then
      out[#out + 1] = ch
    elseif ch == "\\" then
      out[#out + 1] = "\\\\"
    elseif cp < 0x10000 then
      out[#out + 1] = string.format("\\u" .. hex, cp)
    else
      local v = cp - 0x10000
      out[#out + 1] = string.format("\\u" .. hex .. "\\u" .. hex, 0xD800 + math.floor(v / 1024), 0xDC00 + v % 1024)
    end
  end
  return table.concat(out)
end

local function percent(s, hex, plus)
  return (s:gsub("[^%w%-%._~]", function(c)
    if plus and c == " " then return "+" end
    return string.format("%%" .. hex, c:byte())
  end))
end

local HTML = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }

--- Every form of `value` a server might echo (the value first, no repeats).
function secrets.forms(value)
  local forms, seen = {}, {}
  local function add(form)
    if form and form ~= "" and not seen[form] then
      seen[form] = true
      forms[#forms + 1] = form
    end
  end
  add(value)
  add(json_minimal(value))
  add(json_minimal(value, true))
  add(json_unicode(value, "%04X"))
  add(json_unicode(value, "%04x"))
  add(percent(value, "%02X"))
  add(percent(value, "%02x"))
  add(percent(value, "%02X", true))
  add(percent(value, "%02x", true))
  add((value:gsub("[&<>\"']", HTML)))
  add(secrets.base64(value))
  return forms
end

--- An empty vault.
function secrets.new()
  return setmetatable({ store = core.vault() }, Vault)
end

--- Keeps `value` under `name` (replacing an earlier one of that name) with
-- its forms, and those of each related string in `...`.  An empty or
-- missing value is ignored.
function Vault:add(name, value, ...)
  if type(value) ~= "string" or value == "" then return end
  local all = secrets.forms(value)
  for i = 1, select("#", ...) do
    local related = select(i, ...)
    if type(related) == "string" and related ~= "" then
      for _, form in ipairs(secrets.forms(related)) do all[#all + 1] = form end
    end
  end
  self.store:set(name, unpack(all))
end

--- The value kept under `name`, or nil.
function Vault:get(name)
  return self.store:get(name)
end

--- `text` with every form of every secret (and of each string of the
-- array `extra`) replaced by "***".  `min`: the shortest secret redacted
-- (default 1, for text from the server; secrets.OWN_TEXT_MIN for the
-- client's own lines).  Anything but a string comes back unchanged.
function Vault:redact(text, extra, min)
  if type(text) ~= "string" then return text end
  local forms
  if extra then
    forms = {}
    for _, value in pairs(extra) do
      if type(value) == "string" then
        for _, form in ipairs(secrets.forms(value)) do forms[#forms + 1] = form end
      end
    end
  end
  return self.store:redact(text, min or 1, forms)
end

function Vault:__tostring()
  return "keyfactor.secrets (" .. tostring(self.store):match("%((.*)%)") .. ")"
end

return secrets
