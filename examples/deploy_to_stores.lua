#!/usr/bin/env lua5.4
-- Enroll a certificate with the key kept on the server ("Store" format),
-- deploy it to two certificate stores (one PEM, one PKCS12), wait until both
-- stores report it in the certificate's Locations, and print a report.
--
--   lua5.4 examples/deploy_to_stores.lua [common-name]
--
-- Runs against a sandbox started here, or a real Keyfactor Command when
-- KEYFACTOR_HOSTNAME (and credentials) are set; then also set
-- KF_TEMPLATE and KF_CONTAINER to a template and store container of yours.
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local connect = require "connect"

local cn = arg[1] or "shop.example.com"
local template = os.getenv("KF_TEMPLATE") or "WebServer"
local container = os.getenv("KF_CONTAINER") or "Web"

local kf, done = connect()

local function fail(what, err)
  io.stderr:write(what, ": ", tostring(err), "\n")
  done()
  os.exit(1)
end

local started = os.time()

-- 1. Enroll: the server generates and keeps the key.
local enrolled, err = kf:enroll {
  Template = template, Subject = "CN=" .. cn .. ",O=Example,C=US",
  SANs = { dns = { cn, "www." .. cn } }, format = "Store",
}
if not enrolled then fail("enroll", err) end
local info = enrolled.CertificateInformation
if not info.KeyfactorId or info.KeyfactorId == 0 then
  fail("enroll", "not issued: " .. tostring(info.RequestDisposition))
end

-- 2. Pick one PEM and one PKCS12 store of the container.
local container_id
for _, c in ipairs(assert(kf:containers())) do
  if c.Name == container then container_id = c.Id end
end
if not container_id then fail("containers", "no container named " .. container) end
local type_names = {}
for _, t in ipairs(assert(kf:store_types())) do type_names[t.StoreType] = t.ShortName end

local targets, seen = {}, {}
for store in kf:stores { query = "ContainerId -eq " .. container_id } do
  local short = type_names[store.CertStoreType]
  if (short == "PEM" or short == "PKCS12") and not seen[short] then
    seen[short] = true
    targets[#targets + 1] = store
  end
end
if #targets < 2 then fail("stores", "need a PEM and a PKCS12 store in " .. container) end

-- 3. Deploy: one management job per store.  PEM stores need an entry password.
local store_ids = {}
for i, store in ipairs(targets) do store_ids[i] = { StoreId = store.Id, Alias = cn, Overwrite = true } end
local deployed
deployed, err = kf:deploy {
  CertificateId = info.KeyfactorId, Stores = store_ids,
  Password = os.getenv("KF_ENTRY_PASSWORD") or "entry-Passw0rd",
}
if not deployed then fail("deploy", err) end
if #deployed.FailedStores > 0 then
  fail("deploy", "no job for stores " .. table.concat(deployed.FailedStores, ", "))
end

-- 4. Jobs only create work: confirm through the certificate's Locations.
local ok
ok, err = kf:wait_deployed(info.KeyfactorId, deployed.SuccessfulStores, { timeout = 60, interval = 0.25 })
if not ok then fail("wait_deployed", err) end

local cert = assert(kf:certificate(info.KeyfactorId, { includeLocations = true }))
print(("certificate %d  %s"):format(cert.Id, cert.IssuedDN))
print(("  thumbprint  %s"):format(cert.Thumbprint))
print(("  serial      %s"):format(cert.SerialNumber))
print(("  issuer      %s"):format(cert.IssuerDN))
print(("  valid until %s"):format(cert.NotAfter))
print(("deployed to %d stores in %ds:"):format(#cert.Locations, os.time() - started))
for _, loc in ipairs(cert.Locations) do
  print(("  %-8s %s:%s  alias %s"):format(type_names[loc.StoreType] or loc.StoreType,
    loc.StoreMachine, loc.StorePath, loc.Alias))
end
done()
