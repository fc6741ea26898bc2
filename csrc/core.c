/*
 * keyfactor.core: the module entry point.
 *
 *   core.session([options]) -> session     (session.c)
 *   core.now() -> seconds                  monotonic clock, for timing and backoff
 *   core.sleep(seconds)                    blocking sleep, for sequential backoff
 *   core.getpid() -> integer               this process (fork checks in specs)
 *   core.curl_version() -> string
 *   core.stderr_is_tty() -> boolean        for the progress line of kf:parallel
 *   core.file_mode(path) -> integer | nil, message   permission bits (config file check)
 *   core.decode_json(text) -> value | nil, message   (json.c)
 *   core.encode_json(value) -> text, core.array([t]) -> t, core.array_mt   (json_encode.c)
 *   core.vault() -> vault                  secrets kept in C (vault.c)
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kfcore.h"

static int core_now(lua_State *L)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

static int core_sleep(lua_State *L)
{
  double seconds = (double)kf_check_ms(L, 1, -1) / 1000.0;
  struct timespec ts;
  ts.tv_sec = (time_t)seconds;
  ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
  return 0;
}

static int core_getpid(lua_State *L)
{
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

static int core_stderr_is_tty(lua_State *L)
{
  lua_pushboolean(L, isatty(STDERR_FILENO));
  return 1;
}

/* The permission bits of a file, so keyfactor.from_env can warn about a
 * credentials file others may read (Lua's io library cannot tell). */
static int core_file_mode(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (stat(path, &st) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, strerror(errno));
    return 2;
  }
  lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
  return 1;
}

static int core_curl_version(lua_State *L)
{
  lua_pushstring(L, curl_version());
  return 1;
}

int luaopen_keyfactor_core(lua_State *L);

int luaopen_keyfactor_core(lua_State *L)
{
  static const luaL_Reg functions[] = {
    {"now", core_now},
    {"sleep", core_sleep},
    {"curl_version", core_curl_version},
    {"stderr_is_tty", core_stderr_is_tty},
    {"getpid", core_getpid},
    {"file_mode", core_file_mode},
    {"decode_json", kf_decode_json},
    {"encode_json", kf_encode_json},
    {"array", kf_json_array},
    {"vault", kf_new_vault},
    {NULL, NULL}
  };
  /* Reference-counted and thread-safe in libcurl >= 7.84; never undone,
   * since other modules in the process may share libcurl. */
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
    return luaL_error(L, "keyfactor.core: curl_global_init failed");
  luaL_newlib(L, functions);
  kf_open_session(L);
  lua_setfield(L, -2, "session");
  kf_open_request(L);   /* after the session class: adds its start, wait, step */
  kf_push_array_mt(L);
  lua_setfield(L, -2, "array_mt");
  lua_pushliteral(L, "0.1.0");
  lua_setfield(L, -2, "version");
  return 1;
}
