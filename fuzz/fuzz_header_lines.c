/*
 * libFuzzer harness: the check of what goes into a request header
 * (options.c: kf_header_line_ok, kf_header_value_ok, kf_token_ok), held
 * against the rule stated once more here, independently: a line accepted
 * is "Name: value", "Name:" or "Name;" with a non-empty name of token bytes
 * and a value without a control byte (HTAB allowed) or DEL.  Above all, no
 * accepted line or value holds a CR or an LF.  Any disagreement aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../csrc/kfcore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int is_token(unsigned char c)
{
  static const char extra[] = "!#$%&'*+-.^_`|~";
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
    return 1;
  return c != '\0' && memchr(extra, c, sizeof extra - 1) != NULL;
}

static int value_allowed(const char *s)
{
  for (; *s != '\0'; s++) {
    unsigned char c = (unsigned char)*s;
    if ((c < 0x20 && c != '\t') || c == 0x7f)
      return 0;
  }
  return 1;
}

static int line_allowed(const char *line)
{
  size_t n = 0;
  while (is_token((unsigned char)line[n]))
    n++;
  if (n == 0)
    return 0;
  if (line[n] == ';')
    return line[n + 1] == '\0';
  return line[n] == ':' && value_allowed(line + n + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char *text = malloc(size + 1);
  int line_ok, value_ok;
  if (text == NULL)
    return 0;
  memcpy(text, data, size);
  text[size] = '\0';                 /* what libcurl sees: a C string */
  line_ok = kf_header_line_ok(text);
  value_ok = kf_header_value_ok(text);
  if (line_ok != line_allowed(text) || value_ok != value_allowed(text))
    abort();
  if ((line_ok || value_ok) && strpbrk(text, "\r\n") != NULL)
    abort();
  if (kf_token_ok(text, strlen(text)) != (strlen(text) > 0 && strspn(text,
      "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!#$%&'*+-.^_`|~") == strlen(text)))
    abort();
  free(text);
  return 0;
}
