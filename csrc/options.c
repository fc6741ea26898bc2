/*
 * Reading fields of an option table, and the string helpers for settings
 * and secrets.  A field of the wrong type is an argument error naming it.
 */
#include <stdlib.h>
#include <string.h>

#include "kfcore.h"

static int field_type(lua_State *L, int t, const char *field, int want)
{
  int type;
  lua_getfield(L, t, field);
  type = lua_type(L, -1);
  if (type != LUA_TNIL && type != want) {
    luaL_error(L, "option '%s' must be a %s, not a %s", field,
               lua_typename(L, want), lua_typename(L, type));
  }
  return type;
}

/* The returned string stays valid while the option table is alive. */
const char *kf_opt_string(lua_State *L, int t, const char *field, const char *dflt)
{
  const char *s = dflt;
  if (field_type(L, t, field, LUA_TSTRING) == LUA_TSTRING)
    s = lua_tostring(L, -1);
  lua_pop(L, 1);
  return s;
}

double kf_opt_number(lua_State *L, int t, const char *field, double dflt)
{
  double n = dflt;
  if (field_type(L, t, field, LUA_TNUMBER) == LUA_TNUMBER)
    n = (double)lua_tonumber(L, -1);
  lua_pop(L, 1);
  return n;
}

/* A number field in [min, max]: NaN, infinities and absurd values are an
 * error naming the field, before any cast to an integer type can overflow. */
double kf_opt_range(lua_State *L, int t, const char *field, double dflt, double min, double max)
{
  double n = kf_opt_number(L, t, field, dflt);
  if (!(n >= min && n <= max))   /* NaN fails both */
    luaL_error(L, "option '%s' must be a number from %f to %f", field, (lua_Number)min, (lua_Number)max);
  return n;
}

/* Seconds to milliseconds for libcurl, clamped to [0, KF_MAX_SECONDS]. */
long kf_seconds_to_ms(double seconds)
{
  if (!(seconds > 0))
    return 0;
  if (seconds > KF_MAX_SECONDS)
    seconds = KF_MAX_SECONDS;
  return (long)(seconds * 1000.0);
}

int kf_opt_boolean(lua_State *L, int t, const char *field, int dflt)
{
  int b = dflt;
  if (field_type(L, t, field, LUA_TBOOLEAN) == LUA_TBOOLEAN)
    b = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return b;
}

/* An array of strings as a curl_slist (NULL when the field is nil); the
 * caller frees it.  A partly built list is freed before an error is raised. */
struct curl_slist *kf_opt_slist(lua_State *L, int t, const char *field)
{
  struct curl_slist *list = NULL;
  int i, n;
  lua_getfield(L, t, field);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return NULL;
  }
  if (!lua_istable(L, -1))
    luaL_error(L, "option '%s' must be an array of strings", field);
  n = (int)lua_rawlen(L, -1);
  for (i = 1; i <= n; i++) {
    struct curl_slist *grown = NULL;
    lua_rawgeti(L, -1, i);
    if (lua_type(L, -1) == LUA_TSTRING)
      grown = curl_slist_append(list, lua_tostring(L, -1));
    if (grown == NULL) {
      int is_string = lua_type(L, -1) == LUA_TSTRING;
      curl_slist_free_all(list);
      if (is_string)
        luaL_error(L, "keyfactor.core: out of memory building '%s'", field);
      luaL_error(L, "option '%s[%d]' must be a string", field, i);
    }
    list = grown;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return list;
}

char *kf_strdup(const char *s)
{
  char *copy;
  size_t n;
  if (s == NULL)
    return NULL;
  n = strlen(s) + 1;
  copy = malloc(n);
  if (copy != NULL)
    memcpy(copy, s, n);
  return copy;
}

/* Overwrites a secret before freeing it, so it does not linger in the heap. */
void kf_free_secret(char **p)
{
  if (*p != NULL) {
    volatile char *c = *p;
    while (*c != '\0')
      *c++ = '\0';
    free(*p);
    *p = NULL;
  }
}
