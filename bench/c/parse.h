/* BENCH_PARSE=1: every body is collected and parsed with cJSON, as a client
 * that returns decoded answers must (the C peer of kf:certificate and
 * kf:parallel).  Built with -DBENCH_CJSON when libcjson-dev is present. */
#ifndef BENCH_PARSE_H
#define BENCH_PARSE_H
#include "common.h"
#ifdef BENCH_CJSON
#include <cjson/cJSON.h>
#endif

struct body {
  char *data;
  size_t len, cap;
  size_t *bytes;      /* the run's total, as discard() counts it */
};

static size_t collect(char *data, size_t size, size_t nmemb, void *ud)
{
  struct body *b = ud;
  size_t n = size * nmemb;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    char *p;
    while (cap < b->len + n + 1) cap *= 2;
    p = realloc(b->data, cap);
    if (!p) return 0;
    b->data = p;
    b->cap = cap;
  }
  memcpy(b->data + b->len, data, n);
  b->len += n;
  *b->bytes += n;
  return n;
}

static int parse_wanted(void)
{
  const char *v = getenv("BENCH_PARSE");
  if (!v || !*v) return 0;
#ifndef BENCH_CJSON
  fprintf(stderr, "bench: BENCH_PARSE set but built without cJSON (libcjson-dev)\n");
  exit(2);
#endif
  return 1;
}

/* Parses the collected body; NULL when it is not JSON.  The caller keeps or
 * frees the tree (cJSON_Delete). */
static void *parse_body(struct body *b)
{
  void *tree = NULL;
#ifdef BENCH_CJSON
  tree = cJSON_ParseWithLength(b->data, b->len);
#endif
  b->len = 0;
  return tree;
}

static void free_tree(void *tree)
{
#ifdef BENCH_CJSON
  cJSON_Delete(tree);
#else
  (void)tree;
#endif
}
#endif
