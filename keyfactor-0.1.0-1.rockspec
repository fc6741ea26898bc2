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
-- libcurl: rocks.mk finds it with pkg-config (Debian keeps curl.h under
-- /usr/include/<multiarch>, where luarocks' own header search does not look).
build = {
  type = "make",
  makefile = "rocks.mk",
  build_target = "client",
  install_target = "install-client",
  -- keyfactor.pki needs luaossl (rock "luaossl", Debian lua-luaossl), and
  -- keyfactor.repl uses readline (Debian lua-readline) and cqueues when
  -- present: optional, not listed above, since only those modules use them.
  build_variables = {
    CFLAGS = "$(CFLAGS)", LIBFLAG = "$(LIBFLAG)", LUA_INCDIR = "$(LUA_INCDIR)",
  },
  -- LUA_INCDIR again at install: it names the core built for this Lua
  -- (rocks.mk keeps one per Lua, so a 5.3 install never takes the 5.4 one).
  install_variables = {
    LUADIR = "$(LUADIR)", LIBDIR = "$(LIBDIR)", BINDIR = "$(BINDIR)", LUA_INCDIR = "$(LUA_INCDIR)",
  },
}
