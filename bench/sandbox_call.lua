-- Startup time of the sandbox and the per-call time of kf:certificate(id)
-- against it (sequential, keep-alive).  Run from the checkout:
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/lua5.4/?.so;;" lua5.4 bench/sandbox_call.lua
local core = require "keyfactor.core"
local sandbox = require "keyfactor.sandbox"
local starts = {}
for i = 1, 10 do
  local t = core.now(); local sb = sandbox.start{}; starts[i] = (core.now() - t) * 1000; sb:stop()
end
table.sort(starts)
print(("sandbox.start to URL: median %.0f ms, min %.0f, max %.0f (10 starts)"):format(starts[5], starts[1], starts[10]))
local keyfactor = require "keyfactor"
local sb = sandbox.start{}
local kf = keyfactor.new { url = sb.url, ca_file = sb.ca_file, username = sb.username, password = sb.password }
local enrolled = assert(kf:enroll { Template = "WebServer", Subject = "CN=m.example.com", format = "STORE" })
local id = enrolled.CertificateInformation.KeyfactorId
for _ = 1, 200 do assert(kf:certificate(id)) end
local runs = {}
for r = 1, 5 do
  local t = core.now()
  for _ = 1, 2000 do assert(kf:certificate(id)) end
  runs[r] = (core.now() - t) / 2000 * 1e3
end
table.sort(runs)
print(("kf:certificate(id) against the sandbox: median %.3f ms/call (min %.3f, max %.3f; 5 runs x 2000)")
  :format(runs[3], runs[1], runs[5]))
sb:stop()
