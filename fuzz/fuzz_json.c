/*
 * libFuzzer harness: answer bodies (json.c core.decode_json).  Any bytes
 * must decode without a crash, a read out of bounds or a Lua stack leak,
 * to either one value (never nil: null is the light userdata) or nil and a
 * message; and the same bytes must always give the same answer.
 */
#include <stdint.h>
#include <stdlib.h>

#include "../csrc/kfcore.h"
#include "lualib.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int decode_once(lua_State *L, const uint8_t *data, size_t size)
{
  int results;
  lua_pushcfunction(L, kf_decode_json);
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, LUA_MULTRET, 0) != LUA_OK)
    abort();                       /* only memory errors may raise */
  results = lua_gettop(L);
  if (results == 1 && lua_isnil(L, 1))
    abort();
  if (results == 2 && !(lua_isnil(L, 1) && lua_type(L, 2) == LUA_TSTRING))
    abort();
  if (results != 1 && results != 2)
    abort();
  return results == 1 ? lua_type(L, 1) : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static lua_State *L;
  int first;
  if (L == NULL)
    L = luaL_newstate();
  first = decode_once(L, data, size);
  lua_settop(L, 0);
  if (decode_once(L, data, size) != first)
    abort();
  lua_settop(L, 0);
  lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}
