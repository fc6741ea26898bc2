--- Base64 (RFC 4648, padded) both ways, in plain Lua: the client's Basic
-- credentials, PFX blobs and certificate contents, without luaossl.
-- Arithmetic only (no bitwise operators), for Lua 5.1 to 5.4 and LuaJIT.
-- @module keyfactor.util.base64

local base64 = {}

local ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local VALUE = {}
for i = 1, #ALPHABET do VALUE[ALPHABET:sub(i, i)] = i - 1 end

--- The padded base64 text of the bytes `s`.
function base64.encode(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = 2 + (b and 1 or 0) + (c and 1 or 0)
    for k = 1, 4 do
      if k <= chars then
        local index = math.floor(n / 64 ^ (4 - k)) % 64
        out[#out + 1] = ALPHABET:sub(index + 1, index + 1)
      else
        out[#out + 1] = "="
      end
    end
  end
  return table.concat(out)
end

--- The bytes of base64 `text` (white space and padding ignored), or nil
-- when it holds a character outside the alphabet.
function base64.decode(text)
  text = text:gsub("[%s=]", "")
  local out = {}
  for i = 1, #text, 4 do
    local chunk = text:sub(i, i + 3)
    local n, bits = 0, 0
    for j = 1, #chunk do
      local value = VALUE[chunk:sub(j, j)]
      if not value then return nil end
      n, bits = n * 64 + value, bits + 6
    end
    local bytes = math.floor(bits / 8)
    n = math.floor(n / 2 ^ (bits - bytes * 8))         -- drop the padding bits
    local chars = {}
    for k = bytes, 1, -1 do
      chars[k] = string.char(n % 256)
      n = math.floor(n / 256)
    end
    out[#out + 1] = table.concat(chars)
  end
  return table.concat(out)
end

--- True when `text` holds only base64 characters and white space.
function base64.looks(text)
  return text:find("^[%w+/=%s]+$") ~= nil
end

return base64
