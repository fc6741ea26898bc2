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

/* ---- class.c --------------------------------------------------------------- */

/* Registers the metatable `name` (once): the metamethods `meta` and
 * `methods` as its __index table (either may be NULL).  Leaves it on the
 * stack. */
void kf_new_class(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods);
/* Adds `methods` to the __index table of the registered class `name`. */
void kf_class_methods(lua_State *L, const char *name, const luaL_Reg *methods);

/* ---- session.c: the pool, its settings, and driving curl -----------------
 *
 * The session owns its state; request.c reaches it only through these
 * functions, and session.c never calls into request.c: it knows a transfer
 * as a link in its active list, and drops one through the callback given
 * with it (when it is closed, or finds itself in a forked child). */

/* A transfer in a session's active list (embedded in a request). */
typedef struct kf_link {
  struct kf_link *prev;
  struct kf_link *next;
  unsigned long settings;       /* the session's: see kf_session_add */
} kf_link;

/* Drops a transfer the session can no longer run: `abandon` 0 when the
 * session is closed (cancel it), 1 after fork (leave the parent's handles
 * alone).  Unlinks it (kf_session_remove or kf_session_forget). */
typedef void (*kf_drop_fn)(lua_State *L, kf_link *link, int abandon);

typedef struct kf_session kf_session;

kf_session *kf_check_session(lua_State *L, int idx);
void kf_session_check_fork(lua_State *L, kf_session *s);
int kf_session_forked(lua_State *L, kf_session *s);
long kf_check_ms(lua_State *L, int idx, double dflt);
/* settings, for a request */
long kf_session_timeout_ms(const kf_session *s);
long kf_session_connect_timeout_ms(const kf_session *s);
size_t kf_session_max_body(const kf_session *s);
int kf_session_http2(const kf_session *s);
const struct curl_slist *kf_session_headers(const kf_session *s);
struct curl_slist *kf_session_merge_headers(const kf_session *s, struct curl_slist *extra);
int kf_session_check_headers(lua_State *L, const kf_session *s, const char *method,
                             const struct curl_slist *extra);
/* transfers: an easy handle from the pool with the session's settings (and,
 * with `auth`, its credentials); `plain`: a bodyless GET with the session's
 * credentials, which may get a handle an earlier plain one left configured
 * (no reset, no options set again: the common call's fast path), and then
 * sets *reused */
CURL *kf_session_add(kf_session *s, kf_link *link, kf_drop_fn drop, int auth, int plain, int *reused);
CURLMcode kf_session_start(kf_session *s, CURL *easy);
void kf_session_remove(kf_session *s, kf_link *link, CURL *easy);
void kf_session_forget(kf_session *s, kf_link *link);
int kf_session_busy(const kf_session *s);
/* HTTP/2 GOAWAYs (connection number, last stream id) */
void kf_session_note_goaway(kf_session *s, long conn, long last_stream);
int kf_session_goaway_refused(const kf_session *s, long conn, long stream_id);
/* driving: run curl's timer if due; wait up to wait_ms for a socket and
 * hand curl the ready ones (returns how many); the next finished transfer */
void kf_session_run_timer(lua_State *L, kf_session *s);
int kf_session_pump(lua_State *L, kf_session *s, long wait_ms);
CURL *kf_session_finished(kf_session *s, CURLcode *result);
int kf_open_session(lua_State *L);

/* ---- request.c: transfers (session:start, wait, step; request:result) ---- */

typedef enum kf_request_state {
  KF_REQUEST_RUNNING,
  KF_REQUEST_DONE,
  KF_REQUEST_CANCELED
} kf_request_state;

typedef struct kf_request {
  kf_link link;                 /* first: in the session's active list */
  kf_session *session;          /* NULL once detached from its session */
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
} kf_request;

kf_request *kf_check_request(lua_State *L, int idx);
int kf_open_request(lua_State *L);

/* ---- json.c: answer bodies to Lua values ---------------------------------- */

int kf_decode_json(lua_State *L);
int kf_decode_json_text(lua_State *L, const char *text, size_t len);
/* json_encode.c: request bodies; KF_ARRAY_MT marks a table as an array */
#define KF_ARRAY_MT "keyfactor.array"
int kf_encode_json(lua_State *L);
int kf_json_array(lua_State *L);
void kf_push_array_mt(lua_State *L);
int kf_new_vault(lua_State *L);     /* vault.c: secrets out of Lua's reach */

/* ---- options.c: reading option tables ------------------------------------ */

#define KF_MAX_SECONDS 86400.0   /* longest timeout accepted (a day) */
/* a field of the option table at t */
const char *kf_opt_string(lua_State *L, int t, const char *field, const char *dflt);
double kf_opt_range(lua_State *L, int t, const char *field, double dflt, double min, double max);
int kf_opt_boolean(lua_State *L, int t, const char *field, int dflt);
struct curl_slist *kf_opt_slist(lua_State *L, int t, const char *field);
/* the fields `names` of the table at t pushed in one pass (nil when absent),
 * then each read from the stack, `field` naming it in errors */
void kf_gather(lua_State *L, int t, const char *const names[], int n);
const char *kf_value_string(lua_State *L, int idx, const char *field, const char *dflt);
double kf_value_range(lua_State *L, int idx, const char *field, double dflt, double min, double max);
int kf_value_boolean(lua_State *L, int idx, const char *field, int dflt);
struct curl_slist *kf_value_slist(lua_State *L, int idx, const char *field);
long kf_seconds_to_ms(double seconds);
int kf_header_value_ok(const char *value);
int kf_token_ok(const char *s, size_t len);
int kf_header_line_ok(const char *line);
int kf_check_request_headers(lua_State *L, const char *method, const struct curl_slist *headers,
                             const char *user_agent, const char *bearer);
char *kf_strdup(const char *s);
void kf_free_secret(char **p);

#endif
