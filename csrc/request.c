/*
 * keyfactor.request: one HTTP transfer on a session's multi handle.
 *
 * session:start(spec) configures an easy handle and adds it to the multi
 * handle; the request is then driven by session:wait or session:step and
 * read with request:result().  While in flight a request is anchored in the
 * registry, so dropping the Lua reference never frees a handle curl still
 * uses; closing the session detaches (cancels) it instead.
 *
 * spec fields: method, url (required); headers (array of "Name: value",
 * added to the session's headers for this request, replacing any of the
 * same name); body (string); timeout, connect_timeout (seconds, override
 * the session); auth (boolean, default true: send the session's credentials);
 * userpwd ("user:password" for this request only, e.g. OAuth client
 * credentials).
 *
 * A POST is never sent twice behind the caller's back: libcurl resends a
 * request by itself when a reused keep-alive connection turns out to have
 * been closed before any answer, which could run a POST twice.  The body is
 * That resend happens before any answer byte arrived, for bodies and
 * bodyless requests alike, so a read callback that cannot rewind is not
 * enough.  The pre-request callback counts the times libcurl is about to
 * send the request: the second time it refuses, and the request fails with
 * `replayed` set.  The client then decides (keyfactor.outcome): an
 * idempotent call is sent again at once; a POST is not, except when the
 * server refused its HTTP/2 stream: with REFUSED_STREAM, or by a GOAWAY
 * whose last stream id is below the stream's (RFC 9113 §6.8, §8.7: such a
 * request was not processed).  libcurl says so only in its verbose text, so
 * non-idempotent requests over HTTP/2 read that text (on_debug); should the
 * words change, the request counts as sent: never retried.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "kfcore.h"

/* Response headers are small; these cap a server that sends endless ones. */
#define KF_MAX_HEADER_BYTES ((size_t)256 * 1024)
#define KF_MAX_HEADER_LINES 500

kf_request *kf_check_request(lua_State *L, int idx)
{
  return luaL_checkudata(L, idx, KF_REQUEST_MT);
}

/* ---- curl callbacks ------------------------------------------------------- */

static size_t on_upload(char *data, size_t size, size_t nmemb, void *ud)
{
  kf_request *r = ud;
  size_t n = size * nmemb, left = r->upload_len - r->upload_pos;
  if (n > left)
    n = left;
  memcpy(data, r->upload + r->upload_pos, n);
  r->upload_pos += n;
  return n;
}

/* The body lives in memory: rewinding is always possible (a replay is
 * refused by on_prereq, not by a failed rewind). */
static int on_seek(void *ud, curl_off_t offset, int origin)
{
  kf_request *r = ud;
  if (origin != SEEK_SET || offset < 0 || (curl_off_t)r->upload_len < offset)
    return CURL_SEEKFUNC_CANTSEEK;
  r->upload_pos = (size_t)offset;
  return CURL_SEEKFUNC_OK;
}

/* The number after `key` in text[0..n), or -1. */
static long number_after(const char *text, size_t n, const char *key)
{
  size_t k = strlen(key), i;
  long v = -1;
  for (i = 0; i + k <= n; i++) {
    if (memcmp(text + i, key, k) == 0) {
      for (i += k, v = 0; i < n && isdigit((unsigned char)text[i]) && v < 0x7fffffffL; i++)
        v = v * 10 + (text[i] - '0');
      return v;
    }
  }
  return -1;
}

/* Follows libcurl's verbose text for what it does not report otherwise:
 * the connection and HTTP/2 stream a request went out on, GOAWAYs, and
 * refused streams. */
static int on_debug(CURL *easy, curl_infotype type, char *text, size_t n, void *ud)
{
  kf_request *r = ud;
  long v;
  (void)easy;
  if (type != CURLINFO_TEXT)
    return 0;
  if ((v = number_after(text, n, "(#")) >= 0 || (v = number_after(text, n, "existing connection #")) >= 0)
    r->conn = v;
  else if ((v = number_after(text, n, "Using Stream ID: ")) >= 0 && r->stream_id < 0) {
    r->stream_conn = r->conn;
    r->stream_id = v;
  } else if ((v = number_after(text, n, "last_stream=")) >= 0 && r->session != NULL)
    kf_session_note_goaway(r->session, r->conn, v);
  else if (n >= 14 && memcmp(text, "REFUSED_STREAM", 14) == 0)
    r->refused = 1;
  return 0;
}

static int on_prereq(void *ud, char *primary_ip, char *local_ip, int primary_port, int local_port)
{
  kf_request *r = ud;
  (void)primary_ip;
  (void)local_ip;
  (void)primary_port;
  (void)local_port;
  if (++r->attempts > 1) {
    r->replay_blocked = 1;
    return CURL_PREREQFUNC_ABORT;
  }
  return CURL_PREREQFUNC_OK;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
  kf_request *r = ud;
  size_t n = size * nmemb;
  return kf_buffer_append(&r->body, data, n) ? n : 0;
}

/* Keeps only the last response's header block (a 100 Continue or an
 * interim response starts over at its status line). */
static size_t on_header(char *data, size_t size, size_t nmemb, void *ud)
{
  kf_request *r = ud;
  size_t n = size * nmemb;
  if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
    kf_buffer_clear(&r->head);
    r->header_lines = 0;
  }
  if (++r->header_lines > KF_MAX_HEADER_LINES) {
    r->head.overflow = 1;
    return 0;
  }
  return kf_buffer_append(&r->head, data, n) ? n : 0;
}

/* ---- configuring an easy handle ------------------------------------------ */

static void apply_method(kf_request *r, const char *method, const char *body, size_t len)
{
  CURL *easy = r->easy;
  if (strcmp(method, "GET") == 0 && body == NULL) {
    curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
    return;
  }
  if (strcmp(method, "HEAD") == 0) {
    curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
    return;
  }
  if (body != NULL || strcmp(method, "POST") == 0) {
    r->upload = body != NULL ? body : "";
    r->upload_len = len;
    r->upload_pos = 0;
    curl_easy_setopt(easy, CURLOPT_POST, 1L);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(easy, CURLOPT_READFUNCTION, on_upload);
    curl_easy_setopt(easy, CURLOPT_READDATA, (void *)r);
    curl_easy_setopt(easy, CURLOPT_SEEKFUNCTION, on_seek);
    curl_easy_setopt(easy, CURLOPT_SEEKDATA, (void *)r);
  }
  if (strcmp(method, "POST") != 0)
    curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method);
  if (kf_session_http2(r->session) && strcmp(method, "PUT") != 0 && strcmp(method, "DELETE") != 0) {
    curl_easy_setopt(easy, CURLOPT_DEBUGFUNCTION, on_debug);
    curl_easy_setopt(easy, CURLOPT_DEBUGDATA, (void *)r);
    curl_easy_setopt(easy, CURLOPT_VERBOSE, 1L);
  }
}

/* ---- lifecycle ------------------------------------------------------------ */

static void release_refs(lua_State *L, kf_request *r)
{
  luaL_unref(L, LUA_REGISTRYINDEX, r->body_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, r->self_ref);
  r->body_ref = LUA_NOREF;
  r->self_ref = LUA_NOREF;
}

/* Takes the easy handle out of the multi handle and back to the pool. */
static void release_easy(kf_request *r)
{
  kf_session *s = r->session;
  if (r->easy == NULL)
    return;
  if (s != NULL) {
    kf_session_remove(s, &r->link, r->easy);
  } else {
    curl_easy_cleanup(r->easy);
  }
  r->easy = NULL;
  r->session = NULL;
  curl_slist_free_all(r->headers);
  r->headers = NULL;
}

/* What curl knows of the transfer, kept for result() after the handle went
 * back to the pool. */
static void record_progress(kf_request *r)
{
  long size = 0;
  curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
  curl_easy_getinfo(r->easy, CURLINFO_REQUEST_SIZE, &size);
  curl_easy_getinfo(r->easy, CURLINFO_TOTAL_TIME, &r->total_time);
  r->request_size = size;
}

static void finish(lua_State *L, kf_request *r, CURLcode code)
{
  r->code = code;
  record_progress(r);
  if (code != CURLE_OK && r->session != NULL
      && kf_session_goaway_refused(r->session, r->stream_conn, r->stream_id))
    r->refused = 1;
  r->state = KF_REQUEST_DONE;
  release_easy(r);
  release_refs(L, r);
}

static void detach(lua_State *L, kf_request *r)
{
  if (r->session != NULL)
    kf_session_forked(L, r->session);   /* may abandon r instead; never raises */
  if (r->state == KF_REQUEST_RUNNING) {
    if (r->easy != NULL)
      record_progress(r);
    r->state = KF_REQUEST_CANCELED;
  }
  release_easy(r);
  release_refs(L, r);
}

/* After fork(): the request is canceled, and its easy handle, which the
 * parent's multi handle still holds, is left alone. */
static void abandon(lua_State *L, kf_request *r)
{
  if (r->state == KF_REQUEST_RUNNING)
    r->state = KF_REQUEST_CANCELED;
  if (r->session != NULL)
    kf_session_forget(r->session, &r->link);
  r->easy = NULL;
  r->session = NULL;
  curl_slist_free_all(r->headers);
  r->headers = NULL;
  release_refs(L, r);
}

/* How the session drops a request it can no longer run (kf_drop_fn). */
static void drop(lua_State *L, kf_link *link, int abandoned)
{
  kf_request *r = (kf_request *)(void *)link;   /* the link is its first member */
  if (abandoned)
    abandon(L, r);
  else
    detach(L, r);
}

/* The spec's fields, gathered onto the stack in this order (kf_gather). */
static const char *const SPEC_FIELDS[] = {
  "method", "url", "userpwd", "timeout", "connect_timeout", "auth", "body", "headers"
};
enum { SPEC_METHOD = 1, SPEC_URL, SPEC_USERPWD, SPEC_TIMEOUT, SPEC_CONNECT_TIMEOUT, SPEC_AUTH, SPEC_BODY,
       SPEC_HEADERS, SPEC_COUNT = SPEC_HEADERS };

static int start(lua_State *L, kf_session *s, int spec)
{
  int base = lua_gettop(L);
  const char *method, *url, *userpwd, *body;
  double timeout, connect_timeout;
  int auth, reused;
  size_t body_len = 0;
  kf_request *r;
  CURLMcode mc;

  kf_gather(L, spec, SPEC_FIELDS, SPEC_COUNT);   /* stays on the stack: the strings are anchored */
  method = kf_value_string(L, base + SPEC_METHOD, "method", NULL);
  url = kf_value_string(L, base + SPEC_URL, "url", NULL);
  userpwd = kf_value_string(L, base + SPEC_USERPWD, "userpwd", NULL);
  timeout = kf_value_range(L, base + SPEC_TIMEOUT, "timeout",
                           (double)kf_session_timeout_ms(s) / 1000.0, 0, KF_MAX_SECONDS);
  connect_timeout = kf_value_range(L, base + SPEC_CONNECT_TIMEOUT, "connect_timeout",
                                   (double)kf_session_connect_timeout_ms(s) / 1000.0, 0, KF_MAX_SECONDS);
  auth = kf_value_boolean(L, base + SPEC_AUTH, "auth", 1);
  if (method == NULL || url == NULL)
    return luaL_error(L, "request fields 'method' and 'url' are required");
  if (!lua_isnil(L, base + SPEC_BODY) && lua_type(L, base + SPEC_BODY) != LUA_TSTRING)
    return luaL_error(L, "request field 'body' must be a string");
  body = lua_tolstring(L, base + SPEC_BODY, &body_len);

  r = lua_newuserdata(L, sizeof *r);
  memset(r, 0, sizeof *r);
  r->self_ref = r->body_ref = LUA_NOREF;
  r->conn = r->stream_conn = r->stream_id = -1;
  r->state = KF_REQUEST_CANCELED;   /* until fully started, gc has no work */
  kf_buffer_init(&r->body, kf_session_max_body(s));
  kf_buffer_init(&r->head, KF_MAX_HEADER_BYTES);
  luaL_getmetatable(L, KF_REQUEST_MT);
  lua_setmetatable(L, -2);

  {
    struct curl_slist *extra = kf_value_slist(L, base + SPEC_HEADERS, "headers");
    if (!kf_session_check_headers(L, s, method, extra)) {
      curl_slist_free_all(extra);   /* no easy handle yet: gc would not free it */
      return lua_error(L);
    }
    if (extra != NULL && (r->headers = kf_session_merge_headers(s, extra)) == NULL)
      return luaL_error(L, "keyfactor.core: out of memory building the headers");
  }
  r->easy = kf_session_add(s, &r->link, drop, auth && userpwd == NULL,
                           auth && userpwd == NULL && body == NULL && strcmp(method, "GET") == 0, &reused);
  if (r->easy == NULL)
    return luaL_error(L, "keyfactor.core: out of memory creating a curl handle");
  r->session = s;
  r->state = KF_REQUEST_RUNNING;

  curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, kf_seconds_to_ms(timeout));
  curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, kf_seconds_to_ms(connect_timeout));
  if (userpwd != NULL) {
    curl_easy_setopt(r->easy, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
    curl_easy_setopt(r->easy, CURLOPT_USERPWD, userpwd);  /* curl copies it */
  }
  curl_easy_setopt(r->easy, CURLOPT_URL, url);
  curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER,
                   r->headers != NULL ? r->headers : kf_session_headers(s));
  curl_easy_setopt(r->easy, CURLOPT_PRIVATE, (char *)r);
  curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf);
  curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, (void *)r);
  curl_easy_setopt(r->easy, CURLOPT_HEADERDATA, (void *)r);
  curl_easy_setopt(r->easy, CURLOPT_PREREQDATA, (void *)r);
  if (!reused) {   /* a reused handle has these from the plain GET before */
    curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(r->easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(r->easy, CURLOPT_PREREQFUNCTION, on_prereq);
    apply_method(r, method, body, body_len);
  }

  /* curl reads the body in place (no copy): keep the string alive. */
  lua_pushvalue(L, base + SPEC_BODY);
  r->body_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, -1);
  r->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  mc = kf_session_start(s, r->easy);
  if (mc != CURLM_OK) {
    detach(L, r);
    return luaL_error(L, "keyfactor.core: %s", curl_multi_strerror(mc));
  }
  return 1;
}

/* ---- session:start, wait, step ---------------------------------------------- */

/* Finishes every transfer curl reports done; with `collect`, appends them
 * to the table on the top of the stack.  Returns how many finished. */
static int collect_finished(lua_State *L, kf_session *s, int collect)
{
  CURL *easy;
  CURLcode result;
  int n = 0;
  while ((easy = kf_session_finished(s, &result)) != NULL) {
    kf_request *r = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
    if (r == NULL)
      continue;
    if (collect) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, r->self_ref);
      lua_rawseti(L, -2, (int)lua_rawlen(L, -2) + 1);
    }
    finish(L, r, result);
    n++;
  }
  return n;
}

/* One round of work: run curl's timer if due, wait up to timeout_ms for a
 * socket (not at all if something already finished), hand curl what is
 * ready.  With `collect`, leaves a table of the finished requests on the
 * stack.  Returns how many finished; *events counts the ready sockets. */
static int drive(lua_State *L, kf_session *s, long timeout_ms, int collect, int *events)
{
  int n;
  if (collect)
    lua_newtable(L);
  kf_session_run_timer(L, s);
  n = collect_finished(L, s, collect);
  *events = kf_session_pump(L, s, n > 0 || !kf_session_busy(s) ? 0 : timeout_ms);
  return n + collect_finished(L, s, collect);
}

/* session:start(spec) -> request; see the top of this file for the spec. */
static int session_start(lua_State *L)
{
  kf_session *s = kf_check_session(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  return start(L, s, 2);
}

/* session:step([timeout]) -> finished, events
 * `finished`: array of the requests that finished (maybe empty); `events`:
 * how many sockets were ready (progress, for adaptive polling).  The
 * timeout (seconds, default 1) bounds the wait for network activity. */
static int session_step(lua_State *L)
{
  kf_session *s = kf_check_session(L, 1);
  long ms = kf_check_ms(L, 2, 1.0);
  int events;
  drive(L, s, ms, 1, &events);
  lua_pushinteger(L, events);
  return 2;
}

/* session:wait(request): drives the session until that request is done.
 * Other transfers in flight progress meanwhile. */
static int session_wait(lua_State *L)
{
  kf_session *s = kf_check_session(L, 1);
  kf_request *r = kf_check_request(L, 2);
  int events;
  luaL_argcheck(L, r->session == s || r->state != KF_REQUEST_RUNNING, 2,
                "request belongs to another session");
  while (r->state == KF_REQUEST_RUNNING)
    drive(L, s, 1000, 0, &events);
  return 0;
}

/* ---- results -------------------------------------------------------------- */

/* curl's name for a result code, for the failure record; NULL for one
 * this list does not know (the record then names its number). */
static const char *code_name(CURLcode code)
{
  switch (code) {
#define KF_CODE(name) case name: return #name;
  KF_CODE(CURLE_UNSUPPORTED_PROTOCOL)
  KF_CODE(CURLE_URL_MALFORMAT)
  KF_CODE(CURLE_COULDNT_RESOLVE_PROXY)
  KF_CODE(CURLE_COULDNT_RESOLVE_HOST)
  KF_CODE(CURLE_COULDNT_CONNECT)
  KF_CODE(CURLE_WEIRD_SERVER_REPLY)
  KF_CODE(CURLE_HTTP2)
  KF_CODE(CURLE_PARTIAL_FILE)
  KF_CODE(CURLE_WRITE_ERROR)
  KF_CODE(CURLE_READ_ERROR)
  KF_CODE(CURLE_OUT_OF_MEMORY)
  KF_CODE(CURLE_OPERATION_TIMEDOUT)
  KF_CODE(CURLE_RANGE_ERROR)
  KF_CODE(CURLE_SSL_CONNECT_ERROR)
  KF_CODE(CURLE_ABORTED_BY_CALLBACK)
  KF_CODE(CURLE_BAD_FUNCTION_ARGUMENT)
  KF_CODE(CURLE_INTERFACE_FAILED)
  KF_CODE(CURLE_TOO_MANY_REDIRECTS)
  KF_CODE(CURLE_GOT_NOTHING)
  KF_CODE(CURLE_SSL_ENGINE_NOTFOUND)
  KF_CODE(CURLE_SEND_ERROR)
  KF_CODE(CURLE_RECV_ERROR)
  KF_CODE(CURLE_SSL_CERTPROBLEM)
  KF_CODE(CURLE_SSL_CIPHER)
  KF_CODE(CURLE_PEER_FAILED_VERIFICATION)
  KF_CODE(CURLE_BAD_CONTENT_ENCODING)
  KF_CODE(CURLE_FILESIZE_EXCEEDED)
  KF_CODE(CURLE_SEND_FAIL_REWIND)
  KF_CODE(CURLE_SSL_CACERT_BADFILE)
  KF_CODE(CURLE_SSL_SHUTDOWN_FAILED)
  KF_CODE(CURLE_AGAIN)
  KF_CODE(CURLE_SSL_CRL_BADFILE)
  KF_CODE(CURLE_SSL_ISSUER_ERROR)
  KF_CODE(CURLE_SSL_PINNEDPUBKEYNOTMATCH)
  KF_CODE(CURLE_SSL_INVALIDCERTSTATUS)
  KF_CODE(CURLE_HTTP2_STREAM)
  KF_CODE(CURLE_PROXY)
  KF_CODE(CURLE_SSL_CLIENTCERT)
#undef KF_CODE
  default:
    return NULL;
  }
}

/* Which limit a failed transfer ran into, if any: NULL, "body", "headers".
 * curl reports its own limit on one header line (100 KiB) as out of memory. */
static const char *limit_hit(const kf_request *r)
{
  if (r->body.overflow || r->code == CURLE_FILESIZE_EXCEEDED)
    return "body";
  if (r->head.overflow || r->code == CURLE_OUT_OF_MEMORY)
    return "headers";
  return NULL;
}

static void set_string_field(lua_State *L, const char *name, const char *value)
{
  lua_pushstring(L, value);
  lua_setfield(L, -2, name);
}

static void set_boolean_field(lua_State *L, const char *name, int value)
{
  lua_pushboolean(L, value);
  lua_setfield(L, -2, name);
}

/* The failure record: what happened, as facts; keyfactor.outcome decides
 * what it means (kind, whether to retry).
 *   code      curl's name for its result ("CURLE_COULDNT_CONNECT"; for a
 *             code this core does not list, "CURLcode N"), or "canceled"
 *   curl_code libcurl's number for it (absent when canceled)
 *   message   curl's own words
 *   sent      whether any byte of the request may have reached the server
 *   replayed  libcurl wanted to send it again (the connection died before
 *             any answer) and was refused
 *   refused   the server refused its HTTP/2 stream unprocessed
 *   limit     "body" or "headers" when the answer exceeded a limit */
static void push_failure(lua_State *L, const kf_request *r)
{
  const char *limit = r->state == KF_REQUEST_CANCELED ? NULL : limit_hit(r);
  lua_createtable(L, 0, 6);
  if (r->state == KF_REQUEST_CANCELED) {
    set_string_field(L, "code", "canceled");
    set_string_field(L, "message", "request was canceled before it completed");
  } else {
    const char *name = code_name(r->code);
    if (name != NULL)
      set_string_field(L, "code", name);
    else
      lua_pushfstring(L, "CURLcode %d", (int)r->code), lua_setfield(L, -2, "code");
    lua_pushinteger(L, (lua_Integer)r->code);
    lua_setfield(L, -2, "curl_code");
    if (limit != NULL && strcmp(limit, "body") == 0)
      lua_pushfstring(L, "response body exceeds the maximum of %d bytes (max_body)",
                      (int)(r->body.max > 0x7fffffff ? 0x7fffffff : r->body.max));
    else if (limit != NULL)
      lua_pushfstring(L, "response headers exceed the limit (%d KiB, %d lines, 100 KiB a line)",
                      (int)(KF_MAX_HEADER_BYTES / 1024), KF_MAX_HEADER_LINES);
    else
      lua_pushstring(L, r->errbuf[0] != '\0' ? r->errbuf : curl_easy_strerror(r->code));
    lua_setfield(L, -2, "message");
  }
  set_boolean_field(L, "sent", r->request_size > 0 || r->replay_blocked);
  set_boolean_field(L, "replayed", r->replay_blocked);
  set_boolean_field(L, "refused", r->refused);
  if (limit != NULL)
    set_string_field(L, "limit", limit);
}

static void push_headers(lua_State *L, const kf_buffer *head)
{
  const char *p, *end;
  luaL_Buffer name;
  lua_newtable(L);
  if (head->data == NULL)   /* no header arrived (fuzzing found NULL + 0) */
    return;
  p = head->data;
  end = head->data + head->len;
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    const char *colon, *v, *ve;
    if (eol == NULL)
      eol = end;
    colon = memchr(p, ':', (size_t)(eol - p));
    if (colon != NULL && !(eol - p >= 5 && memcmp(p, "HTTP/", 5) == 0)) {
      const char *c;
      for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++)
        ;
      for (ve = eol; ve > v && isspace((unsigned char)ve[-1]); ve--)
        ;
      luaL_buffinit(L, &name);
      for (c = p; c < colon; c++)
        luaL_addchar(&name, (char)tolower((unsigned char)*c));
      luaL_pushresult(&name);
      lua_pushvalue(L, -1);
      lua_rawget(L, -3);
      if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushlstring(L, v, (size_t)(ve - v));
      } else {   /* a repeated header: join as HTTP allows */
        lua_pushliteral(L, ", ");
        lua_pushlstring(L, v, (size_t)(ve - v));
        lua_concat(L, 3);
      }
      lua_rawset(L, -3);
    }
    p = eol + 1;
  }
}

/* request:result([decode]) -> status, body, seconds
 *                          -> nil, failure   when no answer came (see push_failure)
 * With `decode`, a 2xx answer with a body comes decoded from the received
 * bytes (no Lua string of it is made): status, value, seconds; or status,
 * nil, seconds, message when it is not JSON.
 * The body is handed over once: its buffer is freed, a second call raises.
 * Raises if the request is still in flight. */
static int request_result(lua_State *L)
{
  kf_request *r = kf_check_request(L, 1);
  int decode = lua_toboolean(L, 2);
  if (r->state == KF_REQUEST_RUNNING)
    return luaL_error(L, "keyfactor.core: request is still in flight");
  if (r->state == KF_REQUEST_CANCELED || r->code != CURLE_OK) {
    lua_pushnil(L);
    push_failure(L, r);
    return 2;
  }
  if (r->taken)
    return luaL_error(L, "keyfactor.core: result already taken");
  r->taken = 1;
  lua_pushinteger(L, r->status);
  if (decode && r->status >= 200 && r->status < 300 && r->body.len > 0) {
    int n = kf_decode_json_text(L, r->body.data, r->body.len);
    kf_buffer_free(&r->body);
    lua_pushnumber(L, r->total_time);
    if (n == 2)   /* status, nil, message -> status, nil, seconds, message */
      lua_insert(L, -2);
    return n + 2;
  }
  lua_pushlstring(L, r->body.data != NULL ? r->body.data : "", r->body.len);
  kf_buffer_free(&r->body);
  lua_pushnumber(L, r->total_time);
  return 3;
}

/* request:headers() -> table of the response headers, names in lower case
 * (only built when asked for: most calls never look). */
static int request_headers(lua_State *L)
{
  kf_request *r = kf_check_request(L, 1);
  push_headers(L, &r->head);
  return 1;
}

/* request:done() -> boolean */
static int request_done(lua_State *L)
{
  lua_pushboolean(L, kf_check_request(L, 1)->state != KF_REQUEST_RUNNING);
  return 1;
}

/* request:cancel(): stops an in-flight transfer; result() then says so. */
static int request_cancel(lua_State *L)
{
  detach(L, kf_check_request(L, 1));
  return 0;
}

static int request_gc(lua_State *L)
{
  kf_request *r = kf_check_request(L, 1);
  detach(L, r);
  kf_buffer_free(&r->body);
  kf_buffer_free(&r->head);
  return 0;
}

static int request_tostring(lua_State *L)
{
  kf_request *r = kf_check_request(L, 1);
  static const char *const names[] = {"in flight", "done", "canceled"};
  lua_pushfstring(L, "keyfactor.request (%s): %p", names[r->state], (void *)r);
  return 1;
}

/* The request class, and the session's methods that make and drive
 * requests. */
int kf_open_request(lua_State *L)
{
  static const luaL_Reg methods[] = {
    {"result", request_result},
    {"headers", request_headers},
    {"done", request_done},
    {"cancel", request_cancel},
    {NULL, NULL}
  };
  static const luaL_Reg meta[] = {
    {"__gc", request_gc},
    {"__close", request_cancel},
    {"__tostring", request_tostring},
    {NULL, NULL}
  };
  static const luaL_Reg session_methods[] = {
    {"start", session_start},
    {"wait", session_wait},
    {"step", session_step},
    {NULL, NULL}
  };
  kf_new_class(L, KF_REQUEST_MT, meta, methods);
  lua_pop(L, 1);
  kf_class_methods(L, KF_SESSION_MT, session_methods);
  return 0;
}
