/*
 * libFuzzer harness: response header parsing (request.c push_headers).
 * Any byte string curl might hand the header callback must parse without a
 * crash or a read out of bounds, into a table whose names are lower case.
 * The harness includes request.c to reach its static parser.
 */
#include "../csrc/request.c"

#include <stdint.h>
#include <stdlib.h>

#include "lualib.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static lua_State *L;
  kf_buffer head;
  if (L == NULL)
    L = luaL_newstate();
  kf_buffer_init(&head, KF_MAX_HEADER_BYTES);
  /* the header callback's own path, in chunks split at newlines */
  {
    kf_request r;
    size_t start = 0, i;
    memset(&r, 0, sizeof r);
    r.head = head;
    for (i = 0; i < size; i++) {
      if (data[i] == '\n' || i + 1 == size) {
        on_header((char *)data + start, 1, i + 1 - start, &r);
        start = i + 1;
      }
    }
    head = r.head;
  }
  push_headers(L, &head);
  lua_pushnil(L);
  while (lua_next(L, -2) != 0) {
    size_t n, k;
    const char *name = lua_tolstring(L, -2, &n);
    for (k = 0; k < n; k++)
      if (name[k] >= 'A' && name[k] <= 'Z')
        abort();
    lua_pop(L, 1);
  }
  lua_settop(L, 0);
  lua_gc(L, LUA_GCCOLLECT, 0);
  kf_buffer_free(&head);
  return 0;
}
