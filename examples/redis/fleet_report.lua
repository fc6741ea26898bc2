-- Counts how often each certificate of the fleet demo was renewed, from
-- Keyfactor itself: the certificates with its subject (one newer = renewed
-- once), and the renewal POSTs the sandbox answered (its request log); and
-- how many renewals are deployed everywhere: the old certificate in no store
-- any more, its renewal (the record on it, keyfactor.fleet.claim) in each of
-- the old one's places under the same alias.
--
--   lua5.4 examples/redis/fleet_report.lua IDS-FILE REQUESTS-JSON   (Keyfactor: KEYFACTOR_*)
-- IDS-FILE: "id cn" lines (enroll_many.lua); REQUESTS-JSON: GET /_sandbox/requests.
-- Last lines: "fleet: N of N renewals deployed everywhere" and
-- "fleet: N certificates, N renewed once, 0 twice, 0 lost"; exits 1 unless so.
local keyfactor = require "keyfactor"
local claim = require "keyfactor.fleet.claim"
local query = require "keyfactor.query"
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
    for cert in k:certificates { query = query.clause("IssuedCN", "-eq", c.cn), includeRevoked = true,
                                 includeExpired = true } do
      if cert.Id ~= c.id then n = n + 1 end
    end
    -- deployed everywhere: the old one in no store, the recorded renewal under its alias
    local old = assert(k:certificate(c.id, { includeMetadata = true, includeLocations = true }))
    local mark = claim.parse(old.Metadata and old.Metadata[claim.FIELD], c.id)
    local everywhere = false
    if mark and mark.state == "renewed" and #(old.Locations or {}) == 0 then
      local new = assert(k:certificate(mark.new, { includeLocations = true }))
      everywhere = #(new.Locations or {}) > 0 and new.Locations[1].Alias == c.cn
    end
    return { newer = n, everywhere = everywhere }
  end
end
local newer, errs = kf:parallel(fns, { progress = false })
kf:close()
if next(errs) then error(select(2, next(errs)), 0) end
local once, twice, lost, everywhere = 0, 0, 0, 0
for i = 1, #certs do
  local n = newer[i].newer
  if n == 1 then once = once + 1 elseif n > 1 then twice = twice + 1 else lost = lost + 1 end
  if newer[i].everywhere then everywhere = everywhere + 1 end
end
print(string.format("renewal POSTs answered by the sandbox: %d", answered))
print(string.format("fleet: %d of %d renewals deployed everywhere (in the old certificate's place)", everywhere,
  #certs))
print(string.format("fleet: %d certificates, %d renewed once, %d twice, %d lost", #certs, once, twice, lost))
os.exit(once == #certs and answered == #certs and everywhere == #certs and 0 or 1)
