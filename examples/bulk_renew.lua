#!/usr/bin/env lua5.4
-- Bulk renewal: find every active certificate expiring within N days,
-- renew them all at once, deploy each new certificate to the stores that
-- held the old one, and report.
--
--   lua5.4 examples/bulk_renew.lua [days]
--
-- Against the sandbox (which it first seeds with a few short-lived
-- certificates in stores), or a real Keyfactor Command with KEYFACTOR_*.
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local connect = require "connect"

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
    assert(kf:deploy { CertificateId = id, Stores = { { StoreId = stores[i] } }, Password = entry_password })
    assert(kf:wait_deployed(id, { stores[i] }, { interval = 0.1 }))
  end
end

local horizon = os.date("!%Y-%m-%dT%H:%M:%SZ", os.time() + days * 86400)
local expiring = {}
for cert in kf:certificates { query = 'NotAfter -le "' .. horizon .. '"', includeLocations = true } do
  expiring[#expiring + 1] = cert
end
print(("%d certificates expire before %s"):format(#expiring, horizon))

local jobs = {}
for i, old in ipairs(expiring) do
  jobs[i] = function(client)
    local renewed, err = client:renew { CertificateId = old.Id }
    if not renewed then return nil, err end
    local stores = {}
    for _, loc in ipairs(old.Locations or {}) do
      stores[#stores + 1] = { StoreId = loc.CertStoreId, Alias = loc.Alias, Overwrite = true }
    end
    if #stores == 0 then return { id = renewed.KeyfactorId, stores = {} } end
    local deployed
    deployed, err = client:deploy { CertificateId = renewed.KeyfactorId, Stores = stores,
                                    Password = entry_password }
    if not deployed then return nil, err end
    local ok
    ok, err = client:wait_deployed(renewed.KeyfactorId, deployed.SuccessfulStores,
                                   { timeout = 60, interval = 0.2 })
    if not ok then return nil, err end
    return { id = renewed.KeyfactorId, stores = deployed.SuccessfulStores, failed = deployed.FailedStores }
  end
end
local results, errors = kf:parallel(jobs, { concurrency = 16 })

local failed = 0
for i, old in ipairs(expiring) do
  local r = results[i]
  if r then
    print(("  %-28s %d -> %d, in %d stores%s"):format(old.IssuedCN, old.Id, r.id, #r.stores,
      r.failed and #r.failed > 0 and (", FAILED " .. table.concat(r.failed, " ")) or ""))
  else
    failed = failed + 1
    print(("  %-28s %d FAILED: %s"):format(old.IssuedCN, old.Id, tostring(errors[i])))
  end
end
print(("%d renewed, %d failed"):format(#expiring - failed, failed))
done()
os.exit(failed == 0 and 0 or 1)
