#!/usr/bin/env lua5.4
-- Bulk renewal: find every active certificate expiring within N days,
-- renew them all at once, deploy each new certificate into the stores that
-- hold the old one (in its place), and report (keyfactor.renewal).
--
--   lua5.4 examples/bulk_renew.lua [days]
--
-- Against the sandbox (which it first seeds with a few short-lived
-- certificates in stores), or a real Keyfactor Command with KEYFACTOR_*.
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local connect = require "connect"
local renewal = require "keyfactor.renewal"

local days = tonumber(arg[1] or "30")
local entry_password = os.getenv("KF_ENTRY_PASSWORD") or "entry-Passw0rd"
local kf, done, sb = connect { job_delay = 0.2 }

if sb then
  -- Seed: three certificates valid for 10 days, each deployed to one store.
  -- ValidityDays is a sandbox-only enrollment field, so this goes through
  -- kf:request (kf:enroll accepts only the API's own fields).
  local stores = {}
  for store in kf:stores { query = "ContainerId -eq 1" } do stores[#stores + 1] = store.Id end
  for i = 1, 3 do
    local answer = assert(kf:request("POST", "/Enrollment/PFX", {
      headers = { ["x-certificateformat"] = "STORE" },
      body = { Template = "WebServer", Subject = "CN=legacy" .. i .. ".example.com",
               Timestamp = os.date("!%Y-%m-%dT%H:%M:%SZ"), ValidityDays = 10 },
    }))
    local id = answer.CertificateInformation.KeyfactorId
    assert(kf:deploy { CertificateId = id, Stores = { { StoreId = stores[i], Alias = "legacy" .. i } },
      Password = entry_password })
    assert(kf:wait_deployed(id, { stores[i] }, { interval = 0.1 }))
  end
end

-- keyfactor.renewal: renew each once (recorded on the old certificate), put
-- the renewal where the old one is (same alias, Overwrite), wait, confirm.
-- A rerun finishes what this one left and renews nothing twice.
local report, err = renewal.run(kf, { within = days * 86400, password = entry_password, wait = 60,
  interval = 0.2, concurrency = 16 })
if not report then
  print("selection failed: " .. tostring(err))
  done()
  os.exit(1)
end
print(("%d certificates expire within %d days"):format(#report.Certificates, days))
local incomplete = 0
for _, entry in ipairs(report.Certificates) do
  if entry.State ~= "complete" then incomplete = incomplete + 1 end
  print("  " .. renewal.line(entry))
end
print(("%d complete, %d incomplete"):format(#report.Certificates - incomplete, incomplete))
done()
os.exit(report.Complete and 0 or 1)
