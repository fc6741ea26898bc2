-- The Keyfactor Command API emulator: module keyfactor.sandbox and the
-- keyfactor-sandbox launcher. Depends on the client rock (keyfactor) for keyfactor.pki.
rockspec_format = "3.0"
package = "keyfactor-sandbox"
version = "0.1.0-1"
source = {
   url = "git+https://github.com/lua-keyfactor/lua-keyfactor.git",
   tag = "v0.1.0",
}
description = {
   summary = "A local emulator of the Keyfactor Command REST API with real HTTPS and PKI",
   detailed = [[
keyfactor-sandbox serves the Keyfactor Command REST API endpoints a certificate
lifecycle client needs (enrollment, deploy, renew, revoke, certificate search,
stores, approval workflow) over real HTTPS with its own CA, plus test hooks for
fault injection and request logs. Developed and tested on Lua 5.4.
]],
   homepage = "https://github.com/lua-keyfactor/lua-keyfactor",
   license = "MIT",
}
dependencies = {
   "lua >= 5.1", -- developed and tested on Lua 5.4
   "http",
   "luaossl",
   "cqueues",
   "lua-cjson",
   "luafilesystem", -- the --data DIR lock
   "keyfactor",     -- keyfactor.pki.write_file writes the 0600 files
}
build = {
   type = "builtin",
   modules = {
      ["keyfactor.sandbox"] = "lua/keyfactor/sandbox/init.lua",
      ["keyfactor.sandbox.auth"] = "lua/keyfactor/sandbox/auth.lua",
      ["keyfactor.sandbox.catalog"] = "lua/keyfactor/sandbox/catalog.lua",
      ["keyfactor.sandbox.certificates"] = "lua/keyfactor/sandbox/certificates.lua",
      ["keyfactor.sandbox.check"] = "lua/keyfactor/sandbox/check.lua",
      ["keyfactor.sandbox.datadir"] = "lua/keyfactor/sandbox/datadir.lua",
      ["keyfactor.sandbox.enrollment"] = "lua/keyfactor/sandbox/enrollment.lua",
      ["keyfactor.sandbox.faults"] = "lua/keyfactor/sandbox/faults.lua",
      ["keyfactor.sandbox.hooks"] = "lua/keyfactor/sandbox/hooks.lua",
      ["keyfactor.sandbox.http"] = "lua/keyfactor/sandbox/http.lua",
      ["keyfactor.sandbox.jobs"] = "lua/keyfactor/sandbox/jobs.lua",
      ["keyfactor.sandbox.pki"] = "lua/keyfactor/sandbox/pki.lua",
      ["keyfactor.sandbox.query"] = "lua/keyfactor/sandbox/query.lua",
      ["keyfactor.sandbox.router"] = "lua/keyfactor/sandbox/router.lua",
      ["keyfactor.sandbox.server"] = "lua/keyfactor/sandbox/server.lua",
      ["keyfactor.sandbox.state"] = "lua/keyfactor/sandbox/state.lua",
      ["keyfactor.sandbox.stores"] = "lua/keyfactor/sandbox/stores.lua",
      ["keyfactor.sandbox.util"] = "lua/keyfactor/sandbox/util.lua",
      ["keyfactor.sandbox.workflow"] = "lua/keyfactor/sandbox/workflow.lua",
   },
   install = {
      bin = { ["keyfactor-sandbox"] = "bin/keyfactor-sandbox" },
   },
}
test = {
   type = "busted",
   flags = { "spec/sandbox" },
}
