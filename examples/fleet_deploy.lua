#!/usr/bin/env lua5.4
-- Fleet deploy: enroll one certificate, deploy it to every store of a
-- container (one Deploy call per store, all at once over one connection
-- pool), wait until every store's inventory shows it, report per store.
--
--   lua5.4 examples/fleet_deploy.lua [common-name] [container]
--
-- Against the sandbox by default; a real Keyfactor Command with the
-- KEYFACTOR_* variables (see examples/connect.lua).
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local connect = require "connect"

local cn = arg[1] or "api.example.com"
local container = arg[2] or os.getenv("KF_CONTAINER") or "Web"
local template = os.getenv("KF_TEMPLATE") or "WebServer"
local entry_password = os.getenv("KF_ENTRY_PASSWORD") or "entry-Passw0rd"

local kf, done = connect { job_delay = 0.5 }
local function fail(what, err)
  io.stderr:write(what, ": ", tostring(err), "\n")
  done()
  os.exit(1)
end

local enrolled, err = kf:enroll { Template = template, Subject = "CN=" .. cn,
                                  SANs = { dns = { cn } }, format = "Store" }
if not enrolled then fail("enroll", err) end
local cert_id = enrolled.CertificateInformation.KeyfactorId

local container_id
for _, c in ipairs(assert(kf:containers())) do
  if c.Name == container then container_id = c.Id end
end
if not container_id then fail("containers", "no container named " .. container) end

local stores = {}
for store in kf:stores { query = "ContainerId -eq " .. container_id, page_size = 500 } do
  stores[#stores + 1] = store
end

-- One function per store; kf:parallel runs them concurrently.
local jobs = {}
for i, store in ipairs(stores) do
  jobs[i] = function(client)
    local answer, deploy_err = client:deploy { CertificateId = cert_id, Password = entry_password,
      Stores = { { StoreId = store.Id, Alias = cn, Overwrite = true } } }
    if not answer then return nil, deploy_err end     -- a failed store is kind "partial"
    return store.Id
  end
end
local started = os.clock()
local scheduled, failures = kf:parallel(jobs, { concurrency = 32 })

local waiting = {}
for i = 1, #stores do
  if scheduled[i] then waiting[#waiting + 1] = scheduled[i] end
end
-- wait_deployed stops at the first failed job (kind "job"): note it and wait
-- again for the others, so every store gets its own line.
local missing, job_failed = {}, {}
while #waiting > 0 do
  local ok, wait_err = kf:wait_deployed(cert_id, waiting, { timeout = 120, interval = 0.25 })
  if ok then break end
  if wait_err.kind ~= "job" then
    for _, id in ipairs(wait_err.missing or {}) do missing[id] = true end
    if not wait_err.missing then fail("wait_deployed", wait_err) end
    break
  end
  job_failed[wait_err.store] = wait_err.message
  local rest = {}
  for _, id in ipairs(waiting) do if id ~= wait_err.store then rest[#rest + 1] = id end end
  waiting = rest
end

local ok_count = 0
print(("certificate %d (%s) to %d stores of %s:"):format(cert_id, cn, #stores, container))
for i, store in ipairs(stores) do
  local state
  if failures[i] then state = "FAILED  " .. tostring(failures[i])
  elseif job_failed[store.Id] then state = "FAILED  job: " .. job_failed[store.Id]
  elseif missing[store.Id] then state = "PENDING not inventoried in time"
  else state = "ok"; ok_count = ok_count + 1 end
  print(("  %-24s %-28s %s"):format(store.ClientMachine, store.StorePath, state))
end
print(("%d deployed, %d failed (%.2fs CPU)"):format(ok_count, #stores - ok_count, os.clock() - started))
done()
os.exit(ok_count == #stores and 0 or 1)
