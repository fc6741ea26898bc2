/*
 * libFuzzer harness: argument handling of keyfactor.core.  The input is
 * read as a little program that builds option tables of arbitrary shape
 * (every known field, with values of every type) and passes them to
 * core.session() and session:start() under lua_pcall.  Whatever the input,
 * the result is a value or a Lua error, never a crash or a leak.  No
 * request is ever driven, so nothing touches the network.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

int luaopen_keyfactor_core(lua_State *L);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const FIELDS[] = {
  "method", "url", "headers", "body", "timeout", "connect_timeout", "auth",
  "userpwd", "ca_file", "insecure", "proxy", "user_agent", "max_body",
  "http2", "resolve",
};
#define NFIELDS (sizeof FIELDS / sizeof FIELDS[0])

typedef struct reader { const uint8_t *p; size_t left; } reader;

static unsigned next(reader *r)
{
  if (r->left == 0)
    return 0;
  r->left--;
  return *r->p++;
}

/* Pushes a value of a fuzzed type; strings and arrays take fuzzed bytes. */
static void push_value(lua_State *L, reader *r, int depth)
{
  unsigned kind = next(r) % 7, n, i;
  switch (kind) {
  case 0: lua_pushnil(L); break;
  case 1: lua_pushboolean(L, (int)(next(r) & 1)); break;
  case 2: lua_pushinteger(L, (lua_Integer)(int8_t)next(r) * 1000); break;
  case 3: lua_pushnumber(L, (lua_Number)next(r) / 7.0 - 10.0); break;
  case 4:
    n = next(r) % 48;
    if (n > r->left)
      n = (unsigned)r->left;
    lua_pushlstring(L, (const char *)r->p, n);
    r->p += n;
    r->left -= n;
    break;
  case 5:   /* a URL that never leaves the machine */
    lua_pushliteral(L, "http://127.0.0.1:1/KeyfactorAPI/x");
    break;
  default:
    lua_newtable(L);
    if (depth < 2) {
      n = next(r) % 4;
      for (i = 1; i <= n; i++) {
        push_value(L, r, depth + 1);
        lua_rawseti(L, -2, (lua_Integer)i);
      }
    }
  }
}

static void push_options(lua_State *L, reader *r)
{
  unsigned n = next(r) % 8, i;
  lua_newtable(L);
  for (i = 0; i < n; i++) {
    push_value(L, r, 0);
    lua_setfield(L, -2, FIELDS[next(r) % NFIELDS]);
  }
}

static int run(lua_State *L)
{
  reader *r = lua_touserdata(L, 1);
  lua_getfield(L, 2, "session");
  push_options(L, r);
  lua_call(L, 1, 1);                     /* session */
  while (r->left > 0) {
    unsigned op = next(r) % 4;
    if (op == 0) {
      lua_getfield(L, 3, "start");
      lua_pushvalue(L, 3);
      push_options(L, r);
      lua_call(L, 2, 1);
      if (next(r) & 1) {
        lua_getfield(L, -1, "cancel");
        lua_pushvalue(L, -2);
        lua_call(L, 1, 0);
      }
      lua_pop(L, 1);
    } else if (op == 1) {
      lua_getfield(L, 3, "set_credentials");
      lua_pushvalue(L, 3);
      push_value(L, r, 0);
      push_value(L, r, 0);
      push_value(L, r, 0);
      lua_call(L, 4, 0);
    } else if (op == 2) {
      lua_getfield(L, 3, "stats");
      lua_pushvalue(L, 3);
      lua_call(L, 1, 1);
      lua_pop(L, 1);
    } else {
      lua_getfield(L, 3, "close");
      lua_pushvalue(L, 3);
      lua_call(L, 1, 0);
    }
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  lua_State *L = luaL_newstate();
  reader r = { data, size };
  luaL_openlibs(L);
  lua_pushcfunction(L, run);
  lua_pushlightuserdata(L, &r);
  luaL_requiref(L, "keyfactor.core", luaopen_keyfactor_core, 0);
  (void)lua_pcall(L, 2, 0, 0);
  lua_close(L);                          /* frees every session and request */
  return 0;
}
