/*
 * libFuzzer harness: answer bodies (json.c core.decode_json) and request
 * bodies (json_encode.c core.encode_json).  Any bytes must decode without a
 * crash, a read out of bounds or a Lua stack leak, to either one value
 * (never nil: null is the light userdata) or nil and a message; the same
 * bytes must always give the same answer.  Whatever decodes must encode
 * (never raise), and the encoded text must decode to an equal value whose
 * encoding has the same length (object key order may differ).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../csrc/kfcore.h"
#include "lualib.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int decode_once(lua_State *L, const char *data, size_t size)
{
  int base = lua_gettop(L), results;
  lua_pushcfunction(L, kf_decode_json);
  lua_pushlstring(L, data, size);
  if (lua_pcall(L, 1, LUA_MULTRET, 0) != LUA_OK)
    abort();                       /* only memory errors may raise */
  results = lua_gettop(L) - base;
  if (results == 1 && lua_isnil(L, -1))
    abort();
  if (results == 2 && !(lua_isnil(L, -2) && lua_type(L, -1) == LUA_TSTRING))
    abort();
  if (results != 1 && results != 2)
    abort();
  if (results == 2)
    lua_pop(L, 1);                 /* leave nil */
  return results == 1 ? lua_type(L, -1) : -1;
}

/* Pushes the encoding of the value at idx; aborts if encoding raises. */
static void encode_once(lua_State *L, int idx)
{
  lua_pushcfunction(L, kf_encode_json);
  lua_pushvalue(L, idx);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK || lua_type(L, -1) != LUA_TSTRING)
    abort();
}

static int equal(lua_State *L, int a, int b, int depth)
{
  if (lua_type(L, a) != lua_type(L, b))
    return 0;
  if (lua_type(L, a) != LUA_TTABLE)
    return lua_rawequal(L, a, b);
  if (depth > 250 || !lua_checkstack(L, 8))
    abort();
  if (lua_rawlen(L, a) != lua_rawlen(L, b))
    return 0;
  lua_pushnil(L);
  while (lua_next(L, a) != 0) {
    int top = lua_gettop(L);
    lua_pushvalue(L, top - 1);
    lua_rawget(L, b);
    if (!equal(L, top, top + 1, depth + 1)) {
      lua_settop(L, top - 2);
      return 0;
    }
    lua_settop(L, top - 1);
  }
  lua_pushnil(L);
  while (lua_next(L, b) != 0) {
    int top = lua_gettop(L);
    lua_pushvalue(L, top - 1);
    lua_rawget(L, a);
    if (lua_isnil(L, -1)) {
      lua_settop(L, top - 2);
      return 0;
    }
    lua_settop(L, top - 1);
  }
  return 1;
}

static void round_trip(lua_State *L)
{
  size_t len1, len2;
  const char *text;
  /* stack: 1 decoded value */
  encode_once(L, 1);                                /* 2 */
  text = lua_tolstring(L, 2, &len1);
  if (decode_once(L, text, len1) == -1)             /* 3 */
    abort();
  if (!equal(L, 1, 3, 0))
    abort();
  encode_once(L, 3);                                /* 4 */
  lua_tolstring(L, 4, &len2);
  if (len1 != len2)
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static lua_State *L;
  int first;
  if (L == NULL)
    L = luaL_newstate();
  first = decode_once(L, (const char *)data, size);
  if (first != -1)
    round_trip(L);
  lua_settop(L, 0);
  if (decode_once(L, (const char *)data, size) != first)
    abort();
  lua_settop(L, 0);
  lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}
