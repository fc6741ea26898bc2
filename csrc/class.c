/*
 * keyfactor.core's classes: how every metatable of the core is registered.
 */
#include "kfcore.h"

/* The one way the core registers a metatable: the session, request, vault
 * and array classes (and the encoder's buffer).  `meta` may be NULL. */
void kf_new_class(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods)
{
  if (luaL_newmetatable(L, name)) {
    if (meta != NULL)
      luaL_setfuncs(L, meta, 0);
    if (methods != NULL) {
      lua_newtable(L);
      luaL_setfuncs(L, methods, 0);
      lua_setfield(L, -2, "__index");
    }
    lua_pushstring(L, name);   /* Lua 5.1 and LuaJIT do not set it */
    lua_setfield(L, -2, "__name");
  }
}

void kf_class_methods(lua_State *L, const char *name, const luaL_Reg *methods)
{
  luaL_getmetatable(L, name);
  lua_getfield(L, -1, "__index");
  luaL_setfuncs(L, methods, 0);
  lua_pop(L, 2);
}
