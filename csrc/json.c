/*
 * core.decode_json(text) -> value | nil, message
 *
 * Decodes an answer body to the Lua values lua-cjson gives (objects and
 * arrays to tables, null to cjson.null, the NULL light userdata), except
 * that integers stay integers.  Why not cjson.decode: it was the client's
 * largest cost per call (bench/README.md, "Profiling").
 * Debian's cjson 2.1.0 makes every number a float, which then took a second
 * pass over the result to undo, and it grows every table key by key.  Here
 * integers are read as integers, strings without escapes go to Lua in one
 * piece, and a container's items wait on the Lua stack so that its table is
 * created once, at its final size.  An empty array gets core.array_mt, so
 * that it goes back out as [] (json_encode.c encodes requests).
 *
 * RFC 8259 syntax, except that control characters may stand unescaped in
 * strings (cjson takes them too); an error returns nil and a message with
 * the byte offset.  Floats with an integral value become integers, as the
 * client has always given them (5.0 -> 5); a number too large for a double
 * (1e400) is refused rather than read as infinity.
 */
#include <string.h>

#include "kfcore.h"

/* Deeper than any Keyfactor answer; also bounds the C recursion. */
#define JSON_MAX_DEPTH 200
/* Items held on the stack before they are stored (per open container). */
#define JSON_BATCH 32
/* Levels that batch their items; deeper ones store each item at once. */
#define JSON_BATCH_DEPTH 16

/* Object keys repeat from one answer to the next (every certificate has
 * the same seventy names): their Lua strings are kept in a table of
 * KEY_SLOTS, found by a cheap hash of the bytes and checked by comparing
 * them, which costs a third of what Lua's hashing and interning of a new
 * string does.  Only short keys (Lua interns strings up to 40 bytes). */
#define KEY_SLOTS 512
#define KEY_MAX_LEN 40
#define KEY_CACHE "keyfactor.json_keys"

typedef struct json_parser {
  lua_State *L;
  int keys;               /* stack index of the key cache */
  const char *start;
  const char *p;
  const char *end;
  int depth;
  const char *error;      /* what went wrong, at p */
} json_parser;

static int parse_value(json_parser *jp);

/* Advances jp->p to the next '"' or '\\' of a string, or to the end of
 * the text: the bytes between need no decoding (memchr is vectorised). */
static void skip_plain(json_parser *jp)
{
  const char *quote = memchr(jp->p, '"', (size_t)(jp->end - jp->p));
  const char *stop = quote != NULL ? quote : jp->end;
  const char *backslash = memchr(jp->p, '\\', (size_t)(stop - jp->p));
  jp->p = backslash != NULL ? backslash : stop;
}

static int fail(json_parser *jp, const char *what)
{
  jp->error = what;
  return 0;
}

static void skip_space(json_parser *jp)
{
  while (jp->p < jp->end && (*jp->p == ' ' || *jp->p == '\n' || *jp->p == '\r' || *jp->p == '\t'))
    jp->p++;
}

/* The next significant character, or 0 at the end of the text. */
static char peek(json_parser *jp)
{
  skip_space(jp);
  return jp->p < jp->end ? *jp->p : 0;
}

static int hex4(const char *s, unsigned *out)
{
  unsigned v = 0;
  int i;
  for (i = 0; i < 4; i++) {
    char c = s[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return 0;
  }
  *out = v;
  return 1;
}

static void add_utf8(luaL_Buffer *b, unsigned cp)
{
  if (cp < 0x80) {
    luaL_addchar(b, (char)cp);
  } else if (cp < 0x800) {
    luaL_addchar(b, (char)(0xC0 | (cp >> 6)));
    luaL_addchar(b, (char)(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    luaL_addchar(b, (char)(0xE0 | (cp >> 12)));
    luaL_addchar(b, (char)(0x80 | ((cp >> 6) & 0x3F)));
    luaL_addchar(b, (char)(0x80 | (cp & 0x3F)));
  } else {
    luaL_addchar(b, (char)(0xF0 | (cp >> 18)));
    luaL_addchar(b, (char)(0x80 | ((cp >> 12) & 0x3F)));
    luaL_addchar(b, (char)(0x80 | ((cp >> 6) & 0x3F)));
    luaL_addchar(b, (char)(0x80 | (cp & 0x3F)));
  }
}

/* \uXXXX at jp->p (after the backslash and 'u'), a surrogate pair whole. */
static int parse_unicode_escape(json_parser *jp, luaL_Buffer *b)
{
  unsigned cp, low;
  if (jp->end - jp->p < 4 || !hex4(jp->p, &cp))
    return fail(jp, "invalid \\u escape");
  jp->p += 4;
  if (cp >= 0xDC00 && cp <= 0xDFFF)
    return fail(jp, "unpaired surrogate in \\u escape");
  if (cp >= 0xD800 && cp <= 0xDBFF) {
    if (jp->end - jp->p < 6 || jp->p[0] != '\\' || jp->p[1] != 'u'
        || !hex4(jp->p + 2, &low) || low < 0xDC00 || low > 0xDFFF)
      return fail(jp, "unpaired surrogate in \\u escape");
    jp->p += 6;
    cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
  }
  add_utf8(b, cp);
  return 1;
}

/* The rest of a string with escapes, from its first backslash. */
static int parse_escaped_string(json_parser *jp, const char *from)
{
  luaL_Buffer b;
  luaL_buffinit(jp->L, &b);
  luaL_addlstring(&b, from, (size_t)(jp->p - from));
  for (;;) {
    const char *run = jp->p;
    skip_plain(jp);
    luaL_addlstring(&b, run, (size_t)(jp->p - run));
    if (jp->p >= jp->end)
      return fail(jp, "unterminated string");
    if (*jp->p == '"')
      break;
    if (++jp->p >= jp->end)
      return fail(jp, "unterminated string");
    switch (*jp->p++) {
    case '"': luaL_addchar(&b, '"'); break;
    case '\\': luaL_addchar(&b, '\\'); break;
    case '/': luaL_addchar(&b, '/'); break;
    case 'b': luaL_addchar(&b, '\b'); break;
    case 'f': luaL_addchar(&b, '\f'); break;
    case 'n': luaL_addchar(&b, '\n'); break;
    case 'r': luaL_addchar(&b, '\r'); break;
    case 't': luaL_addchar(&b, '\t'); break;
    case 'u':
      if (!parse_unicode_escape(jp, &b))
        return 0;
      break;
    default:
      jp->p--;
      return fail(jp, "invalid escape in string");
    }
  }
  jp->p++;
  luaL_pushresult(&b);
  return 1;
}

/* A string at jp->p (on its opening quote), pushed. */
static int parse_string(json_parser *jp)
{
  const char *s = ++jp->p;
  skip_plain(jp);
  if (jp->p < jp->end && *jp->p == '"') {
    lua_pushlstring(jp->L, s, (size_t)(jp->p - s));
    jp->p++;
    return 1;
  }
  if (jp->p < jp->end)
    return parse_escaped_string(jp, s);
  return fail(jp, "unterminated string");
}

/* A slot for the key s[0..len), len <= KEY_MAX_LEN: its first and last
 * eight bytes (or all of them) and its length, mixed. */
static int key_slot(const char *s, size_t len)
{
  unsigned long long a = 0, b = 0, h;
  size_t i;
  if (len >= 8) {
    memcpy(&a, s, 8);
    memcpy(&b, s + len - 8, 8);
  } else {
    for (i = 0; i < len; i++)
      a = (a << 8) | (unsigned char)s[i];
  }
  h = (a * 0x9E3779B97F4A7C15ULL) ^ (b * 0xC2B2AE3D27D4EB4FULL) ^ len;
  h ^= h >> 29;
  return (int)(h & (KEY_SLOTS - 1)) + 1;
}

/* An object key at jp->p (on its opening quote), pushed: the cached string
 * when the same bytes came before; keys with escapes take parse_string. */
static int parse_key(json_parser *jp)
{
  lua_State *L = jp->L;
  const char *s = jp->p + 1, *cached;
  size_t len, n;
  int slot;
  jp->p = s;
  skip_plain(jp);
  if (jp->p >= jp->end || *jp->p != '"') {
    jp->p = s - 1;
    return parse_string(jp);
  }
  len = (size_t)(jp->p - s);
  jp->p++;
  if (len > KEY_MAX_LEN) {
    lua_pushlstring(L, s, len);
    return 1;
  }
  slot = key_slot(s, len);
  lua_rawgeti(L, jp->keys, slot);
  cached = lua_tolstring(L, -1, &n);   /* NULL for an empty slot */
  if (cached != NULL && n == len && memcmp(cached, s, len) == 0)
    return 1;
  lua_pop(L, 1);
  lua_pushlstring(L, s, len);
  lua_pushvalue(L, -1);
  lua_rawseti(L, jp->keys, slot);
  return 1;
}

static int is_digit(json_parser *jp)
{
  return jp->p < jp->end && *jp->p >= '0' && *jp->p <= '9';
}

/* A number: an integer when it has an exact integer value that fits. */
static int parse_number(json_parser *jp)
{
  lua_State *L = jp->L;
  const char *s = jp->p;
  int negative = 0, integral = 1, digits = 0;
  lua_Number n;
  unsigned long long magnitude = 0;
  if (*jp->p == '-') {
    negative = 1;
    jp->p++;
  }
  if (!is_digit(jp))
    return fail(jp, "invalid number");
  if (*jp->p == '0') {
    jp->p++;
    if (is_digit(jp))
      return fail(jp, "leading zero in number");
  } else {
    for (; is_digit(jp); jp->p++, digits++)
      magnitude = magnitude * 10 + (unsigned long long)(*jp->p - '0');
  }
  if (jp->p < jp->end && *jp->p == '.') {
    integral = 0;
    jp->p++;
    if (!is_digit(jp))
      return fail(jp, "invalid number");
    while (is_digit(jp))
      jp->p++;
  }
  if (jp->p < jp->end && (*jp->p == 'e' || *jp->p == 'E')) {
    integral = 0;
    jp->p++;
    if (jp->p < jp->end && (*jp->p == '+' || *jp->p == '-'))
      jp->p++;
    if (!is_digit(jp))
      return fail(jp, "invalid number");
    while (is_digit(jp))
      jp->p++;
  }
  /* 18 digits always fit a 64-bit integer: the common case, no conversion. */
  if (integral && digits <= 18) {
#if LUA_VERSION_NUM >= 503
    lua_Integer i = (lua_Integer)magnitude;
    lua_pushinteger(L, negative ? -i : i);
#else
    lua_pushnumber(L, negative ? -(lua_Number)magnitude : (lua_Number)magnitude);
#endif
    return 1;
  }
  /* Anything else the way Lua reads numbers (locale-proof), from a
   * NUL-terminated copy. */
#if LUA_VERSION_NUM >= 503
  {
    lua_Integer i;
    if (lua_stringtonumber(L, lua_pushlstring(L, s, (size_t)(jp->p - s))) == 0) {
      lua_pop(L, 1);
      return fail(jp, "invalid number");
    }
    lua_remove(L, -2);
    if (lua_isinteger(L, -1))
      return 1;
    n = lua_tonumber(L, -1);
    if (n - n != 0) {      /* 1e400: infinity, which JSON cannot carry back */
      lua_pop(L, 1);
      return fail(jp, "number out of range");
    }
    if (lua_numbertointeger(n, &i) && (lua_Number)i == n) {
      lua_pop(L, 1);
      lua_pushinteger(L, i);
    }
    return 1;
  }
#else
  lua_pushlstring(L, s, (size_t)(jp->p - s));
  n = lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (n - n != 0)
    return fail(jp, "number out of range");
  lua_pushnumber(L, n);
  return 1;
#endif
}

static int parse_literal(json_parser *jp, const char *word, size_t len)
{
  if ((size_t)(jp->end - jp->p) < len || memcmp(jp->p, word, len) != 0)
    return fail(jp, "unexpected character");
  jp->p += len;
  return 1;
}

/* Stores the items waiting above the container's slot at `base` (the slot
 * holds nil until the first flush creates the table, at the size known
 * then).  Pairs go in text order, so that the last of duplicate keys wins. */
static void flush_object(lua_State *L, int base, int pairs)
{
  int i;
  if (lua_isnil(L, base)) {
    lua_createtable(L, 0, pairs);
    lua_replace(L, base);
  }
  for (i = 0; i < pairs; i++) {
    lua_pushvalue(L, base + 1 + 2 * i);
    lua_pushvalue(L, base + 2 + 2 * i);
    lua_rawset(L, base);
  }
  lua_settop(L, base);
}

/* Items go from the top down: each store pops its item, none is copied. */
static void flush_array(lua_State *L, int base, int items, int *length)
{
  int i;
  if (lua_isnil(L, base)) {
    lua_createtable(L, items, 0);
    lua_replace(L, base);
  }
  for (i = items; i > 0; i--)
    lua_rawseti(L, base, *length + i);
  *length += items;
}

/* Opens a container: its slot pushed, *batch set to how many items (pairs
 * for objects) may wait on the stack before they are stored.  Below
 * JSON_BATCH_DEPTH levels (deeper than any real answer) items are stored one
 * by one, so that 200 levels fit even LuaJIT's smaller Lua stack; only when
 * not even that fits is the text refused (nil, message: decoding never
 * raises, hence lua_checkstack, not luaL_checkstack). */
static int enter(json_parser *jp, int *batch)
{
  if (++jp->depth > JSON_MAX_DEPTH)
    return fail(jp, "nested too deeply");
  if (jp->depth <= JSON_BATCH_DEPTH && lua_checkstack(jp->L, 2 * JSON_BATCH + 4))
    *batch = JSON_BATCH;
  else if (lua_checkstack(jp->L, 8))
    *batch = 1;
  else
    return fail(jp, "nested too deeply for the Lua stack");
  lua_pushnil(jp->L);         /* the container's slot */
  jp->p++;
  return 1;
}

static int parse_object(json_parser *jp)
{
  lua_State *L = jp->L;
  int base, pairs = 0, batch;
  char c;
  if (!enter(jp, &batch))
    return 0;
  base = lua_gettop(L);
  if (peek(jp) == '}') {
    jp->p++;
  } else {
    for (;;) {
      if (peek(jp) != '"')
        return fail(jp, jp->p < jp->end ? "expected a string key" : "unexpected end of text");
      if (!parse_key(jp))
        return 0;
      if (peek(jp) != ':')
        return fail(jp, jp->p < jp->end ? "expected ':'" : "unexpected end of text");
      jp->p++;
      if (!parse_value(jp))
        return 0;
      if (++pairs == batch) {
        flush_object(L, base, pairs);
        pairs = 0;
      }
      c = peek(jp);
      if (c != ',' && c != '}')
        return fail(jp, c ? "expected ',' or '}'" : "unexpected end of text");
      jp->p++;
      if (c == '}')
        break;
    }
  }
  flush_object(L, base, pairs);
  jp->depth--;
  return 1;
}

static int parse_array(json_parser *jp)
{
  lua_State *L = jp->L;
  int base, items = 0, length = 0, batch;
  char c;
  if (!enter(jp, &batch))
    return 0;
  base = lua_gettop(L);
  if (peek(jp) == ']') {
    jp->p++;
  } else {
    for (;;) {
      if (!parse_value(jp))
        return 0;
      if (++items == 2 * batch) {
        flush_array(L, base, items, &length);
        items = 0;
      }
      c = peek(jp);
      if (c != ',' && c != ']')
        return fail(jp, c ? "expected ',' or ']'" : "unexpected end of text");
      jp->p++;
      if (c == ']')
        break;
    }
  }
  flush_array(L, base, items, &length);
  if (length == 0) {
    /* [] stays [] when the value is sent back (core.encode_json) */
    kf_push_array_mt(L);
    lua_setmetatable(L, base);
  }
  jp->depth--;
  return 1;
}

static int parse_value(json_parser *jp)
{
  switch (peek(jp)) {
  case '{': return parse_object(jp);
  case '[': return parse_array(jp);
  case '"': return parse_string(jp);
  case 't':
    if (!parse_literal(jp, "true", 4)) return 0;
    lua_pushboolean(jp->L, 1);
    return 1;
  case 'f':
    if (!parse_literal(jp, "false", 5)) return 0;
    lua_pushboolean(jp->L, 0);
    return 1;
  case 'n':
    if (!parse_literal(jp, "null", 4)) return 0;
    lua_pushlightuserdata(jp->L, NULL);   /* == cjson.null */
    return 1;
  case 0:
    return fail(jp, "unexpected end of text");
  default:
    if (*jp->p == '-' || (*jp->p >= '0' && *jp->p <= '9'))
      return parse_number(jp);
    return fail(jp, "unexpected character");
  }
}

/* Decodes text[0..len) onto the stack: its value (1), or nil and a message
 * (2).  For core.decode_json and request:result(true), which decodes an
 * answer straight from the received bytes. */
int kf_decode_json_text(lua_State *L, const char *text, size_t len)
{
  json_parser jp;
  int base = lua_gettop(L);
  lua_getfield(L, LUA_REGISTRYINDEX, KEY_CACHE);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_createtable(L, KEY_SLOTS, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, KEY_CACHE);
  }
  jp.L = L;
  jp.keys = base + 1;
  jp.start = jp.p = text;
  jp.end = text + len;
  jp.depth = 0;
  jp.error = NULL;
  if (parse_value(&jp)) {
    if (peek(&jp) == 0) {
      lua_remove(L, jp.keys);
      return 1;
    }
    jp.error = "text after the value";
  }
  lua_settop(L, base);
  lua_pushnil(L);
  if (jp.p < jp.end && (unsigned char)*jp.p >= 0x20 && (unsigned char)*jp.p < 0x7F)
    lua_pushfstring(L, "%s at byte %d ('%c')", jp.error, (int)(jp.p - jp.start) + 1, *jp.p);
  else
    lua_pushfstring(L, "%s at byte %d", jp.error, (int)(jp.p - jp.start) + 1);
  return 2;
}

int kf_decode_json(lua_State *L)
{
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  lua_settop(L, 1);
  return kf_decode_json_text(L, text, len);
}
