package = "keyfactor"
version = "0.1.0-1"
source = {
  url = "git+https://github.com/lua-keyfactor/lua-keyfactor.git",
  tag = "v0.1.0",
}
description = {
  summary = "Keyfactor Command REST API client: Lua over a libcurl C core",
  detailed = [[
Enroll, deploy, renew, find and revoke certificates through the Keyfactor
Command REST API from Lua scripts, with the transport in C over libcurl
(connection pool, TLS session reuse, concurrent fan-out on one multi handle).
Request and response tables use the API's own JSON field names.
]],
  homepage = "https://github.com/lua-keyfactor/lua-keyfactor",
  license = "MIT",
}
dependencies = {
  "lua >= 5.1",
  "lua-cjson >= 2.1.0",
}
external_dependencies = {
  CURL = { header = "curl/curl.h", library = "curl" },
}
build = {
  type = "builtin",
  modules = {
    ["keyfactor.core"] = {
      sources = { "csrc/core.c", "csrc/session.c", "csrc/request.c", "csrc/buffer.c",
                  "csrc/options.c", "csrc/json.c" },
      defines = { "_POSIX_C_SOURCE=200809L" },
      libraries = { "curl" },
      incdirs = { "$(CURL_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)" },
    },
    ["keyfactor"] = "lua/keyfactor/init.lua",
    ["keyfactor.auth"] = "lua/keyfactor/auth.lua",
    ["keyfactor.client"] = "lua/keyfactor/client.lua",
    ["keyfactor.cqueues"] = "lua/keyfactor/cqueues.lua",
    ["keyfactor.errors"] = "lua/keyfactor/errors.lua",
    -- keyfactor.fleet needs a Redis client (rock "redis-lua", Debian lua-redis): optional,
    -- like luaossl below; keyfactor.fleet.claim needs nothing more.
    ["keyfactor.fleet"] = "lua/keyfactor/fleet.lua",
    ["keyfactor.fleet.claim"] = "lua/keyfactor/fleet/claim.lua",
    ["keyfactor.pager"] = "lua/keyfactor/pager.lua",
    -- keyfactor.pki needs luaossl (rock "luaossl", Debian lua-luaossl): an optional
    -- dependency, not listed above, since only this module uses it.
    ["keyfactor.pki"] = "lua/keyfactor/pki.lua",
    ["keyfactor.progress"] = "lua/keyfactor/progress.lua",
    ["keyfactor.repl"] = "lua/keyfactor/repl.lua",
    ["keyfactor.scheduler"] = "lua/keyfactor/scheduler.lua",
    ["keyfactor.show"] = "lua/keyfactor/show.lua",
    ["keyfactor.transport"] = "lua/keyfactor/transport.lua",
    ["keyfactor.validate"] = "lua/keyfactor/validate.lua",
  },
  install = {
    bin = { keyfactor = "bin/keyfactor", ["keyfactor-fleet"] = "bin/keyfactor-fleet" },
  },
}
