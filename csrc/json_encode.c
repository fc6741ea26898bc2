/*
 * core.encode_json(value) -> text      request bodies, RFC 8259
 * core.array([t]) -> t                 marks t (or a new table) as an array
 * core.array_mt                        the marker metatable
 *
 * Why not cjson.encode: Debian's lua-cjson 2.1.0 cannot tell an empty array
 * from an empty object and sends `StoreTypes = {}` as {}, which a real
 * (ASP.NET) server refuses.  Here a table is an array when it carries
 * core.array_mt (empty or not), or when its keys are exactly 1..n (n > 0);
 * any other table is an object, whose keys must be strings.  cjson.null (the
 * NULL light userdata) is null; integers are written exactly; other numbers
 * with the fewest digits (15 to 17) that read back as the same double; strings
 * are escaped as RFC 8259 requires and no more ('/' stays '/').
 *
 * Bad input is the caller's mistake and raises an error naming the place in
 * the value: a non-finite number, a key that is not a string, a function or
 * userdata, a cycle, nesting deeper than the decoder accepts.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kfcore.h"

/* The decoder's limit (json.c): whatever is encoded can be read back. */
#define ENCODE_MAX_DEPTH 200
#define ENCODE_MAX_BYTES ((size_t)1 << 30)
#define ENCODE_BUFFER_MT "keyfactor.json_buffer"

typedef struct frame {
  const void *table;     /* for cycle detection */
  int key;               /* stack index of the current object key, or 0 */
  lua_Integer index;     /* the current array index when key == 0 */
} frame;

typedef struct encoder {
  lua_State *L;
  kf_buffer *out;        /* in a userdata, so a raised error frees it */
  int array_mt;          /* stack index of core.array_mt */
  int depth;
  frame frames[ENCODE_MAX_DEPTH + 1];
  const char *error;     /* static text; the place is added when raising */
} encoder;

static int encode_value(encoder *e, int idx);

void kf_push_array_mt(lua_State *L)
{
  kf_new_class(L, KF_ARRAY_MT, NULL, NULL);
}

static int failed(encoder *e, const char *what)
{
  e->error = what;
  return 0;
}

static int grow(encoder *e, const char *s, size_t n)
{
  if (!kf_buffer_append(e->out, s, n))
    return failed(e, e->out->overflow ? "text larger than 1 GiB" : "out of memory");
  return 1;
}

/* The hot path: most pieces fit the buffer as it is. */
static int put(encoder *e, const char *s, size_t n)
{
  kf_buffer *out = e->out;
  if (out->cap - out->len >= n && n > 0) {
    memcpy(out->data + out->len, s, n);
    out->len += n;
    return 1;
  }
  return grow(e, s, n);
}

#define PUT_LITERAL(e, s) put((e), (s), sizeof(s) - 1)

static int put_string(encoder *e, const char *s, size_t len)
{
  static const char hex[] = "0123456789abcdef";
  size_t i, run = 0;
  if (!PUT_LITERAL(e, "\""))
    return 0;
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[6];
    size_t n = 2;
    if (c >= 0x20 && c != '"' && c != '\\')
      continue;
    if (!put(e, s + run, i - run))
      return 0;
    run = i + 1;
    esc[0] = '\\';
    switch (c) {
    case '"': esc[1] = '"'; break;
    case '\\': esc[1] = '\\'; break;
    case '\b': esc[1] = 'b'; break;
    case '\f': esc[1] = 'f'; break;
    case '\n': esc[1] = 'n'; break;
    case '\r': esc[1] = 'r'; break;
    case '\t': esc[1] = 't'; break;
    default:
      memcpy(esc + 1, "u00", 3);
      esc[4] = hex[c >> 4];
      esc[5] = hex[c & 15];
      n = 6;
    }
    if (!put(e, esc, n))
      return 0;
  }
  return put(e, s + run, len - run) && PUT_LITERAL(e, "\"");
}

static int put_number(encoder *e, int idx)
{
  char text[64];
  int n;
  lua_Number x;
#if LUA_VERSION_NUM >= 503
  if (lua_isinteger(e->L, idx)) {
    n = snprintf(text, sizeof text, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(e->L, idx));
    return put(e, text, (size_t)n);
  }
#endif
  x = lua_tonumber(e->L, idx);
  if (x != x || x == (lua_Number)HUGE_VAL || x == -(lua_Number)HUGE_VAL)
    return failed(e, "number is not finite (JSON has no NaN or infinity)");
  if (x == floor(x) && fabs(x) < 9007199254740992.0)   /* 2^53: exact */
    n = snprintf(text, sizeof text, "%.0f", (double)x);
  else {
    /* the shortest of 15..17 digits that reads back as the same double */
    int digits;
    for (digits = 15; digits < 17; digits++) {
      n = snprintf(text, sizeof text, "%.*g", digits, (double)x);
      if (strtod(text, NULL) == (double)x)
        break;
    }
    if (digits == 17)
      n = snprintf(text, sizeof text, "%.17g", (double)x);
  }
  {
    int i;   /* a locale may have written a decimal comma */
    for (i = 0; i < n; i++)
      if (text[i] == ',')
        text[i] = '.';
  }
  return put(e, text, (size_t)n);
}

/* True when the table at idx is to be written as an array, with *length
 * its number of items. */
static int is_array(encoder *e, int idx, lua_Integer *length)
{
  lua_State *L = e->L;
  lua_Integer count = 0, n;
  int marked = 0;
  if (lua_getmetatable(L, idx)) {
    marked = lua_rawequal(L, -1, e->array_mt);
    lua_pop(L, 1);
  }
  n = (lua_Integer)lua_rawlen(L, idx);
  if (marked) {
    *length = n;
    return 1;
  }
  if (n == 0)
    return 0;
  /* n keys, each an integer in 1..n: exactly 1..n */
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    lua_Number k = lua_type(L, -2) == LUA_TNUMBER ? lua_tonumber(L, -2) : 0;
    lua_pop(L, 1);
    if (++count > n || k < 1 || k > (lua_Number)n || k != floor(k)) {
      lua_pop(L, 1);
      return 0;
    }
  }
  *length = n;
  return 1;
}

static int encode_array(encoder *e, int idx, lua_Integer length)
{
  lua_Integer i;
  if (!PUT_LITERAL(e, "["))
    return 0;
  for (i = 1; i <= length; i++) {
    e->frames[e->depth].index = i;
    if (i > 1 && !PUT_LITERAL(e, ","))
      return 0;
    lua_rawgeti(e->L, idx, (int)i);
    if (!encode_value(e, lua_gettop(e->L)))
      return 0;
    lua_pop(e->L, 1);
  }
  return PUT_LITERAL(e, "]");
}

static int encode_object(encoder *e, int idx)
{
  lua_State *L = e->L;
  int first = 1;
  if (!PUT_LITERAL(e, "{"))
    return 0;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    size_t len;
    const char *key;
    e->frames[e->depth].key = lua_gettop(L) - 1;
    if (lua_type(L, -2) != LUA_TSTRING)
      return failed(e, "table key is not a string (a sparse array, or array items mixed with keys?)");
    key = lua_tolstring(L, -2, &len);
    if ((!first && !PUT_LITERAL(e, ",")) || !put_string(e, key, len) || !PUT_LITERAL(e, ":")
        || !encode_value(e, lua_gettop(L)))
      return 0;
    first = 0;
    lua_pop(L, 1);
  }
  e->frames[e->depth].key = 0;
  return PUT_LITERAL(e, "}");
}

static int encode_table(encoder *e, int idx)
{
  const void *table = lua_topointer(e->L, idx);
  lua_Integer length;
  int i, ok;
  if (e->depth >= ENCODE_MAX_DEPTH)
    return failed(e, "nested too deeply");
  for (i = 1; i <= e->depth; i++)
    if (e->frames[i].table == table)
      return failed(e, "table contains itself (a cycle)");
  if (!lua_checkstack(e->L, 6))
    return failed(e, "nested too deeply for the Lua stack");
  e->depth++;
  e->frames[e->depth].table = table;
  e->frames[e->depth].key = 0;
  e->frames[e->depth].index = 0;
  ok = is_array(e, idx, &length) ? encode_array(e, idx, length) : encode_object(e, idx);
  if (ok)
    e->depth--;
  return ok;
}

static int encode_value(encoder *e, int idx)
{
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    return PUT_LITERAL(e, "null");
  case LUA_TBOOLEAN:
    return lua_toboolean(L, idx) ? PUT_LITERAL(e, "true") : PUT_LITERAL(e, "false");
  case LUA_TNUMBER:
    return put_number(e, idx);
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    return put_string(e, s, len);
  }
  case LUA_TTABLE:
    return encode_table(e, idx);
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == NULL)
      return PUT_LITERAL(e, "null");   /* cjson.null */
    return failed(e, "cannot encode a light userdata");
  default:
    return failed(e, lua_type(L, idx) == LUA_TFUNCTION ? "cannot encode a function"
                                                       : "cannot encode a userdata or thread");
  }
}

/* Pushes "value.Stores[2].StoreId": where the error is (frames[1..depth];
 * their keys are still on the stack, since an error returns at once). */
static void push_place(encoder *e)
{
  lua_State *L = e->L;
  int i, pieces = 1;
  lua_pushliteral(L, "value");
  if (!lua_checkstack(L, e->depth + 4))
    return;
  for (i = 1; i <= e->depth; i++) {
    int key = e->frames[i].key;
    if (key != 0 && lua_type(L, key) == LUA_TSTRING) {
      lua_pushfstring(L, ".%s", lua_tostring(L, key));
    } else if (key != 0 && lua_type(L, key) == LUA_TNUMBER) {
      lua_pushvalue(L, key);    /* a copy: tostring converts it in place */
      lua_pushfstring(L, "[%s]", lua_tostring(L, -1));
      lua_remove(L, -2);
    } else if (key != 0) {
      lua_pushfstring(L, "[%s key]", luaL_typename(L, key));
    } else if (e->frames[i].index > 0) {
      lua_pushfstring(L, "[%d]", (int)e->frames[i].index);
    } else {
      continue;
    }
    pieces++;
  }
  lua_concat(L, pieces);
}

static int buffer_gc(lua_State *L)
{
  kf_buffer_free((kf_buffer *)lua_touserdata(L, 1));
  return 0;
}

/* The output buffer, kept in the registry and reused: one allocation for
 * all the bodies a client sends (encoding never runs Lua code, so it is
 * never re-entered).  Left on the stack, which keeps it alive meanwhile. */
static kf_buffer *output_buffer(lua_State *L)
{
  kf_buffer *out;
  lua_getfield(L, LUA_REGISTRYINDEX, ENCODE_BUFFER_MT);
  out = (kf_buffer *)lua_touserdata(L, -1);
  if (out != NULL)
    return out;
  lua_pop(L, 1);
  out = (kf_buffer *)lua_newuserdata(L, sizeof *out);
  kf_buffer_init(out, ENCODE_MAX_BYTES);
  {
    static const luaL_Reg meta[] = {{"__gc", buffer_gc}, {NULL, NULL}};
    kf_new_class(L, ENCODE_BUFFER_MT "_mt", meta, NULL);
  }
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, ENCODE_BUFFER_MT);
  return out;
}

int kf_encode_json(lua_State *L)
{
  encoder e;
  kf_buffer *out;
  int ok;
  luaL_checkany(L, 1);
  lua_settop(L, 1);
  kf_push_array_mt(L);                              /* 2 */
  out = output_buffer(L);                           /* 3 */
  kf_buffer_clear(out);
  e.L = L;
  e.out = out;
  e.array_mt = 2;
  e.depth = 0;
  e.error = NULL;
  e.frames[0].table = NULL;
  ok = encode_value(&e, 1);
  if (ok)
    lua_pushlstring(L, out->data != NULL ? out->data : "", out->len);
  else
    push_place(&e);
  if (out->cap > ((size_t)1 << 20))   /* keep a small buffer, not the largest ever */
    kf_buffer_free(out);
  if (!ok) {
    lua_pushfstring(L, "encode_json: %s: %s", lua_tostring(L, -1), e.error);
    return lua_error(L);
  }
  return 1;
}

/* core.array([t]) -> t, marked as an array (an empty one encodes as []). */
int kf_json_array(lua_State *L)
{
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  } else {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
  }
  kf_push_array_mt(L);
  lua_setmetatable(L, 1);
  return 1;
}
