/* The limit for fan-out: curl_multi, N GETs, at most C transfers at once,
 * C easy handles reused, HTTP/2 multiplexing allowed (as lua-keyfactor).
 *   multi URL CA USER:PASS N C
 * BENCH_PIPEWAIT=1 sets CURLOPT_PIPEWAIT: transfers wait for an HTTP/2
 * connection to multiplex on instead of opening (and handshaking) their own.
 * BENCH_PARSE=1 parses every body with cJSON and keeps every tree until the
 * end (as kf:parallel keeps every decoded answer); otherwise bodies are
 * counted and discarded.
 * Prints the elapsed seconds; exits 1 on any failure or non-200. */
#include "parse.h"

int main(int argc, char **argv)
{
  long n, c, started = 0, finished = 0, kept = 0, i;
  size_t bytes = 0;
  double t0;
  CURLM *m;
  CURL **pool;
  struct body *bodies;
  void **trees;
  struct curl_slist *h;
  int running = 0, failed = 0, parse = parse_wanted();
  if (argc < 6) { fprintf(stderr, "usage: multi URL CA USER:PASS N C\n"); return 2; }
  n = atol(argv[4]);
  c = atol(argv[5]);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  m = curl_multi_init();
  curl_multi_setopt(m, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  h = kf_headers();
  pool = calloc((size_t)c, sizeof *pool);
  bodies = calloc((size_t)c, sizeof *bodies);
  trees = calloc((size_t)n, sizeof *trees);
  if (!pool || !bodies || !trees) { perror("multi"); return 2; }
  t0 = now_s();
  for (i = 0; i < c && started < n; i++, started++) {
    pool[i] = curl_easy_init();
    kf_setup(pool[i], argv[2], argv[3], h, &bytes);
    if (getenv("BENCH_PIPEWAIT")) curl_easy_setopt(pool[i], CURLOPT_PIPEWAIT, 1L);
    if (parse) {
      bodies[i].bytes = &bytes;
      curl_easy_setopt(pool[i], CURLOPT_WRITEFUNCTION, collect);
      curl_easy_setopt(pool[i], CURLOPT_WRITEDATA, (void *)&bodies[i]);
      curl_easy_setopt(pool[i], CURLOPT_PRIVATE, (void *)&bodies[i]);
    }
    curl_easy_setopt(pool[i], CURLOPT_URL, argv[1]);
    curl_multi_add_handle(m, pool[i]);
  }
  while (finished < n) {
    CURLMsg *msg;
    int left;
    curl_multi_perform(m, &running);
    while ((msg = curl_multi_info_read(m, &left)) != NULL) {
      long status = 0;
      CURL *e = msg->easy_handle;
      if (msg->msg != CURLMSG_DONE) continue;
      curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
      if (msg->data.result != CURLE_OK || status != 200) {
        fprintf(stderr, "multi: %s, HTTP %ld\n", curl_easy_strerror(msg->data.result), status);
        failed = 1;
      }
      if (parse) {
        struct body *b = NULL;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&b);
        trees[kept] = parse_body(b);
        if (!trees[kept]) { fprintf(stderr, "multi: a body is not JSON\n"); failed = 1; }
        kept++;
      }
      finished++;
      curl_multi_remove_handle(m, e);
      if (started < n) {            /* reuse the handle for the next transfer */
        started++;
        curl_multi_add_handle(m, e);
      }
    }
    if (finished < n) curl_multi_poll(m, NULL, 0, 1000, NULL);
  }
  printf("%.6f\n", now_s() - t0);
  fprintf(stderr, "multi: %ld calls at concurrency %ld, %zu body bytes, %ld parsed\n", n, c, bytes, kept);
  for (i = 0; i < kept; i++) free_tree(trees[i]);
  for (i = 0; i < c; i++) {
    if (pool[i]) curl_easy_cleanup(pool[i]);
    free(bodies[i].data);
  }
  free(trees);
  free(bodies);
  free(pool);
  curl_slist_free_all(h);
  curl_multi_cleanup(m);
  curl_global_cleanup();
  return failed;
}
