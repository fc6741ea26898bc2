/*
 * keyfactor.session: one client's transport.
 *
 * A session owns a curl multi handle (its connection pool, and the engine
 * for concurrent transfers), a share handle (DNS cache, TLS sessions), a
 * small stack of idle easy handles for reuse, and the settings every
 * request gets.  Blocking calls and parallel fan-out go through the same
 * multi handle: `wait` drives it until one request is done, `step` drives
 * it once and hands back whatever finished.
 *
 * A session belongs to the process that made it.  After fork() the child
 * shares the parent's sockets and TLS state; the first use in the child
 * abandons them untouched (never a byte on the parent's connections) and
 * starts a fresh pool.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/epoll.h>
#define KF_HAVE_EPOLL 1
#endif

#include <pthread.h>

#include "kfcore.h"

/* GOAWAYs a session remembers, to tell refused streams. */
#define KF_GOAWAYS 16

/* Idle easy handles kept per session for reuse; more are simply freed. */
#define KF_IDLE_MAX 64

/* A socket curl asked to watch (CURLMOPT_SOCKETFUNCTION), and for what:
 * CURL_POLL_IN, CURL_POLL_OUT or CURL_POLL_INOUT. */
typedef struct kf_watch {
  curl_socket_t fd;
  int what;
} kf_watch;

struct kf_session {
  CURLM *multi;
  CURLSH *share;
  kf_link *active;              /* in-flight transfers, a doubly linked list */
  int nactive;
  kf_drop_fn drop;              /* how to drop one (given by kf_session_add) */
  /* idle easy handles, each with the settings generation a plain request
   * left it configured with, or 0: reset to libcurl's defaults */
  struct kf_idle {
    CURL *easy;
    unsigned long settings;
  } idle[KF_IDLE_MAX];
  int nidle;
  unsigned long settings;       /* generation of the settings: changes with the credentials */
  char *unsafe;                 /* why a setting must not be sent (a control character), or NULL */
  /* what curl wants watched: its sockets, and when to call it anyway */
  kf_watch *watch;
  int nwatch;
  int capwatch;
  long timer_ms;                /* -1: no timer; else due at timer_due */
  double timer_due;             /* monotonic seconds */
  int epfd;                     /* epoll set mirroring `watch`, made on demand; -1 */
  unsigned long forks;          /* the process's fork count when the handles were made */
  int orphan;                   /* forked: the parent's handles let go, none made yet */
  /* HTTP/2 GOAWAYs seen (connection number, last stream id), newest last */
  long goaway[KF_GOAWAYS][2];
  int ngoaway;
  /* settings applied to every easy handle */
  char *ca_file;
  char *proxy;
  char *no_proxy;               /* curl's NOPROXY list */
  char *user_agent;
  struct curl_slist *resolve;   /* "host:port:address" pins (CURLOPT_RESOLVE) */
  struct curl_slist *headers;   /* sent with every request, built once */
  long timeout_ms;
  long connect_timeout_ms;
  int insecure;
  int http2;
  size_t max_body;
  /* credentials: wiped when replaced or freed, never printed */
  char *username;
  char *password;
  char *bearer;
  int closed;
};

static int make_handles(kf_session *s);

/* Forks of this process so far, counted in the child (pthread_atfork): a
 * session compares it with its own count instead of calling getpid() on
 * every use. */
static volatile unsigned long forks;
static void count_fork(void)
{
  forks++;
}

kf_session *kf_check_session(lua_State *L, int idx)
{
  kf_session *s = luaL_checkudata(L, idx, KF_SESSION_MT);
  kf_session_check_fork(L, s);
  if (s->closed)
    luaL_error(L, "keyfactor.core: session is closed");
  return s;
}

/* In a child process: forget the parent's handles without touching them
 * (cleaning up would close, and so write to, the parent's connections) and
 * cancel the transfers in flight.  The abandoned handles stay allocated:
 * the child may not free what the parent uses.  Never raises (it runs in
 * __gc too).  Returns whether the session was forked. */
int kf_session_forked(lua_State *L, kf_session *s)
{
  if (s->closed || s->orphan || s->forks == forks)
    return 0;
  while (s->active != NULL)
    s->drop(L, s->active, 1);
  s->nidle = 0;
  s->nwatch = 0;
  s->timer_ms = -1;
  s->ngoaway = 0;
  if (s->epfd >= 0)
    close(s->epfd);   /* the child's reference only: the epoll set is shared */
  s->epfd = -1;
  s->multi = NULL;
  s->share = NULL;
  s->orphan = 1;
  return 1;
}

/* Before a use: after fork, a fresh pool for this process. */
void kf_session_check_fork(lua_State *L, kf_session *s)
{
  kf_session_forked(L, s);
  if (s->orphan && !s->closed && make_handles(s) != 0) {
    s->closed = 1;
    luaL_error(L, "keyfactor.core: out of memory creating curl handles after fork");
  }
}

/* Seconds (a Lua number at idx, `dflt` when absent) as milliseconds for
 * curl: finite, not negative, at most a day (NaN and 1e300 must never reach
 * a cast to long). */
long kf_check_ms(lua_State *L, int idx, double dflt)
{
  double seconds = luaL_optnumber(L, idx, dflt);
  luaL_argcheck(L, seconds >= 0 && seconds <= KF_MAX_SECONDS, idx,
                "seconds must be a number from 0 to 86400");
  return kf_seconds_to_ms(seconds);
}

/* ---- settings, for a request ---------------------------------------------- */

long kf_session_timeout_ms(const kf_session *s)
{
  return s->timeout_ms;
}

long kf_session_connect_timeout_ms(const kf_session *s)
{
  return s->connect_timeout_ms;
}

size_t kf_session_max_body(const kf_session *s)
{
  return s->max_body;
}

int kf_session_http2(const kf_session *s)
{
  return s->http2;
}

const struct curl_slist *kf_session_headers(const kf_session *s)
{
  return s->headers;
}

/* The request's method and its own headers (`extra`, NULL for none) free
 * of control characters, and the session's settings too (checked when they
 * were set); else 0 with the message pushed (kf_check_request_headers). */
int kf_session_check_headers(lua_State *L, const kf_session *s, const char *method,
                             const struct curl_slist *extra)
{
  if (s->unsafe != NULL) {
    lua_pushstring(L, s->unsafe);
    return 0;
  }
  return kf_check_request_headers(L, method, extra, NULL, NULL);
}

/* After the settings were set or the credentials changed: checks those that
 * become request headers (the headers, the user agent, the bearer token)
 * once, so that every request that follows refuses them with the same
 * message (kf_session_check_headers), and starts a new generation. */
static void settings_changed(lua_State *L, kf_session *s)
{
  free(s->unsafe);
  s->unsafe = NULL;
  if (!kf_check_request_headers(L, NULL, s->headers, s->user_agent, s->bearer)) {
    s->unsafe = kf_strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  s->settings++;   /* handles configured before are configured again */
}

/* Whether two header lines name the same header ("Name: value", "Name;"). */
static int same_header(const char *a, const char *b)
{
  size_t n = strcspn(a, ":;");
  return n == strcspn(b, ":;") && curl_strnequal(a, b, n);
}

/* A request's own header list: the session's, less those that one of
 * `extra` replaces (same name), then `extra`.  Takes over `extra`; NULL
 * when out of memory. */
struct curl_slist *kf_session_merge_headers(const kf_session *s, struct curl_slist *extra)
{
  struct curl_slist *list = NULL, *tail;
  const struct curl_slist *b, *e;
  for (b = s->headers; b != NULL; b = b->next) {
    for (e = extra; e != NULL && !same_header(b->data, e->data); e = e->next)
      ;
    if (e == NULL) {
      struct curl_slist *grown = curl_slist_append(list, b->data);
      if (grown == NULL) {
        curl_slist_free_all(list);
        curl_slist_free_all(extra);
        return NULL;
      }
      list = grown;
    }
  }
  if (list == NULL)
    return extra;
  for (tail = list; tail->next != NULL; tail = tail->next)
    ;
  tail->next = extra;
  return list;
}

/* The session's settings on an easy handle; with `auth`, its credentials. */
static void configure(const kf_session *s, CURL *easy, int auth)
{
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_SHARE, s->share);
  curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)s->max_body);
  curl_easy_setopt(easy, CURLOPT_HTTP_VERSION,
                   s->http2 ? (long)CURL_HTTP_VERSION_2TLS : (long)CURL_HTTP_VERSION_1_1);
  /* Fan-out: wait for a connection that can multiplex instead of opening one
   * connection (and TLS handshake) per transfer. */
  curl_easy_setopt(easy, CURLOPT_PIPEWAIT, (long)s->http2);
  if (s->ca_file != NULL)
    curl_easy_setopt(easy, CURLOPT_CAINFO, s->ca_file);
  if (s->insecure) {
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (s->proxy != NULL)
    curl_easy_setopt(easy, CURLOPT_PROXY, s->proxy);
  if (s->no_proxy != NULL)
    curl_easy_setopt(easy, CURLOPT_NOPROXY, s->no_proxy);
  if (s->resolve != NULL)
    curl_easy_setopt(easy, CURLOPT_RESOLVE, s->resolve);
  if (s->user_agent != NULL)
    curl_easy_setopt(easy, CURLOPT_USERAGENT, s->user_agent);
  if (auth && s->username != NULL) {
    curl_easy_setopt(easy, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
    curl_easy_setopt(easy, CURLOPT_USERNAME, s->username);
    curl_easy_setopt(easy, CURLOPT_PASSWORD, s->password);
  } else if (auth && s->bearer != NULL) {
    curl_easy_setopt(easy, CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
    curl_easy_setopt(easy, CURLOPT_XOAUTH2_BEARER, s->bearer);
  }
}

/* ---- transfers ------------------------------------------------------------ */

/* Links a transfer into the active list and gives it an easy handle (from
 * the idle stack, or a new one) configured with the session's settings;
 * NULL when out of memory (nothing linked).  Setting every option again
 * after curl_easy_reset costs a plain GET more than its own request does,
 * so a handle a plain request used goes back to the stack as it is, and the
 * next plain request (same settings generation) takes it unchanged; any
 * other request gets a reset handle, and resets it when it is done.  The
 * caller sets what is its own: URL, headers, timeouts, callbacks and method
 * (those that are the same for every plain request only when not *reused). */
CURL *kf_session_add(kf_session *s, kf_link *link, kf_drop_fn drop, int auth, int plain, int *reused)
{
  CURL *easy;
  unsigned long settings = 0;
  if (s->nidle > 0) {
    s->nidle--;
    easy = s->idle[s->nidle].easy;
    settings = s->idle[s->nidle].settings;
  } else if ((easy = curl_easy_init()) == NULL) {
    return NULL;
  }
  *reused = plain && settings == s->settings;
  if (!*reused) {
    if (settings != 0)
      curl_easy_reset(easy);
    configure(s, easy, auth);
  }
  link->settings = plain ? s->settings : 0;
  s->drop = drop;
  link->prev = NULL;
  link->next = s->active;
  if (s->active != NULL)
    s->active->prev = link;
  s->active = link;
  s->nactive++;
  return easy;
}

/* Hands a configured easy handle to the multi handle. */
CURLMcode kf_session_start(kf_session *s, CURL *easy)
{
  return curl_multi_add_handle(s->multi, easy);
}

/* Takes a transfer out of the active list only (after fork: its handle is
 * the parent's). */
void kf_session_forget(kf_session *s, kf_link *link)
{
  if (link->prev != NULL)
    link->prev->next = link->next;
  else
    s->active = link->next;
  if (link->next != NULL)
    link->next->prev = link->prev;
  link->prev = link->next = NULL;
  s->nactive--;
}

/* Takes a transfer out of the multi handle and the active list; its easy
 * handle goes back to the idle stack (reset, unless a plain request used
 * it: see kf_session_add) or is freed. */
void kf_session_remove(kf_session *s, kf_link *link, CURL *easy)
{
  curl_multi_remove_handle(s->multi, easy);
  if (!s->closed && s->nidle < KF_IDLE_MAX) {
    if (link->settings == 0)
      curl_easy_reset(easy);
    else
      curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, NULL);   /* the request's, about to go */
    s->idle[s->nidle].easy = easy;
    s->idle[s->nidle].settings = link->settings;
    s->nidle++;
  } else {
    curl_easy_cleanup(easy);
  }
  kf_session_forget(s, link);
}

int kf_session_busy(const kf_session *s)
{
  return s->nactive > 0;
}

/* ---- HTTP/2 GOAWAYs --------------------------------------------------------- */

void kf_session_note_goaway(kf_session *s, long conn, long last_stream)
{
  if (s->ngoaway == KF_GOAWAYS) {
    memmove(s->goaway[0], s->goaway[1], sizeof s->goaway[0] * (KF_GOAWAYS - 1));
    s->ngoaway--;
  }
  s->goaway[s->ngoaway][0] = conn;
  s->goaway[s->ngoaway][1] = last_stream;
  s->ngoaway++;
}

/* Whether a GOAWAY on connection `conn` refused stream `stream_id`. */
int kf_session_goaway_refused(const kf_session *s, long conn, long stream_id)
{
  int i;
  if (stream_id < 0)
    return 0;
  for (i = 0; i < s->ngoaway; i++)
    if (s->goaway[i][0] == conn && stream_id > s->goaway[i][1])
      return 1;
  return 0;
}

/* ---- what curl watches: the socket-action API ------------------------------
 *
 * curl tells the session which sockets to watch (on_socket) and when to call
 * it regardless (on_timer).  The session keeps that list; `drive` polls it
 * with poll(2) (no FD_SETSIZE limit), and an event loop can watch the same
 * list (session:sockets()) or one epoll descriptor that mirrors it
 * (session:pollfd()), which stays the same while curl opens and closes
 * sockets: loops that cache descriptors (cqueues) never see a closed one. */

static double monotonic(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int find_watch(const kf_session *s, curl_socket_t fd)
{
  int i;
  for (i = 0; i < s->nwatch; i++)
    if (s->watch[i].fd == fd)
      return i;
  return -1;
}

#ifdef KF_HAVE_EPOLL
static void mirror_watch(kf_session *s, int op, curl_socket_t fd, int what)
{
  struct epoll_event ev;
  if (s->epfd < 0)
    return;
  memset(&ev, 0, sizeof ev);
  ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
  ev.data.fd = fd;
  /* curl may have closed the socket already: ENOENT/EBADF are expected */
  (void)epoll_ctl(s->epfd, op, fd, &ev);
}
#else
#define mirror_watch(s, op, fd, what) ((void)0)
#define EPOLL_CTL_ADD 1
#define EPOLL_CTL_MOD 3
#define EPOLL_CTL_DEL 2
#endif

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
  kf_session *s = userp;
  int i = find_watch(s, fd);
  (void)easy;
  (void)socketp;
  if (what == CURL_POLL_REMOVE) {
    if (i >= 0) {
      s->watch[i] = s->watch[--s->nwatch];
      mirror_watch(s, EPOLL_CTL_DEL, fd, 0);
    }
    return 0;
  }
  if (i >= 0) {
    s->watch[i].what = what;
    mirror_watch(s, EPOLL_CTL_MOD, fd, what);
    return 0;
  }
  if (s->nwatch == s->capwatch) {
    int cap = s->capwatch ? s->capwatch * 2 : 8;
    kf_watch *grown = realloc(s->watch, (size_t)cap * sizeof *grown);
    if (grown == NULL)
      return -1;   /* curl fails the transfers on this socket */
    s->watch = grown;
    s->capwatch = cap;
  }
  s->watch[s->nwatch].fd = fd;
  s->watch[s->nwatch].what = what;
  s->nwatch++;
  mirror_watch(s, EPOLL_CTL_ADD, fd, what);
  return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
  kf_session *s = userp;
  (void)multi;
  s->timer_ms = timeout_ms;
  if (timeout_ms >= 0)
    s->timer_due = monotonic() + (double)timeout_ms / 1000.0;
  return 0;
}

/* Milliseconds until curl's timer is due (0: now), or -1 when it has none. */
static long timer_left(const kf_session *s)
{
  double left;
  if (s->timer_ms < 0)
    return -1;
  left = (s->timer_due - monotonic()) * 1000.0;
  return left <= 0 ? 0 : (long)left + 1;
}

static void act(lua_State *L, kf_session *s, curl_socket_t fd, int mask)
{
  int running;
  CURLMcode mc = curl_multi_socket_action(s->multi, fd, mask, &running);
  if (mc != CURLM_OK)
    luaL_error(L, "keyfactor.core: %s", curl_multi_strerror(mc));
}

static void act_if_due(lua_State *L, kf_session *s)
{
  if (timer_left(s) == 0) {
    s->timer_ms = -1;   /* curl sets a new one from inside the call */
    act(L, s, CURL_SOCKET_TIMEOUT, 0);
  }
}

/* Waits up to wait_ms for any watched socket, then hands curl each ready one.
 * The poll set is a copy: curl changes the watch list while it acts. */
static int act_on_ready(lua_State *L, kf_session *s, long wait_ms)
{
  struct pollfd local[16], *fds = local;
  int i, n = s->nwatch, ready, events = 0;
  if (n > (int)(sizeof local / sizeof local[0])) {
    fds = malloc((size_t)n * sizeof *fds);
    if (fds == NULL)
      return luaL_error(L, "keyfactor.core: out of memory polling %d sockets", n);
  }
  for (i = 0; i < n; i++) {
    fds[i].fd = s->watch[i].fd;
    fds[i].events = (short)(((s->watch[i].what & CURL_POLL_IN) ? POLLIN : 0) |
                            ((s->watch[i].what & CURL_POLL_OUT) ? POLLOUT : 0));
    fds[i].revents = 0;
  }
  ready = poll(fds, (nfds_t)n, wait_ms > INT_MAX ? INT_MAX : (int)wait_ms);
  for (i = 0; ready > 0 && i < n; i++) {
    int mask = 0;
    if (fds[i].revents == 0)
      continue;
    if (fds[i].revents & (POLLIN | POLLHUP))
      mask |= CURL_CSELECT_IN;
    if (fds[i].revents & POLLOUT)
      mask |= CURL_CSELECT_OUT;
    if (fds[i].revents & (POLLERR | POLLNVAL))
      mask |= CURL_CSELECT_ERR;
    events++;
    act(L, s, fds[i].fd, mask);
  }
  if (fds != local)
    free(fds);
  return events;
}

/* ---- driving the multi handle -------------------------------------------- */

void kf_session_run_timer(lua_State *L, kf_session *s)
{
  act_if_due(L, s);
}

/* Waits up to wait_ms (less when curl's timer is due sooner) for a watched
 * socket, hands curl the ready ones, then runs the timer if due.  Returns
 * how many sockets were ready. */
int kf_session_pump(lua_State *L, kf_session *s, long wait_ms)
{
  int events;
  long due = timer_left(s);
  if (due >= 0 && due < wait_ms)
    wait_ms = due;
  events = act_on_ready(L, s, wait_ms);
  act_if_due(L, s);
  return events;
}

/* The easy handle of the next finished transfer, and its result; NULL when
 * none is left to report. */
CURL *kf_session_finished(kf_session *s, CURLcode *result)
{
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(s->multi, &left)) != NULL) {
    if (msg->msg == CURLMSG_DONE) {
      *result = msg->data.result;
      return msg->easy_handle;
    }
  }
  return NULL;
}

/* session:timeout() -> seconds until curl wants to be driven again (0:
 * now), or nil when it has no timer.  For host event loops. */
static int session_timeout(lua_State *L)
{
  kf_session *s = kf_check_session(L, 1);
  long ms = timer_left(s);
  if (ms < 0)
    lua_pushnil(L);
  else
    lua_pushnumber(L, (lua_Number)ms / 1000.0);
  return 1;
}

/* session:sockets() -> array of {fd, "r"|"w"|"rw"}: what curl watches now,
 * for event loops that watch descriptors themselves (then step(0)). */
static int session_sockets(lua_State *L)
{
  kf_session *s = kf_check_session(L, 1);
  int i;
  lua_createtable(L, s->nwatch, 0);
  for (i = 0; i < s->nwatch; i++) {
    int what = s->watch[i].what;
    lua_createtable(L, 2, 0);
    lua_pushinteger(L, s->watch[i].fd);
    lua_rawseti(L, -2, 1);
    lua_pushstring(L, what == CURL_POLL_INOUT ? "rw" : what == CURL_POLL_OUT ? "w" : "r");
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* session:pollfd() -> fd | nil: one descriptor that is readable whenever a
 * socket curl watches is ready (an epoll set, Linux), the same for the
 * session's whole life; nil where there is none (use sockets()). */
static int session_pollfd(lua_State *L)
{
  kf_session *s = kf_check_session(L, 1);
#ifdef KF_HAVE_EPOLL
  if (s->epfd < 0) {
    int i;
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s->epfd < 0)
      return luaL_error(L, "keyfactor.core: epoll_create1: %s", strerror(errno));
    for (i = 0; i < s->nwatch; i++)
      mirror_watch(s, EPOLL_CTL_ADD, s->watch[i].fd, s->watch[i].what);
  }
  lua_pushinteger(L, s->epfd);
#else
  (void)s;
  lua_pushnil(L);
#endif
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
  settings_changed(L, s);
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
  double max_body = kf_opt_range(L, t, "max_body", (double)KF_DEFAULT_MAX_BODY, 1, KF_MAX_BODY_LIMIT);
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
  kf_session_forked(L, s);   /* never raises: this runs in __gc */
  if (s->closed)
    return;
  while (s->active != NULL)
    s->drop(L, s->active, 0);
  s->closed = 1;
  free(s->watch);
  s->watch = NULL;
  s->nwatch = s->capwatch = 0;
  if (s->epfd >= 0)
    close(s->epfd);
  s->epfd = -1;
  while (s->nidle > 0)
    curl_easy_cleanup(s->idle[--s->nidle].easy);
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
  free(s->unsafe);
  s->unsafe = NULL;
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

/* session:stats() -> {active = n, idle = n, sockets = n, closed = b} */
static int session_stats(lua_State *L)
{
  kf_session *s = luaL_checkudata(L, 1, KF_SESSION_MT);
  kf_session_forked(L, s);
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, s->nwatch);
  lua_setfield(L, -2, "sockets");
  lua_pushinteger(L, s->nactive);
  lua_setfield(L, -2, "active");
  lua_pushinteger(L, s->nidle);
  lua_setfield(L, -2, "idle");
  lua_pushboolean(L, s->closed);
  lua_setfield(L, -2, "closed");
  return 1;
}

/* session:closed() -> boolean (never raises, unlike the other methods) */
static int session_closed(lua_State *L)
{
  kf_session *s = luaL_checkudata(L, 1, KF_SESSION_MT);
  lua_pushboolean(L, s->closed);
  return 1;
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
  s->epfd = -1;
  s->timer_ms = -1;
  s->closed = 1; /* until the handles exist, __gc has nothing to free */
  luaL_getmetatable(L, KF_SESSION_MT);
  lua_setmetatable(L, -2);
  if (make_handles(s) != 0)
    return luaL_error(L, "keyfactor.core: out of memory creating curl handles");
  s->timeout_ms = 60000;
  s->connect_timeout_ms = 10000;
  s->max_body = KF_DEFAULT_MAX_BODY;
  s->http2 = 1;
  if (t)
    read_settings(L, s, 1);
  settings_changed(L, s);
  return 1;
}

/* A multi handle that reports its sockets and timer to `s`, and a share
 * handle for DNS and TLS sessions; owned by this process. */
static int make_handles(kf_session *s)
{
  static int counting;
  if (!counting)   /* once per process image; glibc drops it if the module is unloaded */
    counting = pthread_atfork(NULL, NULL, count_fork) == 0;
  s->multi = curl_multi_init();
  s->share = curl_share_init();
  s->forks = forks;
  s->orphan = 0;
  s->closed = 0;
  if (s->multi == NULL || s->share == NULL)
    return -1;
  curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  curl_multi_setopt(s->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  curl_multi_setopt(s->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(s->multi, CURLMOPT_SOCKETDATA, (void *)s);
  curl_multi_setopt(s->multi, CURLMOPT_TIMERFUNCTION, on_timer);
  curl_multi_setopt(s->multi, CURLMOPT_TIMERDATA, (void *)s);
  return 0;
}

static int session_gc(lua_State *L)
{
  session_release(L, luaL_checkudata(L, 1, KF_SESSION_MT));
  return 0;
}

/* The session class (request.c adds start, wait and step); the constructor
 * is pushed for core.session. */
int kf_open_session(lua_State *L)
{
  static const luaL_Reg methods[] = {
    {"timeout", session_timeout},
    {"sockets", session_sockets},
    {"pollfd", session_pollfd},
    {"set_credentials", session_set_credentials},
    {"stats", session_stats},
    {"closed", session_closed},
    {"close", session_close},
    {NULL, NULL}
  };
  static const luaL_Reg meta[] = {
    {"__gc", session_gc},
    {"__close", session_gc},
    {"__tostring", session_tostring},
    {NULL, NULL}
  };
  kf_new_class(L, KF_SESSION_MT, meta, methods);
  lua_pop(L, 1);
  lua_pushcfunction(L, session_new);
  return 1;
}
