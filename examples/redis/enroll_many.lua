-- Enrolls N certificates (CN=<prefix>-<i>.example.com, EC keys made here, CSR
-- enrollment) for the fleet demo and benchmark; prints one "id cn" line each.
--
--   lua5.4 examples/redis/enroll_many.lua N [PREFIX]     (Keyfactor: KEYFACTOR_*)
local keyfactor = require "keyfactor"
local pki = require "keyfactor.pki"

local n, prefix = math.tointeger(tonumber(arg[1] or "")), arg[2] or "fleet"
if not n then
  io.stderr:write("usage: enroll_many.lua N [PREFIX]\n")
  os.exit(2)
end
local kf = keyfactor.from_env()
local key = pki.key { type = "EC" }       -- one key will do for a demo; EC keeps renewals quick
local fns = {}
for i = 1, n do
  fns[i] = function(k)
    local cn = string.format("%s-%d.example.com", prefix, i)
    local r, err = k:enroll { CSR = pki.csr { key = key, subject = "CN=" .. cn }, Template = "WebServer",
      format = "PEM" }
    if not r then return nil, err end
    return string.format("%d %s", r.CertificateInformation.KeyfactorId, cn)
  end
end
local lines, errs = kf:parallel(fns, { concurrency = 16, progress = false })
kf:close()
if next(errs) then
  io.stderr:write(tostring(select(2, next(errs))), "\n")
  os.exit(1)
end
print(table.concat(lines, "\n"))
