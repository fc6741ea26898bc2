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
SHELL      := /bin/bash
CFLAGS     ?= -O2 -g
KF_CFLAGS  := -std=c99 -fPIC -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L \
              -I$(LUA_INC) $(shell pkg-config --cflags libcurl 2>/dev/null)
LDLIBS     := $(shell pkg-config --libs libcurl 2>/dev/null || echo -lcurl) -lm

# Lua sees the checkout first: lua/ for modules, build/ for the C core.
# $(call lua_env,BUILD_DIR) sets the module paths for a build of the core;
# $(call busted,BUILD_DIR,WRAPPER) runs busted (on $(LUA)) over it.
LPATH      := $(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/spec/?.lua
lua_env     = LUA_PATH="$(LPATH);;" LUA_CPATH="$(CURDIR)/$(1)/?.so;;"
busted      = $(call lua_env,$(1)) $(2) $(LUA) /usr/bin/busted --lpath="$(LPATH)" --cpath="$(CURDIR)/$(1)/?.so"
# The sandbox (and so spec/sandbox) always runs on Lua 5.4, lua-http's home
# here; other runtimes run every spec of the client against it.
ifeq ($(LUA),lua5.4)
SPECS      ?= spec
else
SPECS      ?= spec/client $(wildcard spec/*_spec.lua)
endif

.PHONY: all build deps demo check lint spec clean rock-check check-asan check-valgrind bench bench-smoke soak docs fuzz fuzz-regress

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
	luacheck lua spec examples bench bin/keyfactor bin/keyfactor-fleet bin/keyfactor-sandbox
	clang-tidy --quiet --warnings-as-errors='*' $(SRC) -- -std=c99 -D_POSIX_C_SOURCE=200809L \
	  -I$(LUA_INC) $(shell pkg-config --cflags libcurl 2>/dev/null)

spec: build
	$(call busted,$(BUILD)) $(SPECS)

check: deps build lint spec

# The C core built with AddressSanitizer + UBSan, the whole spec suite run
# against it (the interpreter is not instrumented, so the runtime is
# preloaded; leaks are valgrind's job, below).
ASAN_BUILD := build/asan-$(LUA)
ASAN_LIB    = $(shell $(CC) -print-file-name=libasan.so)
# The specs that drive the C core (the sandbox's own specs and the embedding
# demos run other programs, which must not inherit the preloaded runtime).
CORE_SPECS ?= spec/client spec/transport spec/examples_spec.lua spec/pki_spec.lua spec/show_spec.lua spec/cli_spec.lua
# UBSan leaves float-to-integer overflow out of "undefined"; ask for it
# where the compiler has it (GCC and clang both do).
FLOAT_CAST := $(shell $(CC) -fsanitize=float-cast-overflow -x c -c /dev/null -o /dev/null 2>/dev/null \
                && echo -fsanitize=float-cast-overflow)
check-asan: deps
	@mkdir -p $(ASAN_BUILD)/keyfactor
	$(CC) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined $(FLOAT_CAST) -fno-sanitize-recover=all \
	  $(KF_CFLAGS) -shared -o $(ASAN_BUILD)/keyfactor/core.so $(SRC) $(LDLIBS)
	LD_PRELOAD=$(ASAN_LIB) ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:suppressions=$(CURDIR)/.ci/asan.supp \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(call busted,$(ASAN_BUILD)) $(CORE_SPECS)

# The spec suite under valgrind memcheck (the client process; the sandbox
# runs in a child and is not traced): no errors, no definite leaks.
VALGRIND := valgrind --quiet --error-exitcode=99 --suppressions=$(CURDIR)/.ci/valgrind.supp --leak-check=full --errors-for-leak-kinds=definite \
            --show-leak-kinds=definite --track-fds=no --trace-children=no
VALGRIND_SPECS ?= $(wildcard spec/client/*_spec.lua) \
                  $(filter-out spec/client,$(CORE_SPECS))
# KF_UNDER_VALGRIND tells the specs whose scenario needs a fast client (a
# burst of HTTP/2 streams racing a GOAWAY) not to require that it happened.
check-valgrind: deps build
	KF_UNDER_VALGRIND=1 $(call busted,$(BUILD),$(VALGRIND)) $(VALGRIND_SPECS)

# Fuzzing the C entry points with libFuzzer (clang): header parsing,
# response buffering, argument handling, JSON decoding and the encoder's
# round trip, and the check of request header lines (header_lines).  `make fuzz` runs each harness for
# FUZZ_SECONDS over its corpus (fuzz/corpus/NAME: seeds, and every input
# that once found a bug, kept as a regression case); `make fuzz-regress`
# only replays the corpus.
FUZZ_SECONDS ?= 60
FUZZERS    := headers buffer options json header_lines
FUZZ_CC    := clang -g -O1 -fsanitize=fuzzer,address,undefined,float-cast-overflow -fno-sanitize-recover=all \
              -std=c99 -D_POSIX_C_SOURCE=200809L -I$(LUA_INC) $(shell pkg-config --cflags libcurl 2>/dev/null)
FUZZ_LIBS  := -l$(LUA) $(LDLIBS)
build/fuzz/headers: fuzz/fuzz_headers.c $(SRC) $(HDR)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -o $@ $< $(filter-out csrc/request.c,$(SRC)) $(FUZZ_LIBS)
build/fuzz/header_lines: fuzz/fuzz_header_lines.c $(SRC) $(HDR)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -o $@ $< $(SRC) $(FUZZ_LIBS)
build/fuzz/buffer: fuzz/fuzz_buffer.c csrc/buffer.c $(HDR)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -o $@ $< csrc/buffer.c
build/fuzz/options: fuzz/fuzz_options.c $(SRC) $(HDR)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -o $@ $< $(SRC) $(FUZZ_LIBS)
build/fuzz/json: fuzz/fuzz_json.c csrc/json.c csrc/json_encode.c csrc/buffer.c csrc/class.c $(HDR)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -o $@ $< csrc/json.c csrc/json_encode.c csrc/buffer.c csrc/class.c -l$(LUA) -lm

fuzz: $(addprefix build/fuzz/,$(FUZZERS))
	@for t in $(FUZZERS); do \
	  mkdir -p build/fuzz/work-$$t fuzz/findings; \
	  echo "== fuzz $$t for $(FUZZ_SECONDS)s"; \
	  build/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -artifact_prefix=fuzz/findings/$$t- \
	    build/fuzz/work-$$t fuzz/corpus/$$t 2>&1 | grep -E "^(stat::number_of_executed_units|stat::peak_rss|==|SUMMARY)|Done" ; \
	  test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done

fuzz-regress: $(addprefix build/fuzz/,$(FUZZERS))
	@for t in $(FUZZERS); do build/fuzz/$$t fuzz/corpus/$$t/* >/dev/null 2>&1 || { echo "fuzz-regress $$t FAILED"; exit 1; }; done
	@echo "fuzz-regress: every corpus input replays cleanly"

# The API reference: the public modules' LDoc comments, the README, the
# architecture and "The calls" (generated from the endpoint table), as HTML
# in doc/html, Markdown rendered by lua-discount.  Any LDoc warning fails.
docs:
	@command -v ldoc >/dev/null || bash .ci/install-deps $(LUA) lua-ldoc lua-discount
	@mkdir -p build/docs
	rm -rf doc/html
	lua5.4 docs/gen-reference.lua build/docs/calls.md
	@ldoc -c config.ld . 2>&1 | tee build/docs/ldoc.log
	@cat docs/tables.css >> doc/html/ldoc.css
	lua5.4 docs/topic-summaries.lua doc/html/index.html README.md build/docs/calls.md docs/SANDBOX.md docs/ARCHITECTURE.md
	@! grep -vE "^(reading configuration|output written)" build/docs/ldoc.log || { echo "docs: LDoc warned (above)"; exit 1; }
	@echo "reference: doc/html/index.html"

bench: deps build
	bash bench/run

soak: deps build
	$(call lua_env,$(BUILD)) $(LUA) bench/soak.lua $(SOAK_REQUESTS)

bench-smoke: build
	bash bench/run --smoke

clean:
	rm -rf build

# The rockspecs install with luarocks, as the README says, into a private
# tree (Debian's lua-cjson, lua-http, ... are not rocks luarocks can see, so
# --deps-mode=none); the installed launchers run with no LUA_PATH set; both
# rocks remove cleanly, leaving no file of theirs in the tree.
# The client rock is also installed for Lua 5.3 from the same checkout after
# the 5.4 build (rocks.mk keeps one core per Lua), and its launcher run.
ROCKTREE := $(CURDIR)/build/rocktree
ROCKTREE53 := $(CURDIR)/build/rocktree-5.3
ROCKS    := luarocks --lua-version=5.4 --tree=$(ROCKTREE)
ROCKS53  := luarocks --lua-version=5.3 --tree=$(ROCKTREE53)
rock-check:
	rm -rf $(ROCKTREE) $(ROCKTREE53)
	$(ROCKS) make --deps-mode=none keyfactor-0.1.0-1.rockspec
	$(ROCKS) make --deps-mode=none keyfactor-sandbox-0.1.0-1.rockspec
	$(ROCKS53) make --deps-mode=none keyfactor-0.1.0-1.rockspec
	@$(ROCKS) show keyfactor | grep -q '^	keyfactor\.core ' || { echo "rock-check: no keyfactor.core in the client rock"; exit 1; }
	@! $(ROCKS) show keyfactor | grep -q '^	keyfactor\.sandbox' || { echo "rock-check: the client rock holds sandbox modules"; exit 1; }
	@shown=$$($(ROCKS) show keyfactor); for file in $$(cd lua && find keyfactor -name '*.lua' ! -path 'keyfactor/sandbox/*' ! -name init.lua); do \
	  module=$$(echo $${file%.lua} | tr / .); echo "$$shown" | grep -q "^	$$module " || { echo "rock-check: $$module is not in the client rock"; exit 1; }; \
	done
	@! $(ROCKS) show keyfactor-sandbox | grep -E '^	keyfactor\.' | grep -vq '^	keyfactor\.sandbox' || { echo "rock-check: the sandbox rock holds client modules"; exit 1; }
	cd /tmp && env -u LUA_PATH -u LUA_CPATH lua5.4 $(CURDIR)/.ci/installed-smoke.lua $(ROCKTREE) $(ROCKTREE53)
	$(ROCKS) remove keyfactor-sandbox
	$(ROCKS) remove keyfactor
	$(ROCKS53) remove keyfactor
	@left=$$(find $(ROCKTREE) $(ROCKTREE53) -type f ! -name manifest); test -z "$$left" || { echo "rock-check: left behind: $$left"; exit 1; }
	@echo "rock-check: both rocks installed (the client also for 5.3), ran from $(ROCKTREE)/bin and removed cleanly"
