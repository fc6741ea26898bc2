/*
 * keyfactor.core — private declarations shared by the C files of the core.
 *
 * The core is the libcurl transport: a session (multi handle, share handle,
 * idle easy handles, TLS and timeout settings, credentials) and requests
 * (one easy handle each while in flight, with their header and body
 * buffers); plus the decoder for answer bodies, the client's hottest path.
 * Validation, request encoding (cjson) and the API mapping live in Lua.
 */
#ifndef KFCORE_H
#define KFCORE_H

#include <stddef.h>
#include <sys/types.h>

#include <curl/curl.h>

#include "lua.h"
#include "lauxlib.h"

#include "compat.h"

#define KF_SESSION_MT "keyfactor.session"
#define KF_REQUEST_MT "keyfactor.request"

/* GOAWAYs a session remembers, to tell refused streams (request.c). */
#define KF_GOAWAYS 16

/* Idle easy handles kept per session for reuse; more are simply freed. */
#define KF_IDLE_MAX 64

/* Default cap on a response body, and the largest that may be set. */
#define KF_DEFAULT_MAX_BODY ((size_t)64 * 1024 * 1024)
#define KF_MAX_BODY_LIMIT 4294967295.0


/* ---- buffer.c: a growable byte buffer with a hard maximum ---------------- */

typedef struct kf_buffer {
  char *data;
  size_t len;
  size_t cap;
  size_t max;     /* appends beyond this fail and set overflow */
  int overflow;
} kf_buffer;

void kf_buffer_init(kf_buffer *b, size_t max);
int kf_buffer_append(kf_buffer *b, const char *data, size_t n);
void kf_buffer_clear(kf_buffer *b);
void kf_buffer_free(kf_buffer *b);

/* ---- session.c ----------------------------------------------------------- */

typedef struct kf_request kf_request;

/* A socket curl asked to watch (CURLMOPT_SOCKETFUNCTION), and for what:
 * CURL_POLL_IN, CURL_POLL_OUT or CURL_POLL_INOUT. */
typedef struct kf_watch {
  curl_socket_t fd;
  int what;
} kf_watch;

typedef struct kf_session {
  CURLM *multi;
  CURLSH *share;
  kf_request *active;           /* in-flight requests, a doubly linked list */
  int nactive;
  CURL *idle[KF_IDLE_MAX];
  int nidle;
  /* what curl wants watched: its sockets, and when to call it anyway */
  kf_watch *watch;
  int nwatch;
  int capwatch;
  long timer_ms;                /* -1: no timer; else due at timer_due */
  double timer_due;             /* monotonic seconds */
  int epfd;                     /* epoll set mirroring `watch`, made on demand; -1 */
  pid_t pid;                    /* the process that made the handles */
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
} kf_session;

kf_session *kf_check_session(lua_State *L, int idx);
void kf_session_check_fork(lua_State *L, kf_session *s);
long kf_check_ms(lua_State *L, int idx, double dflt);
CURL *kf_session_acquire_easy(kf_session *s);
void kf_session_release_easy(kf_session *s, CURL *easy);
void kf_session_link(kf_session *s, kf_request *r);
void kf_session_unlink(kf_session *s, kf_request *r);
int kf_session_drive(lua_State *L, kf_session *s, long timeout_ms, int collect, int *events);
int kf_open_session(lua_State *L);

/* ---- request.c ----------------------------------------------------------- */

typedef enum kf_request_state {
  KF_REQUEST_RUNNING,
  KF_REQUEST_DONE,
  KF_REQUEST_CANCELED
} kf_request_state;

struct kf_request {
  kf_session *session;          /* NULL once detached from its session */
  kf_request *prev;
  kf_request *next;
  CURL *easy;
  struct curl_slist *headers;   /* own list, only when the spec adds headers */
  kf_buffer body;
  kf_buffer head;
  kf_request_state state;
  int taken;                    /* result() has handed the body over */
  int attempts;                 /* times libcurl was about to send it */
  int replay_blocked;           /* libcurl wanted to send it again: refused */
  int header_lines;
  CURLcode code;
  long status;
  long request_size;            /* bytes of request sent: 0 = never reached */
  int refused;                  /* the server refused the HTTP/2 stream */
  long conn;                    /* curl's number of the connection in use */
  long stream_conn;             /* the first attempt's connection and */
  long stream_id;               /* HTTP/2 stream id, or -1 */
  double total_time;
  int self_ref;                 /* registry ref keeping it alive in flight */
  int body_ref;                 /* registry ref to the request body string */
  const char *upload;           /* the request body, read by on_upload */
  size_t upload_len;
  size_t upload_pos;
  char errbuf[CURL_ERROR_SIZE];
};

int kf_request_start(lua_State *L, kf_session *s, int spec);
void kf_request_finish(lua_State *L, kf_request *r, CURLcode code);
void kf_request_detach(lua_State *L, kf_request *r);
void kf_request_abandon(lua_State *L, kf_request *r);
kf_request *kf_check_request(lua_State *L, int idx);
int kf_open_request(lua_State *L);

/* ---- json.c: answer bodies to Lua values ---------------------------------- */

int kf_decode_json(lua_State *L);
/* json_encode.c: request bodies; KF_ARRAY_MT marks a table as an array */
#define KF_ARRAY_MT "keyfactor.array"
int kf_encode_json(lua_State *L);
int kf_json_array(lua_State *L);
void kf_push_array_mt(lua_State *L);
int kf_new_vault(lua_State *L);     /* vault.c: secrets out of Lua's reach */

/* ---- options.c: reading option tables ------------------------------------ */

const char *kf_opt_string(lua_State *L, int t, const char *field, const char *dflt);
double kf_opt_number(lua_State *L, int t, const char *field, double dflt);
#define KF_MAX_SECONDS 86400.0   /* longest timeout accepted (a day) */
double kf_opt_range(lua_State *L, int t, const char *field, double dflt, double min, double max);
long kf_seconds_to_ms(double seconds);
int kf_opt_boolean(lua_State *L, int t, const char *field, int dflt);
struct curl_slist *kf_opt_slist(lua_State *L, int t, const char *field);
int kf_header_value_ok(const char *value);
int kf_token_ok(const char *s, size_t len);
int kf_header_line_ok(const char *line);
int kf_check_request_headers(lua_State *L, const kf_session *s, const char *method,
                             const struct curl_slist *headers);
char *kf_strdup(const char *s);
void kf_free_secret(char **p);

#endif
