/*
 * core.integerize(value) -> value
 *
 * Debian's lua-cjson 2.1.0 decodes every JSON number as a float, so ids come
 * back as 5.0 and print as "5.0".  This walks a decoded value in place and
 * turns floats with an exact integer value into Lua integers.  In C because
 * it touches every field of every response (a page is thousands of them).
 */
#include "kfcore.h"

/* Deeper than any Keyfactor answer; cjson's own decode limit is 1000. */
#define KF_MAX_DEPTH 200

#if LUA_VERSION_NUM >= 503
static void integerize(lua_State *L, int idx, int depth)
{
  if (depth > KF_MAX_DEPTH)
    return;
  luaL_checkstack(L, 3, "integerize");
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1)) {
      lua_Integer i;
      if (lua_numbertointeger(lua_tonumber(L, -1), &i) && (lua_Number)i == lua_tonumber(L, -1)) {
        lua_pushvalue(L, -2);
        lua_pushinteger(L, i);
        lua_rawset(L, idx);
      }
    } else if (lua_type(L, -1) == LUA_TTABLE) {
      integerize(L, lua_gettop(L), depth + 1);
    }
    lua_pop(L, 1);
  }
}
#endif

int kf_integerize(lua_State *L)
{
  lua_settop(L, 1);
#if LUA_VERSION_NUM >= 503
  if (lua_type(L, 1) == LUA_TTABLE)
    integerize(L, 1, 0);
#endif
  return 1;
}
