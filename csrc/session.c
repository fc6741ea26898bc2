/*
 * keyfactor.session: one client's transport.
 *
 * A session owns a curl multi handle (its connection pool, and the engine
 * for concurrent transfers), a share handle (DNS cache, TLS sessions), a
 * small stack of idle easy handles for reuse, and the settings every
 * request gets.  Blocking calls and parallel fan-out go through the same
 * multi handle: `wait` drives it until one request is done, `step` drives
 * it once and hands back whatever finished.
 */
#include <stdlib.h>
#include <string.h>

#include "kfcore.h"

kf_session *kf_check_session(lua_State *L, int idx)
{
  kf_session *s = luaL_checkudata(L, idx, KF_SESSION_MT);
  if (s->closed)
    luaL_error(L, "keyfactor.core: session is closed");
  return s;
}

/* ---- easy handles -------------------------------------------------------- */

CURL *kf_session_acquire_easy(kf_session *s)
{
  if (s->nidle > 0)
    return s->idle[--s->nidle];
  return curl_easy_init();
}

void kf_session_release_easy(kf_session *s, CURL *easy)
{
  if (s != NULL && !s->closed && s->nidle < KF_IDLE_MAX) {
    curl_easy_reset(easy);
    s->idle[s->nidle++] = easy;
  } else {
    curl_easy_cleanup(easy);
  }
}

void kf_session_link(kf_session *s, kf_request *r)
{
  r->session = s;
  r->prev = NULL;
  r->next = s->active;
  if (s->active != NULL)
    s->active->prev = r;
  s->active = r;
  s->nactive++;
}

void kf_session_unlink(kf_session *s, kf_request *r)
{
  if (r->prev != NULL)
    r->prev->next = r->next;
  else
    s->active = r->next;
  if (r->next != NULL)
    r->next->prev = r->prev;
  r->prev = r->next = NULL;
  s->nactive--;
}

/* ---- driving the multi handle -------------------------------------------- */

/* Finishes every transfer curl reports done; with `collect`, pushes them
 * into the table on the top of the stack.  Returns how many finished. */
static int collect_finished(lua_State *L, kf_session *s, int collect)
{
  CURLMsg *msg;
  int left, n = 0;
  while ((msg = curl_multi_info_read(s->multi, &left)) != NULL) {
    kf_request *r = NULL;
    if (msg->msg != CURLMSG_DONE)
      continue;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
    if (r == NULL)
      continue;
    if (collect) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, r->self_ref);
      lua_rawseti(L, -2, (int)lua_rawlen(L, -2) + 1);
    }
    kf_request_finish(L, r, msg->data.result);
    n++;
  }
  return n;
}

/* One round of work: perform, wait up to timeout_ms for activity if nothing
 * finished, perform again.  With `collect`, leaves a table of the finished
 * requests on the stack. */
int kf_session_drive(lua_State *L, kf_session *s, long timeout_ms, int collect)
{
  int running = 0, n;
  CURLMcode mc;
  if (collect)
    lua_newtable(L);
  mc = curl_multi_perform(s->multi, &running);
  if (mc != CURLM_OK)
    return luaL_error(L, "keyfactor.core: %s", curl_multi_strerror(mc));
  n = collect_finished(L, s, collect);
  if (n == 0 && running > 0 && timeout_ms > 0) {
    mc = curl_multi_poll(s->multi, NULL, 0, (int)timeout_ms, NULL);
    if (mc == CURLM_OK)
      mc = curl_multi_perform(s->multi, &running);
    if (mc != CURLM_OK)
      return luaL_error(L, "keyfactor.core: %s", curl_multi_strerror(mc));
    n = collect_finished(L, s, collect);
  }
  return n;
}

/* session:step([timeout]) -> array of requests that finished (maybe empty).
 * The timeout (seconds, default 1) bounds the wait for network activity. */
static int session_step(lua_State *L)
{
  kf_session *s = kf_check_session(L, 1);
  double timeout = luaL_optnumber(L, 2, 1.0);
  luaL_argcheck(L, timeout >= 0, 2, "timeout must not be negative");
  kf_session_drive(L, s, kf_seconds_to_ms(timeout), 1);
  return 1;
}

/* session:wait(request): drives the session until that request is done.
 * Other transfers in flight progress meanwhile. */
static int session_wait(lua_State *L)
{
  kf_session *s = kf_check_session(L, 1);
  kf_request *r = kf_check_request(L, 2);
  luaL_argcheck(L, r->session == s || r->state != KF_REQUEST_RUNNING, 2,
                "request belongs to another session");
  while (r->state == KF_REQUEST_RUNNING)
    kf_session_drive(L, s, 1000, 0);
  return 0;
}

/* session:timeout() -> seconds until curl wants to be driven again, or nil
 * when it has nothing pending.  For host event loops (embedding). */
static int session_timeout(lua_State *L)
{
  kf_session *s = kf_check_session(L, 1);
  long ms = -1;
  curl_multi_timeout(s->multi, &ms);
  if (ms < 0)
    lua_pushnil(L);
  else
    lua_pushnumber(L, (lua_Number)ms / 1000.0);
  return 1;
}

/* session:fds() -> array of {fd, "r"|"w"|"rw"} curl is waiting on, so a host
 * event loop (cqueues, ...) can poll them and call step(0) when ready. */
static int session_fds(lua_State *L)
{
  kf_session *s = kf_check_session(L, 1);
  fd_set r, w, e;
  int maxfd = -1, fd, n = 0;
  FD_ZERO(&r);
  FD_ZERO(&w);
  FD_ZERO(&e);
  curl_multi_fdset(s->multi, &r, &w, &e, &maxfd);
  lua_newtable(L);
  for (fd = 0; fd <= maxfd; fd++) {
    int rd = FD_ISSET(fd, &r), wr = FD_ISSET(fd, &w);
    if (!rd && !wr)
      continue;
    lua_createtable(L, 2, 0);
    lua_pushinteger(L, fd);
    lua_rawseti(L, -2, 1);
    lua_pushstring(L, rd && wr ? "rw" : rd ? "r" : "w");
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, -2, ++n);
  }
  return 1;
}

/* ---- settings and credentials -------------------------------------------- */

/* session:set_credentials("basic", user, password) | ("bearer", token) |
 * ("none").  Held in C, applied per request, wiped when replaced. */
static int session_set_credentials(lua_State *L)
{
  static const char *const kinds[] = {"none", "basic", "bearer", NULL};
  kf_session *s = kf_check_session(L, 1);
  int kind = luaL_checkoption(L, 2, NULL, kinds);
  const char *a = kind > 0 ? luaL_checkstring(L, 3) : NULL;
  const char *b = kind == 1 ? luaL_checkstring(L, 4) : NULL;
  kf_free_secret(&s->username);
  kf_free_secret(&s->password);
  kf_free_secret(&s->bearer);
  if (kind == 1) {
    s->username = kf_strdup(a);
    s->password = kf_strdup(b);
  } else if (kind == 2) {
    s->bearer = kf_strdup(a);
  }
  return 0;
}

static void set_string(char **slot, const char *value)
{
  free(*slot);
  *slot = kf_strdup(value);
}

static void read_settings(lua_State *L, kf_session *s, int t)
{
  double timeout = kf_opt_range(L, t, "timeout", 60, 0, KF_MAX_SECONDS);
  double connect_timeout = kf_opt_range(L, t, "connect_timeout", 10, 0, KF_MAX_SECONDS);
  double max_body = kf_opt_range(L, t, "max_body", (double)KF_DEFAULT_MAX_BODY, 1, 9007199254740992.0);
  s->timeout_ms = kf_seconds_to_ms(timeout);
  s->connect_timeout_ms = kf_seconds_to_ms(connect_timeout);
  s->max_body = (size_t)max_body;
  s->insecure = kf_opt_boolean(L, t, "insecure", 0);
  s->http2 = kf_opt_boolean(L, t, "http2", 1);
  set_string(&s->ca_file, kf_opt_string(L, t, "ca_file", NULL));
  set_string(&s->proxy, kf_opt_string(L, t, "proxy", NULL));
  set_string(&s->no_proxy, kf_opt_string(L, t, "no_proxy", NULL));
  set_string(&s->user_agent, kf_opt_string(L, t, "user_agent", NULL));
  s->resolve = kf_opt_slist(L, t, "resolve");   /* "host:port:address" */
  s->headers = kf_opt_slist(L, t, "headers");   /* "Name: value" */
}

/* ---- lifetime ------------------------------------------------------------- */

/* Frees every curl handle.  In-flight requests are detached (they answer
 * "canceled"), so closing in the middle of a fan-out is safe. */
static void session_release(lua_State *L, kf_session *s)
{
  if (s->closed)
    return;
  while (s->active != NULL)
    kf_request_detach(L, s->active);
  s->closed = 1;
  while (s->nidle > 0)
    curl_easy_cleanup(s->idle[--s->nidle]);
  if (s->multi != NULL)
    curl_multi_cleanup(s->multi);
  if (s->share != NULL)
    curl_share_cleanup(s->share);
  s->multi = NULL;
  s->share = NULL;
  free(s->ca_file);
  free(s->proxy);
  free(s->no_proxy);
  free(s->user_agent);
  s->ca_file = s->proxy = s->no_proxy = s->user_agent = NULL;
  curl_slist_free_all(s->resolve);
  curl_slist_free_all(s->headers);
  s->resolve = s->headers = NULL;
  kf_free_secret(&s->username);
  kf_free_secret(&s->password);
  kf_free_secret(&s->bearer);
}

static int session_close(lua_State *L)
{
  kf_session *s = luaL_checkudata(L, 1, KF_SESSION_MT);
  session_release(L, s);
  return 0;
}

static int session_tostring(lua_State *L)
{
  kf_session *s = luaL_checkudata(L, 1, KF_SESSION_MT);
  if (s->closed)
    lua_pushfstring(L, "keyfactor.session (closed): %p", (void *)s);
  else
    lua_pushfstring(L, "keyfactor.session (%d in flight): %p", s->nactive, (void *)s);
  return 1;
}

/* session:stats() -> {active = n, idle = n} */
static int session_stats(lua_State *L)
{
  kf_session *s = luaL_checkudata(L, 1, KF_SESSION_MT);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, s->nactive);
  lua_setfield(L, -2, "active");
  lua_pushinteger(L, s->nidle);
  lua_setfield(L, -2, "idle");
  lua_pushboolean(L, s->closed);
  lua_setfield(L, -2, "closed");
  return 1;
}

/* session:start(spec) -> request; see request.c for the spec fields. */
static int session_start(lua_State *L)
{
  kf_session *s = kf_check_session(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  return kf_request_start(L, s, 2);
}

/* core.session([options]) -> session
 * options: timeout, connect_timeout (seconds), max_body (bytes), insecure,
 * http2, ca_file, proxy, user_agent, resolve (array of "host:port:address"),
 * headers (array of "Name: value", sent with every request). */
static int session_new(lua_State *L)
{
  kf_session *s;
  int t = lua_gettop(L) >= 1 && !lua_isnil(L, 1) ? 1 : 0;
  if (t)
    luaL_checktype(L, 1, LUA_TTABLE);
  s = lua_newuserdata(L, sizeof *s);
  memset(s, 0, sizeof *s);
  s->closed = 1; /* until the handles exist, __gc has nothing to free */
  luaL_getmetatable(L, KF_SESSION_MT);
  lua_setmetatable(L, -2);
  s->multi = curl_multi_init();
  s->share = curl_share_init();
  s->closed = 0;
  if (s->multi == NULL || s->share == NULL)
    return luaL_error(L, "keyfactor.core: out of memory creating curl handles");
  curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  curl_multi_setopt(s->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  s->timeout_ms = 60000;
  s->connect_timeout_ms = 10000;
  s->max_body = KF_DEFAULT_MAX_BODY;
  s->http2 = 1;
  if (t)
    read_settings(L, s, 1);
  return 1;
}

static int session_gc(lua_State *L)
{
  session_release(L, luaL_checkudata(L, 1, KF_SESSION_MT));
  return 0;
}

int kf_open_session(lua_State *L)
{
  static const luaL_Reg methods[] = {
    {"start", session_start},
    {"wait", session_wait},
    {"step", session_step},
    {"timeout", session_timeout},
    {"fds", session_fds},
    {"set_credentials", session_set_credentials},
    {"stats", session_stats},
    {"close", session_close},
    {NULL, NULL}
  };
  static const luaL_Reg meta[] = {
    {"__gc", session_gc},
    {"__close", session_gc},
    {"__tostring", session_tostring},
    {NULL, NULL}
  };
  luaL_newmetatable(L, KF_SESSION_MT);
  luaL_setfuncs(L, meta, 0);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, session_new);
  return 1;
}
