# What luarocks runs for the two rocks (build.type = "make" in both
# rockspecs).  Not the builtin type: it copies the whole lua/ directory into
# every rock, so the client and the sandbox rock would each install the
# other's files.  luarocks passes CFLAGS, LIBFLAG, LUA_INCDIR (build) and
# LUADIR, LIBDIR, BINDIR (install); libcurl is found with pkg-config, which
# knows Debian's multiarch include directory.

CC         ?= cc
CFLAGS     ?= -O2 -fPIC
LIBFLAG    ?= -shared
LUA_INCDIR ?= /usr/include/lua5.4
CURL_CFLAGS := $(shell pkg-config --cflags libcurl 2>/dev/null)
CURL_LIBS   := $(shell pkg-config --libs libcurl 2>/dev/null || echo -lcurl)

# The core is built per Lua (keyed by the headers it is compiled against):
# `luarocks --lua-version=5.3 make` after a 5.4 build in the same checkout
# must compile a 5.3 core, not find the 5.4 one up to date.
LUA_KEY    := $(subst /,_,$(patsubst /%,%,$(LUA_INCDIR)))
CORE       := build/rock/$(LUA_KEY)/keyfactor/core.so
# Every client module; the sandbox's are in lua/keyfactor/sandbox/.
CLIENT_LUA := $(wildcard lua/keyfactor/*.lua)
# The client's folders below lua/keyfactor/, each installed as itself.
CLIENT_DIRS := api auth fleet http parallel util
SANDBOX_LUA := $(wildcard lua/keyfactor/sandbox/*.lua)

.PHONY: client sandbox install-client install-sandbox

client: $(CORE)

$(CORE): $(wildcard csrc/*.c csrc/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -std=c99 -D_POSIX_C_SOURCE=200809L -I$(LUA_INCDIR) $(CURL_CFLAGS) \
	  $(LIBFLAG) -o $@ $(wildcard csrc/*.c) $(CURL_LIBS)

install-client: $(CORE)
	install -d $(LUADIR)/keyfactor $(LIBDIR)/keyfactor $(BINDIR)
	install -m 644 $(filter-out lua/keyfactor/init.lua,$(CLIENT_LUA)) $(LUADIR)/keyfactor/
	install -m 644 lua/keyfactor/init.lua $(LUADIR)/keyfactor.lua
	install -m 755 $(CORE) $(LIBDIR)/keyfactor/
	for dir in $(CLIENT_DIRS); do \
	  install -d $(LUADIR)/keyfactor/$$dir && install -m 644 lua/keyfactor/$$dir/*.lua $(LUADIR)/keyfactor/$$dir/ || exit 1; \
	done
	install -m 755 bin/keyfactor bin/keyfactor-fleet $(BINDIR)/

sandbox:

install-sandbox:
	install -d $(LUADIR)/keyfactor/sandbox $(BINDIR)
	install -m 644 $(filter-out lua/keyfactor/sandbox/init.lua,$(SANDBOX_LUA)) $(LUADIR)/keyfactor/sandbox/
	install -m 644 lua/keyfactor/sandbox/init.lua $(LUADIR)/keyfactor/sandbox.lua
	install -m 755 bin/keyfactor-sandbox $(BINDIR)/
