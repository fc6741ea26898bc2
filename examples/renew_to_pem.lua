#!/usr/bin/env lua5.4
-- Renew a certificate, recover the new one with its private key (the
-- server keeps it: Keyfactor's "server-side enrollment"), and write PEM
-- files for a web server: cert.pem, chain.pem, key.pem (0600).
--
--   lua5.4 examples/renew_to_pem.lua DIR [certificate-id]
--
-- Against the sandbox (which first enrolls one certificate to renew), or a
-- real Keyfactor Command with KEYFACTOR_*.
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local connect = require "connect"
local pki = require "keyfactor.pki"

local dir = assert(arg[1], "usage: renew_to_pem.lua DIR [certificate-id]")
local kf, done, sb = connect {}

local id = tonumber(arg[2] or "")
if not id and sb then
  id = assert(kf:enroll { Template = "WebServer", Subject = "CN=pem.example.com", format = "STORE" })
    .CertificateInformation.KeyfactorId
end
assert(id, "give a certificate id")

local function fail(what, err)
  io.stderr:write(what, ": ", tostring(err), "\n")
  done()
  os.exit(1)
end

local renewed, err = kf:renew { CertificateId = id }
if not renewed then fail("renew", err) end
local new_id = renewed.KeyfactorId

-- A one-time password for the PKCS#12 in transit; never printed.
local password = (require("openssl.rand").bytes(12):gsub(".", function(c) return ("%02x"):format(c:byte()) end))
local recovered
recovered, err = kf:recover { CertID = new_id, Password = password, IncludeChain = true }
if not recovered then fail("recover", err) end

local parts, why = pki.split_pkcs12(recovered.PFX, password)
if not parts then fail("open PKCS#12", why) end
assert(pki.write_file(dir .. "/cert.pem", parts.certificate))
assert(pki.write_file(dir .. "/chain.pem", table.concat(parts.chain)))
assert(pki.write_key(dir .. "/key.pem", parts.key))

local info = pki.certificate_info(parts.certificate)
print(("certificate %d renewed as %d: %s, expires %s"):format(id, new_id, info.subject,
  os.date("!%Y-%m-%d", info.not_after)))
print(("wrote %s/cert.pem, %s/chain.pem (%d CA), %s/key.pem"):format(dir, dir, #parts.chain, dir))
done()
