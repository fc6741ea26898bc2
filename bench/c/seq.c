/* The limit for sequential calls: ONE reused easy handle, N requests.
 *   seq URL CA USER:PASS N [BODYFILE]   (BODYFILE: POST it as JSON)
 * BENCH_PARSE=1 parses every body with cJSON (then frees it, as a caller
 * that uses one answer and drops it).
 * Prints the elapsed seconds; exits 1 on any failure or non-200. */
#include "parse.h"

int main(int argc, char **argv)
{
  long n, i, len = 0, status = 0;
  size_t bytes = 0;
  char *body = NULL;
  double t0;
  CURL *e;
  struct curl_slist *h;
  struct body parsed = { NULL, 0, 0, NULL };
  int parse = parse_wanted();
  if (argc < 5) { fprintf(stderr, "usage: seq URL CA USER:PASS N [BODYFILE]\n"); return 2; }
  n = atol(argv[4]);
  if (argc > 5) body = read_file(argv[5], &len);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  e = curl_easy_init();
  h = kf_headers();
  kf_setup(e, argv[2], argv[3], h, &bytes);
  curl_easy_setopt(e, CURLOPT_URL, argv[1]);
  if (parse) {
    parsed.bytes = &bytes;
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)&parsed);
  }
  if (body) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, len);
  }
  t0 = now_s();
  for (i = 0; i < n; i++) {
    CURLcode rc = curl_easy_perform(e);
    if (rc != CURLE_OK) { fprintf(stderr, "seq: %s\n", curl_easy_strerror(rc)); return 1; }
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) { fprintf(stderr, "seq: HTTP %ld\n", status); return 1; }
    if (parse) {
      void *tree = parse_body(&parsed);
      if (!tree) { fprintf(stderr, "seq: the body is not JSON\n"); return 1; }
      free_tree(tree);
    }
  }
  printf("%.6f\n", now_s() - t0);
  fprintf(stderr, "seq: %ld calls, %zu body bytes\n", n, bytes);
  curl_slist_free_all(h);
  curl_easy_cleanup(e);
  curl_global_cleanup();
  free(body);
  free(parsed.data);
  return 0;
}
