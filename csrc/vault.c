/*
 * core.vault() -> vault: the client's secrets, kept in C memory.
 *
 *   vault:set(name, value, form...)   value and its encoded forms (the
 *                                     ones a server may echo), replacing
 *                                     those of an earlier `name`
 *   vault:get(name) -> value | nil    for the code that must send it
 *   vault:redact(text [, min [, extra]]) -> text   every form of every
 *                                     secret (and the strings of the array
 *                                     `extra`) at least `min` bytes long
 *                                     (default 1) replaced by "***"
 *   tostring(vault)                   "keyfactor.vault (2 secrets)"
 *
 * Why C: a Lua table or upvalue holding them is reachable by anything that
 * walks the client (pretty-printers, debuggers, a REPL's `kf`); bytes behind
 * a userdata are not.  Values are wiped when replaced or collected, and
 * live in pages of their own that a core dump leaves out (MADV_DONTDUMP,
 * where the system has it).  keyfactor.auth.secrets computes the encoded forms.
 */
/* madvise(), MAP_ANONYMOUS: not in POSIX 2008, but in glibc, musl and the BSDs */
#define _DEFAULT_SOURCE 1
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kfcore.h"

#define KF_VAULT_MT "keyfactor.vault"

typedef struct secret {
  char *name;
  char *bytes;
  size_t len;
  int primary;          /* the value itself, not an encoded form */
} secret;

typedef struct kf_vault {
  secret *items;        /* longest first: a longer form is replaced whole */
  int n;
  int cap;
} kf_vault;

static kf_vault *check_vault(lua_State *L)
{
  return (kf_vault *)luaL_checkudata(L, 1, KF_VAULT_MT);
}

/* ---- memory for secret bytes ---------------------------------------------- */

/* Whole pages: madvise works on pages, and no other data shares them. */
static size_t page_span(size_t len)
{
  long page = sysconf(_SC_PAGESIZE);
  size_t size = page > 0 ? (size_t)page : 4096;
  return (len + size - 1) / size * size;
}

/* `len` bytes in pages of their own, left out of core dumps where the
 * system can do that; NULL when out of memory.  With mmap, an inaccessible
 * guard page on each side: a stray read or write running off a neighbouring
 * buffer faults instead of reaching a secret, and the secret's pages stay a
 * mapping of their own (the kernel merges adjacent mappings of equal
 * protection and flags, which would fold them into a neighbour's). */
static char *secret_alloc(size_t len)
{
  size_t span = page_span(len);
  void *p;
#ifdef MAP_ANONYMOUS
  size_t guard = page_span(1);
  char *region = mmap(NULL, span + 2 * guard, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (region == MAP_FAILED)
    return NULL;
  p = region + guard;
  if (mprotect(p, span, PROT_READ | PROT_WRITE) != 0) {
    munmap(region, span + 2 * guard);
    return NULL;
  }
#else
  if (posix_memalign(&p, page_span(1), span) != 0)
    return NULL;
#endif
#ifdef MADV_DONTDUMP
  (void)madvise(p, span, MADV_DONTDUMP);   /* best effort: a dump is rare, a failure harmless */
#endif
  return (char *)p;
}

/* Overwrites the bytes (through a volatile pointer, which the compiler
 * may not drop as a dead store) and gives the pages back. */
static void secret_free(char *p, size_t len)
{
  volatile char *c = p;
  size_t n = len;
  if (p == NULL)
    return;
  while (n-- > 0)
    *c++ = '\0';
#ifdef MAP_ANONYMOUS
  {
    size_t guard = page_span(1);   /* the guard pages secret_alloc put around them */
    munmap(p - guard, page_span(len) + 2 * guard);
  }
#else
  free(p);
#endif
}

static void drop(kf_vault *v, int i)
{
  free(v->items[i].name);
  secret_free(v->items[i].bytes, v->items[i].len);
  memmove(v->items + i, v->items + i + 1, sizeof(secret) * (size_t)(v->n - i - 1));
  v->n--;
}

static int has(const kf_vault *v, const char *name, const char *bytes, size_t len)
{
  int i;
  for (i = 0; i < v->n; i++)
    if (v->items[i].len == len && strcmp(v->items[i].name, name) == 0
        && memcmp(v->items[i].bytes, bytes, len) == 0)
      return 1;
  return 0;
}

/* Adds one form, kept in order of length (longest first); 0 when out of memory. */
static int add(kf_vault *v, const char *name, const char *bytes, size_t len, int primary)
{
  int at;
  secret s;
  if (len == 0 || has(v, name, bytes, len))
    return 1;
  if (v->n == v->cap) {
    int cap = v->cap ? v->cap * 2 : 8;
    secret *grown = realloc(v->items, sizeof(secret) * (size_t)cap);
    if (grown == NULL)
      return 0;
    v->items = grown;
    v->cap = cap;
  }
  s.name = kf_strdup(name);
  s.bytes = secret_alloc(len);
  s.len = len;
  s.primary = primary;
  if (s.name == NULL || s.bytes == NULL) {
    free(s.name);
    secret_free(s.bytes, len);
    return 0;
  }
  memcpy(s.bytes, bytes, len);
  for (at = 0; at < v->n && v->items[at].len >= len; at++)
    ;
  memmove(v->items + at + 1, v->items + at, sizeof(secret) * (size_t)(v->n - at));
  v->items[at] = s;
  v->n++;
  return 1;
}

static int vault_set(lua_State *L)
{
  kf_vault *v = check_vault(L);
  const char *name = luaL_checkstring(L, 2);
  int i, top = lua_gettop(L);
  luaL_checkstring(L, 3);
  for (i = 4; i <= top; i++)
    luaL_checkstring(L, i);
  for (i = v->n - 1; i >= 0; i--)
    if (strcmp(v->items[i].name, name) == 0)
      drop(v, i);
  for (i = 3; i <= top; i++) {
    size_t len;
    const char *bytes = lua_tolstring(L, i, &len);
    if (!add(v, name, bytes, len, i == 3))
      return luaL_error(L, "keyfactor.vault: out of memory");
  }
  return 0;
}

static int vault_get(lua_State *L)
{
  kf_vault *v = check_vault(L);
  const char *name = luaL_checkstring(L, 2);
  int i;
  for (i = 0; i < v->n; i++) {
    if (v->items[i].primary && strcmp(v->items[i].name, name) == 0) {
      lua_pushlstring(L, v->items[i].bytes, v->items[i].len);
      return 1;
    }
  }
  lua_pushnil(L);
  return 1;
}

static const char *find(const char *text, size_t len, const char *what, size_t n)
{
  const char *p = text, *end = text + len;
  while ((size_t)(end - p) >= n) {
    p = memchr(p, what[0], (size_t)(end - p) - n + 1);
    if (p == NULL)
      return NULL;
    if (memcmp(p, what, n) == 0)
      return p;
    p++;
  }
  return NULL;
}

/* Replaces every occurrence of `what` in the string on top of the stack. */
static void replace_top(lua_State *L, const char *what, size_t n)
{
  size_t len;
  const char *text = lua_tolstring(L, -1, &len);
  const char *hit = find(text, len, what, n), *from = text;
  luaL_Buffer b;
  if (hit == NULL)
    return;
  luaL_buffinit(L, &b);
  while (hit != NULL) {
    luaL_addlstring(&b, from, (size_t)(hit - from));
    luaL_addstring(&b, "***");
    from = hit + n;
    hit = find(from, len - (size_t)(from - text), what, n);
  }
  luaL_addlstring(&b, from, len - (size_t)(from - text));
  luaL_pushresult(&b);
  lua_replace(L, -2);
}

static int vault_redact(lua_State *L)
{
  kf_vault *v = check_vault(L);
  lua_Integer least = luaL_optinteger(L, 3, 1);
  size_t min = least > 1 ? (size_t)least : 1;
  int n_extra = 0, extras;
  if (lua_type(L, 2) != LUA_TSTRING) {   /* nil, numbers...: nothing to hide */
    lua_settop(L, 2);
    return 1;
  }
  if (!lua_isnoneornil(L, 4)) {
    luaL_checktype(L, 4, LUA_TTABLE);
    n_extra = (int)lua_rawlen(L, 4);
  }
  lua_settop(L, 4);
  extras = 4;
  lua_pushvalue(L, 2);                  /* the text being redacted, at 5 */
  /* longest first over both lists: a long form is replaced before a short
   * one that is part of it could break it up */
  {
    int vi = 0, ei = 1;
    while (vi < v->n || ei <= n_extra) {
      size_t elen = 0;
      const char *e = NULL;
      if (ei <= n_extra) {
        lua_rawgeti(L, extras, ei);
        if (lua_type(L, -1) == LUA_TSTRING)
          e = lua_tolstring(L, -1, &elen);
        lua_pop(L, 1);                  /* still referenced by the table */
        if (e == NULL) {
          ei++;
          continue;
        }
      }
      if (vi < v->n && (e == NULL || v->items[vi].len >= elen)) {
        if (v->items[vi].len >= min)
          replace_top(L, v->items[vi].bytes, v->items[vi].len);
        vi++;
      } else {
        if (elen >= min)
          replace_top(L, e, elen);
        ei++;
      }
    }
  }
  return 1;
}

static int vault_tostring(lua_State *L)
{
  kf_vault *v = check_vault(L);
  int i, names = 0;
  for (i = 0; i < v->n; i++)
    names += v->items[i].primary;
  lua_pushfstring(L, "keyfactor.vault (%d secret%s)", names, names == 1 ? "" : "s");
  return 1;
}

static int vault_gc(lua_State *L)
{
  kf_vault *v = check_vault(L);
  while (v->n > 0)
    drop(v, v->n - 1);
  free(v->items);
  v->items = NULL;
  v->cap = 0;
  return 0;
}

int kf_new_vault(lua_State *L)
{
  static const luaL_Reg methods[] = {
    {"set", vault_set},
    {"get", vault_get},
    {"redact", vault_redact},
    {NULL, NULL}
  };
  static const luaL_Reg meta[] = {
    {"__tostring", vault_tostring},
    {"__gc", vault_gc},
    {NULL, NULL}
  };
  kf_vault *v = (kf_vault *)lua_newuserdata(L, sizeof *v);
  v->items = NULL;
  v->n = v->cap = 0;
  kf_new_class(L, KF_VAULT_MT, meta, methods);
  lua_pushliteral(L, KF_VAULT_MT);
  lua_setfield(L, -2, "__metatable");   /* getmetatable cannot reach __gc */
  lua_setmetatable(L, -2);
  return 1;
}
