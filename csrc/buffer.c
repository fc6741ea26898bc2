/*
 * A growable byte buffer with a hard maximum.  Response bodies and headers
 * land here; the maximum is what keeps a hostile or broken server from
 * making the client allocate without bound.
 */
#include <stdlib.h>
#include <string.h>

#include "kfcore.h"

void kf_buffer_init(kf_buffer *b, size_t max)
{
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
  b->max = max;
  b->overflow = 0;
}

int kf_buffer_append(kf_buffer *b, const char *data, size_t n)
{
  if (n == 0)   /* nothing to copy; data may be NULL (found by fuzzing) */
    return 1;
  if (n > b->max - b->len) {
    b->overflow = 1;
    return 0;
  }
  if (b->len + n > b->cap) {
    /* First sized by the first piece (headers are a few hundred bytes, a
     * small body comes whole), then doubled. */
    size_t cap = b->cap ? b->cap : (n > 512 ? n : 512);
    char *grown;
    while (cap < b->len + n)
      cap = cap > b->max / 2 ? b->max : cap * 2;
    grown = realloc(b->data, cap);
    if (grown == NULL)
      return 0;
    b->data = grown;
    b->cap = cap;
  }
  memcpy(b->data + b->len, data, n);
  b->len += n;
  return 1;
}

/* Keeps the allocation: a reused request buffer does not realloc again. */
void kf_buffer_clear(kf_buffer *b)
{
  b->len = 0;
  b->overflow = 0;
}

void kf_buffer_free(kf_buffer *b)
{
  free(b->data);
  kf_buffer_init(b, b->max);
}
