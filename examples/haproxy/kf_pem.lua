--- Enroll a certificate through lua-keyfactor and turn the PKCS#12 answer
-- into the PEM bundle HAProxy serves (certificate, chain, private key).
--
-- Shared by renew.lua (inside HAProxy, Lua 5.3) and issue.lua (the first
-- certificate, from the command line).  PKCS#12 is opened with luaossl
-- (Debian's lua-luaossl installs for Lua 5.1 to 5.4), so no openssl process
-- is forked from inside HAProxy.

local pkcs12 = require "openssl.pkcs12"
local rand = require "openssl.rand"

local kf_pem = {}

--- Base64 to bytes (Pkcs12Blob is base64 in the JSON answer).
kf_pem.unbase64 = require("keyfactor.util.base64").decode

local function hex(bytes)
  return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

--- Enrolls `subject` (with `sans`, a list of DNS names) as a PFX and returns
-- `pem, info` (the bundle and CertificateInformation), or `nil, err`.
-- `opts.template` (WebServer), `opts.renewal_of` (a KeyfactorId: Keyfactor
-- records the new certificate as that one's renewal).
function kf_pem.enroll(kf, subject, sans, opts)
  opts = opts or {}
  -- A one-time transport password: the PFX only lives in this process.
  local password = hex(rand.bytes(18))
  local answer, err = kf:enroll {
    Template = opts.template or "WebServer", Subject = subject, SANs = { dns = sans },
    Password = password, IncludeChain = true, format = "PFX",
    RenewalCertificateId = opts.renewal_of,
  }
  if not answer then return nil, err end
  local info = answer.CertificateInformation
  if not info.Pkcs12Blob then
    return nil, "not issued: " .. tostring(info.RequestDisposition or "no Pkcs12Blob")
  end
  local ok, key, cert, chain = pcall(pkcs12.parse, kf_pem.unbase64(info.Pkcs12Blob), password)
  if not ok then return nil, "PKCS#12: " .. tostring(key) end
  local parts = { cert:toPEM() }
  if chain then
    for _, ca in pairs(chain) do parts[#parts + 1] = ca:toPEM() end
  end
  parts[#parts + 1] = key:toPEM("private")
  return table.concat(parts), info
end

--- Writes `data` to `path` through a temporary file and a rename, so a
-- reader (or HAProxy restarting) never sees half a file.  Mode 0600 would
-- need luaposix; the directory's permissions are what protects the key.
function kf_pem.write_atomic(path, data)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then return nil, err end
  local ok, werr = f:write(data)
  f:close()
  if not ok then os.remove(tmp) return nil, werr end
  local renamed, rerr = os.rename(tmp, path)
  if not renamed then os.remove(tmp) return nil, rerr end
  return true
end

return kf_pem
