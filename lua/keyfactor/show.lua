--- Printing responses for people: `keyfactor.show(value)` and the
-- one-line `tostring` of certificates and stores.
--
--     print(keyfactor.show(kf:certificate(42)))
--     {
--       CertState = 1,
--       ContentBytes = "MIIDSzCCAjOgAwIBAgIQ..." (1100 bytes),
--       IssuedDN = "CN=web1.example.com",
--       ...
--     }
--     print(kf:certificate(42))   --> certificate 42 CN=web1.example.com (expires 2027-11-25, active)
--
-- Secrets are never shown: Pkcs12Blob and fields named like *Password*,
-- *Secret*, *Token*, *PrivateKey* (or any string holding a PEM private key)
-- print as `<redacted N bytes>`.
-- Pure Lua: runs on Lua 5.1 to 5.4 and LuaJIT.
-- @module keyfactor.show

local show = {}

local has_cjson, cjson = pcall(require, "cjson")
local NULL = has_cjson and cjson.null or nil

local DEFAULTS = { max_items = 20, max_string = 100, max_depth = 6, width = 80 }

-- Field names whose values are secrets (matched case-insensitively).
local SECRET_NAMES = { "password", "secret", "token", "pkcs12", "pfx", "privatekey", "private_key" }

local function secret_name(key)
  if type(key) ~= "string" then return false end
  local k = key:lower()
  if k == "key" or k:find("apikey", 1, true) then return true end
  for _, word in ipairs(SECRET_NAMES) do
    if k:find(word, 1, true) then return true end
  end
  return false
end

local function redacted(s)
  return "<redacted " .. #s .. " bytes>"
end

local ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function quote(s, max)
  local cut = #s > max
  local text = cut and s:sub(1, max) or s
  text = text:gsub('[%c"\\]', function(c) return ESCAPES[c] or string.format("\\%03d", c:byte()) end)
  if cut then return '"' .. text .. '..." (' .. #s .. " bytes)" end
  return '"' .. text .. '"'
end

local function is_identifier(k)
  return type(k) == "string" and k:find("^[%a_][%w_]*$") ~= nil
end

local function sorted_keys(t)
  local n = 0
  while t[n + 1] ~= nil do n = n + 1 end
  local keys = {}
  for k in pairs(t) do
    if not (type(k) == "number" and k >= 1 and k <= n and k % 1 == 0) then keys[#keys + 1] = k end
  end
  table.sort(keys, function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return ta < tb end
    if ta == "number" or ta == "string" then return a < b end
    return tostring(a) < tostring(b)
  end)
  return n, keys
end

local function scalar(value, secret, opts)
  local t = type(value)
  if value == nil then return "nil" end
  if NULL ~= nil and value == NULL then return "null" end
  if t == "string" then
    if value ~= "" and (secret or value:find("PRIVATE KEY-----", 1, true)) then return redacted(value) end
    return quote(value, opts.max_string)
  end
  if t == "number" then
    if math.type and math.type(value) == "integer" then return tostring(value) end
    if value == math.floor(value) and math.abs(value) < 2 ^ 53 then return string.format("%.0f", value) end
    return tostring(value)
  end
  if secret and t ~= "boolean" and t ~= "table" then return "<redacted>" end
  if t == "boolean" then return tostring(value) end
  if t == "userdata" and tostring(value) == "userdata: (nil)" then return "null" end   -- cjson.null without cjson
  local mt = getmetatable(value)
  local name = type(mt) == "table" and rawget(mt, "__name")
  return "<" .. t .. (type(name) == "string" and " " .. name or "") .. ">"
end

local render

-- Entries of table `t`, each a {key_text or nil, value_text} pair.
local function entries(t, secret, opts, depth, seen)
  local n, keys = sorted_keys(t)
  local out = {}
  for i = 1, math.min(n, opts.max_items) do
    out[#out + 1] = { nil, render(t[i], secret, opts, depth + 1, seen) }
  end
  if n > opts.max_items then out[#out + 1] = { nil, "... " .. (n - opts.max_items) .. " more" } end
  for _, k in ipairs(keys) do
    local label = is_identifier(k) and k or "[" .. scalar(k, false, opts) .. "]"
    out[#out + 1] = { label, render(t[k], secret or secret_name(k), opts, depth + 1, seen) }
  end
  return out
end

function render(value, secret, opts, depth, seen)
  if type(value) ~= "table" then return scalar(value, secret, opts) end
  if seen[value] then return "<cycle>" end
  if next(value) == nil then return "{}" end
  if depth >= opts.max_depth then return "{...}" end
  seen[value] = true
  local items = entries(value, secret, opts, depth, seen)
  seen[value] = nil
  local parts, multiline, length = {}, false, 4 + depth * 2
  for i, item in ipairs(items) do
    parts[i] = item[1] and item[1] .. " = " .. item[2] or item[2]
    length = length + #parts[i] + 2
    if parts[i]:find("\n", 1, true) then multiline = true end
  end
  if not multiline and length <= opts.width then return "{ " .. table.concat(parts, ", ") .. " }" end
  local pad = string.rep("  ", depth + 1)
  for i, part in ipairs(parts) do parts[i] = pad .. part end   -- nested lines carry their own indent
  return "{\n" .. table.concat(parts, ",\n") .. ",\n" .. string.rep("  ", depth) .. "}"
end

--- A short, readable, multi-line text of any value (typically a response
-- table): keys sorted (array items first, in order), nested tables indented
-- (small ones on one line), long arrays and strings elided, `cjson.null`
-- as null, secrets redacted.  A keyfactor error shows as its one line.
-- `opts`: max_items (20), max_string (100), max_depth (6), width (80).
function show.format(value, opts)
  local o = {}
  for k, default in pairs(DEFAULTS) do o[k] = opts and opts[k] or default end
  local mt = getmetatable(value)
  if type(value) == "table" and type(mt) == "table" and rawget(mt, "__name") == "keyfactor.error" then
    return tostring(value)
  end
  return render(value, false, o, 0, {})
end

-- -------------------------------------------------------------------------
-- One-line tostring of certificates and stores
-- -------------------------------------------------------------------------

-- Keyfactor's CertState values.
local CERT_STATES = { [0] = "unknown", "active", "revoked", "denied", "failed", "pending",
                      "CA", "parent CA", "external" }

local function text(value)
  if value == nil or value == NULL or value == "" then return nil end
  return tostring(value)
end

--- "certificate 42 CN=web1.example.com (expires 2027-11-25, active)"
function show.describe_certificate(cert)
  local subject = text(cert.IssuedDN) or (text(cert.IssuedCN) and "CN=" .. cert.IssuedCN) or "(no subject)"
  local state = CERT_STATES[tonumber(cert.CertState) or -1] or (text(cert.CertStateString) or "?"):lower()
  local not_after = text(cert.NotAfter)
  local facts = {}
  if not_after then
    local expired = not_after:sub(1, 19) < os.date("!%Y-%m-%dT%H:%M:%S")
    facts[1] = (expired and "expired " or "expires ") .. not_after:sub(1, 10)
    if expired and state == "active" then state = nil end
  end
  facts[#facts + 1] = state
  return string.format("certificate %s %s (%s)", tostring(cert.Id), subject, table.concat(facts, ", "))
end

--- "store 5a4db0c5-... web01.sandbox.local:/etc/ssl/web01.pem (type 101)";
-- `type_names` (CertStoreType -> ShortName, from kf:store_types()) names the type.
function show.describe_store(store, type_names)
  local kind = store.CertStoreType
  local type_name = type_names and type_names[kind] or (kind ~= nil and "type " .. tostring(kind)) or "?"
  return string.format("store %s %s:%s (%s)", tostring(store.Id), text(store.ClientMachine) or "?",
    text(store.StorePath) or "?", type_name)
end

-- Metatables with __tostring only: no __index, so the tables stay exactly
-- the JSON the server sent.
local CERTIFICATE = { __tostring = show.describe_certificate, __name = "keyfactor.certificate" }
local STORE = { __tostring = function(s) return show.describe_store(s) end, __name = "keyfactor.store" }

local function marker(mt)
  return function(value, ...)
    if type(value) == "table" and getmetatable(value) == nil then setmetatable(value, mt) end
    return value, ...
  end
end

--- Gives a certificate table its one-line tostring; returns all its
-- arguments unchanged (so `return show.certificate(http:call(...))` keeps nil, err).
show.certificate = marker(CERTIFICATE)
--- The same for a store table.
show.store = marker(STORE)

--- Wraps an iterator so every item it yields passes through `mark`.
function show.marking(iterator, mark)
  return function() return mark(iterator()) end
end

return show
