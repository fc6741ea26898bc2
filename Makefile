# lua-keyfactor — build in place, run the demo, run the checks.
#
#   make demo     install what is missing, run examples/deploy_to_stores.lua against the sandbox
#   make check    install what is missing, build, luacheck, every busted spec
#
# LUA selects the runtime: lua5.4 (default), lua5.3, luajit.

LUA        ?= lua5.4
PREFIX_BIN := $(shell command -v $(LUA) 2>/dev/null)

ifeq ($(LUA),luajit)
LUA_INC    ?= /usr/include/luajit-2.1
LUA_ABI    := 5.1
else
LUA_ABI    := $(patsubst lua%,%,$(LUA))
LUA_INC    ?= /usr/include/lua$(LUA_ABI)
endif

BUILD      := build/$(LUA)
CORE       := $(BUILD)/keyfactor/core.so
SRC        := $(wildcard csrc/*.c)
HDR        := $(wildcard csrc/*.h)

CC         ?= cc
CFLAGS     ?= -O2 -g
KF_CFLAGS  := -std=c99 -fPIC -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L \
              -I$(LUA_INC) $(shell pkg-config --cflags libcurl 2>/dev/null)
LDLIBS     := $(shell pkg-config --libs libcurl 2>/dev/null || echo -lcurl)

# Lua sees the checkout first: lua/ for modules, build/ for the C core.
# $(call lua_env,BUILD_DIR) sets the module paths for a build of the core;
# $(call busted,BUILD_DIR,WRAPPER) runs busted (on $(LUA)) over it.
LPATH      := $(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/spec/?.lua
lua_env     = LUA_PATH="$(LPATH);;" LUA_CPATH="$(CURDIR)/$(1)/?.so;;"
busted      = $(call lua_env,$(1)) $(2) $(LUA) /usr/bin/busted --lpath="$(LPATH)" --cpath="$(CURDIR)/$(1)/?.so"
SPECS      ?= spec

.PHONY: all build deps demo check lint spec clean rock-check check-asan check-valgrind bench bench-smoke docs

all: build

build: $(CORE)

$(CORE): $(SRC) $(HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(KF_CFLAGS) -shared -o $@ $(SRC) $(LDLIBS)

deps:
	@bash .ci/install-deps $(LUA)

demo: deps build
	$(call lua_env,$(BUILD)) $(LUA) examples/deploy_to_stores.lua

lint:
	luacheck lua spec examples bin bench

spec: build
	$(call busted,$(BUILD)) $(SPECS)

check: deps build lint spec

# The C core built with AddressSanitizer + UBSan, the whole spec suite run
# against it (the interpreter is not instrumented, so the runtime is
# preloaded; leaks are valgrind's job, below).
ASAN_BUILD := build/asan-$(LUA)
ASAN_LIB    = $(shell $(CC) -print-file-name=libasan.so)
check-asan: deps
	@mkdir -p $(ASAN_BUILD)/keyfactor
	$(CC) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined \
	  $(KF_CFLAGS) -shared -o $(ASAN_BUILD)/keyfactor/core.so $(SRC) $(LDLIBS)
	LD_PRELOAD=$(ASAN_LIB) ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(call busted,$(ASAN_BUILD)) $(SPECS)

# The spec suite under valgrind memcheck (the client process; the sandbox
# runs in a child and is not traced): no errors, no definite leaks.
VALGRIND := valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
            --show-leak-kinds=definite --track-fds=no --trace-children=no
check-valgrind: deps build
	$(call busted,$(BUILD),$(VALGRIND)) $(SPECS)

# The API reference from the code's LDoc comments, as HTML in doc/html.
docs:
	@command -v ldoc >/dev/null || bash .ci/install-deps $(LUA) lua-ldoc
	ldoc -c config.ld .
	@echo "reference: doc/html/index.html"

bench: deps build
	bash bench/run

bench-smoke: build
	bash bench/run --smoke

clean:
	rm -rf build

# The rockspecs install with luarocks (no registry here: --deps-mode=none)
# into a private tree, and the installed client loads.
ROCKTREE := $(CURDIR)/build/rocktree
# Debian keeps curl.h and libcurl.so under the multiarch directories.
MULTIARCH  := $(shell $(CC) -print-multiarch 2>/dev/null)
CURL_DIRS  := $(if $(MULTIARCH),CURL_INCDIR=/usr/include/$(MULTIARCH) CURL_LIBDIR=/usr/lib/$(MULTIARCH))
rock-check:
	rm -rf $(ROCKTREE)
	luarocks --lua-version=5.4 make --deps-mode=none --tree=$(ROCKTREE) keyfactor-0.1.0-1.rockspec \
	  $(CURL_DIRS)
	LUA_PATH="$(ROCKTREE)/share/lua/5.4/?.lua;$(ROCKTREE)/share/lua/5.4/?/init.lua;;" \
	LUA_CPATH="$(ROCKTREE)/lib/lua/5.4/?.so;;" \
	lua5.4 -e 'local kf = require "keyfactor"; print("installed keyfactor " .. kf.VERSION .. " over " .. require("keyfactor.core").curl_version())'
