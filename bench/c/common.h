/* Shared by the bench's C loops: the request every tool in the bench sends. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H
#define _POSIX_C_SOURCE 200809L
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Bodies are received in full and counted (not parsed). */
static size_t discard(char *data, size_t size, size_t nmemb, void *ud)
{
  (void)data;
  *(size_t *)ud += size * nmemb;
  return size * nmemb;
}

static struct curl_slist *kf_headers(void)
{
  struct curl_slist *h = NULL;
  h = curl_slist_append(h, "Accept: application/json");
  h = curl_slist_append(h, "Content-Type: application/json");
  h = curl_slist_append(h, "x-keyfactor-requested-with: APIClient");
  h = curl_slist_append(h, "x-keyfactor-api-version: 1");
  h = curl_slist_append(h, "Expect:");
  return h;
}

/* BENCH_HTTP=1.1 forces HTTP/1.1; otherwise HTTP/2 over TLS when offered
 * (libcurl's default, and lua-keyfactor's). */
static void kf_setup(CURL *e, const char *ca, const char *userpwd,
                     struct curl_slist *headers, size_t *bytes)
{
  const char *v = getenv("BENCH_HTTP");
  curl_easy_setopt(e, CURLOPT_CAINFO, ca);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
  curl_easy_setopt(e, CURLOPT_USERPWD, userpwd);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "bench-c/1");
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)bytes);
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                   (v && strcmp(v, "1.1") == 0) ? (long)CURL_HTTP_VERSION_1_1
                                                : (long)CURL_HTTP_VERSION_2TLS);
}

static inline char *read_file(const char *path, long *len)
{
  FILE *f = fopen(path, "rb");
  char *buf;
  if (!f) { perror(path); exit(2); }
  fseek(f, 0, SEEK_END);
  *len = ftell(f);
  fseek(f, 0, SEEK_SET);
  buf = malloc((size_t)*len + 1);
  if (!buf || fread(buf, 1, (size_t)*len, f) != (size_t)*len) { perror(path); exit(2); }
  buf[*len] = 0;
  fclose(f);
  return buf;
}
#endif
