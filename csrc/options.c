/*
 * Reading fields of an option table, and the string helpers for settings
 * and secrets.  A field of the wrong type is an argument error naming it.
 */
#include <stdlib.h>
#include <string.h>

#include "kfcore.h"

/* The type of the value at `idx`, which must be nil or `want`: otherwise an
 * argument error naming the option `field`. */
static int value_type(lua_State *L, int idx, const char *field, int want)
{
  int type = lua_type(L, idx);
  if (type != LUA_TNIL && type != want) {
    luaL_error(L, "option '%s' must be a %s, not a %s", field,
               lua_typename(L, want), lua_typename(L, type));
  }
  return type;
}

/* Pushes the values of the fields `names[0..n)` of the table at `t` (nil
 * for an absent one), in one pass over the table: for a small table most of
 * whose names are absent (a request spec), cheaper than a lookup per name. */
void kf_gather(lua_State *L, int t, const char *const names[], int n)
{
  int base, i;
  t = lua_absindex(L, t);
  base = lua_gettop(L);
  luaL_checkstack(L, n + 3, "too many option fields");
  for (i = 0; i < n; i++)
    lua_pushnil(L);
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    size_t len;
    const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &len) : NULL;
    for (i = 0; key != NULL && i < n; i++) {
      if (strlen(names[i]) == len && memcmp(names[i], key, len) == 0)
        break;
    }
    if (key != NULL && i < n)
      lua_replace(L, base + 1 + i);
    else
      lua_pop(L, 1);
  }
}

/* The string at `idx` (option `field`), or `dflt` when nil; it stays valid
 * while the value is on the stack. */
const char *kf_value_string(lua_State *L, int idx, const char *field, const char *dflt)
{
  return value_type(L, idx, field, LUA_TSTRING) == LUA_TSTRING ? lua_tostring(L, idx) : dflt;
}

static double value_number(lua_State *L, int idx, const char *field, double dflt)
{
  return value_type(L, idx, field, LUA_TNUMBER) == LUA_TNUMBER ? (double)lua_tonumber(L, idx) : dflt;
}

/* A number in [min, max]: NaN, infinities and absurd values are an error
 * naming the option, before any cast to an integer type can overflow. */
double kf_value_range(lua_State *L, int idx, const char *field, double dflt, double min, double max)
{
  double n = value_number(L, idx, field, dflt);
  if (!(n >= min && n <= max))   /* NaN fails both */
    luaL_error(L, "option '%s' must be a number from %f to %f", field, (lua_Number)min, (lua_Number)max);
  return n;
}

int kf_value_boolean(lua_State *L, int idx, const char *field, int dflt)
{
  return value_type(L, idx, field, LUA_TBOOLEAN) == LUA_TBOOLEAN ? lua_toboolean(L, idx) : dflt;
}

/* An array of strings as a curl_slist (NULL when nil); the caller frees
 * it.  A partly built list is freed before an error is raised. */
struct curl_slist *kf_value_slist(lua_State *L, int idx, const char *field)
{
  struct curl_slist *list = NULL;
  int i, n;
  idx = lua_absindex(L, idx);
  if (lua_isnil(L, idx))
    return NULL;
  if (!lua_istable(L, idx))
    luaL_error(L, "option '%s' must be an array of strings", field);
  n = (int)lua_rawlen(L, idx);
  for (i = 1; i <= n; i++) {
    struct curl_slist *grown = NULL;
    lua_rawgeti(L, idx, i);
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
  return list;
}

/* The same for a field of the option table at `t`.  A string stays valid
 * while the table is alive. */
const char *kf_opt_string(lua_State *L, int t, const char *field, const char *dflt)
{
  const char *s;
  lua_getfield(L, t, field);
  s = kf_value_string(L, -1, field, dflt);
  lua_pop(L, 1);
  return s;
}

double kf_opt_range(lua_State *L, int t, const char *field, double dflt, double min, double max)
{
  double n;
  lua_getfield(L, t, field);
  n = kf_value_range(L, -1, field, dflt, min, max);
  lua_pop(L, 1);
  return n;
}

int kf_opt_boolean(lua_State *L, int t, const char *field, int dflt)
{
  int b;
  lua_getfield(L, t, field);
  b = kf_value_boolean(L, -1, field, dflt);
  lua_pop(L, 1);
  return b;
}

struct curl_slist *kf_opt_slist(lua_State *L, int t, const char *field)
{
  struct curl_slist *list;
  lua_getfield(L, t, field);
  list = kf_value_slist(L, -1, field);
  lua_pop(L, 1);
  return list;
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

/* ---- what may go into a request header ----------------------------------- */

/* A byte a header value may not hold: the controls (CR and LF above all,
 * which would end the header and start another) and DEL; HTAB is allowed. */
static int is_forbidden_in_value(unsigned char c)
{
  return (c < 0x20 && c != '\t') || c == 0x7f;
}

/* A token byte (RFC 9110 5.6.2): what a header name or a method is made of. */
static int is_token_byte(unsigned char c)
{
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
         || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* 1 when `value` may be sent as (part of) a header value. */
int kf_header_value_ok(const char *value)
{
  const unsigned char *p = (const unsigned char *)value;
  for (; *p != '\0'; p++)
    if (is_forbidden_in_value(*p))
      return 0;
  return 1;
}

/* 1 when `s` is a non-empty token (a method, a header name). */
int kf_token_ok(const char *s, size_t len)
{
  size_t i;
  if (len == 0)
    return 0;
  for (i = 0; i < len; i++)
    if (!is_token_byte((unsigned char)s[i]))
      return 0;
  return 1;
}

/* 1 when `line` is a header line libcurl may send as is: "Name: value",
 * "Name:" (drops a default header) or "Name;" (an empty value). */
int kf_header_line_ok(const char *line)
{
  size_t name = strcspn(line, ":;");
  if (line[name] == '\0' || !kf_token_ok(line, name))
    return 0;
  if (line[name] == ';')
    return line[name + 1] == '\0';
  return kf_header_value_ok(line + name + 1);
}

/* Whether everything libcurl will turn into request headers for this
 * request (the method, the header list, the user agent, the bearer token;
 * each NULL when there is none to check) is safe to send: whatever their source, a CR or LF must never reach the
 * wire, where it would add headers or a whole second request.  Returns 1,
 * or 0 with the error message pushed (never quoting a value, which may be
 * a secret) for the caller to raise once it has freed what it holds. */
int kf_check_request_headers(lua_State *L, const char *method, const struct curl_slist *headers,
                             const char *user_agent, const char *bearer)
{
  const struct curl_slist *h;
  int i = 1;
  if (method != NULL && !kf_token_ok(method, strlen(method))) {
    lua_pushliteral(L, "keyfactor.core: request method must be an HTTP token (letters, digits, !#$%&'*+-.^_`|~)");
    return 0;
  }
  for (h = headers; h != NULL; h = h->next, i++) {
    if (!kf_header_line_ok(h->data)) {
      lua_pushfstring(L, "keyfactor.core: request header %d is not a \"Name: value\" line free of control characters", i);
      return 0;
    }
  }
  if (user_agent != NULL && !kf_header_value_ok(user_agent)) {
    lua_pushliteral(L, "keyfactor.core: user_agent holds a control character");
    return 0;
  }
  if (bearer != NULL && !kf_header_value_ok(bearer)) {
    lua_pushliteral(L, "keyfactor.core: the bearer token holds a control character");
    return 0;
  }
  return 1;
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
