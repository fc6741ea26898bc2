/*
 * libFuzzer harness: the bounded response buffer (buffer.c).  Appends of
 * fuzzed sizes under a fuzzed maximum: the buffer never exceeds its
 * maximum, keeps exactly the bytes appended before the first refusal, and
 * reports the overflow.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../csrc/kfcore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  kf_buffer b;
  size_t max, pos = 2, expect = 0;
  int refused = 0;
  if (size < 2)
    return 0;
  max = (size_t)data[0] * 97 + data[1];   /* 0 .. ~25 KB */
  kf_buffer_init(&b, max);
  while (pos < size) {
    size_t n = data[pos++] % 64;
    if (n > size - pos)
      n = size - pos;
    if (!kf_buffer_append(&b, (const char *)data + pos, n)) {
      refused = 1;
      if (!b.overflow)
        abort();
      break;
    }
    if (n > 0 && memcmp(b.data + expect, data + pos, n) != 0)
      abort();
    expect += n;
    pos += n;
  }
  if (b.len != expect || b.len > max || (!refused && b.overflow))
    abort();
  kf_buffer_free(&b);
  return 0;
}
