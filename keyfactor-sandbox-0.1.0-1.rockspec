-- The Keyfactor Command API emulator: module keyfactor.sandbox and the
-- keyfactor-sandbox launcher; the client modules come from the keyfactor rock.
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
   "lua >= 5.4", -- lua-http, cqueues and luaossl on 5.4: what it is developed and tested on
   "http",
   "luaossl",
   "cqueues",
   "luafilesystem", -- the data directory's lock (Debian lua-filesystem)
   "lua-cjson",
   "keyfactor = 0.1.0",
}
build = {
   type = "make",
   makefile = "rocks.mk",
   build_target = "sandbox",
   install_target = "install-sandbox",
   install_variables = { LUADIR = "$(LUADIR)", BINDIR = "$(BINDIR)" },
}
test = {
   type = "busted",
   flags = { "spec/sandbox" },
}
