#!/usr/bin/env lua5.3
-- Issues the first certificate HAProxy serves: enrolls through the client
-- (Keyfactor settings from KEYFACTOR_* as for keyfactor.from_env) and writes
-- the PEM bundle (certificate, chain, key) to PATH.
--
--   lua5.3 examples/haproxy/issue.lua PATH COMMON-NAME
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local keyfactor = require "keyfactor"
local kf_pem = require "kf_pem"

local path, cn = arg[1], arg[2]
if not path or not cn then
  io.stderr:write("usage: issue.lua PATH COMMON-NAME\n")
  os.exit(2)
end

local kf = keyfactor.from_env { timeout = 20, connect_timeout = 5 }
local pem, info = kf_pem.enroll(kf, "CN=" .. cn, { cn })
kf:close()
if not pem then
  io.stderr:write("issue: ", tostring(info), "\n")
  os.exit(1)
end
assert(kf_pem.write_atomic(path, pem))
print(("issued certificate %d serial %s -> %s"):format(info.KeyfactorId, info.SerialNumber, path))
