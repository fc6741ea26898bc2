-- Counts how often each certificate of the fleet demo was renewed, from
-- Keyfactor itself: the certificates with its subject (one newer = renewed
-- once), and the renewal POSTs the sandbox answered (its request log).
--
--   lua5.4 examples/redis/fleet_report.lua IDS-FILE REQUESTS-JSON   (Keyfactor: KEYFACTOR_*)
-- IDS-FILE: "id cn" lines (enroll_many.lua); REQUESTS-JSON: GET /_sandbox/requests.
-- Last line: "fleet: N certificates, N renewed once, 0 twice, 0 lost"; exits 1 unless so.
local keyfactor = require "keyfactor"
local cjson = require "cjson"

local certs = {}
for line in io.lines(arg[1]) do
  local id, cn = line:match("^(%d+) (%S+)$")
  if id then certs[#certs + 1] = { id = math.tointeger(tonumber(id)), cn = cn } end
end
local f = assert(io.open(arg[2], "rb"))
local log = cjson.decode(f:read("a"))
f:close()
local answered = 0
for _, r in ipairs(log) do
  if r.method == "POST" and r.path:lower():find("/enrollment/renew$") and r.status == 200 then
    answered = answered + 1
  end
end

local kf = keyfactor.from_env()
local fns = {}
for i, c in ipairs(certs) do
  fns[i] = function(k)
    local n = 0
    for cert in k:certificates { query = 'IssuedCN -eq "' .. c.cn .. '"', includeRevoked = true,
                                 includeExpired = true } do
      if cert.Id ~= c.id then n = n + 1 end
    end
    return n
  end
end
local newer, errs = kf:parallel(fns, { progress = false })
kf:close()
if next(errs) then error(select(2, next(errs)), 0) end
local once, twice, lost = 0, 0, 0
for i = 1, #certs do
  if newer[i] == 1 then once = once + 1 elseif newer[i] > 1 then twice = twice + 1 else lost = lost + 1 end
end
print(string.format("renewal POSTs answered by the sandbox: %d", answered))
print(string.format("fleet: %d certificates, %d renewed once, %d twice, %d lost", #certs, once, twice, lost))
os.exit(once == #certs and answered == #certs and 0 or 1)
