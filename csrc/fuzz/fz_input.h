/*
 * Shared by the script-driven fuzzers (fuzz_net, fuzz_engine): reading the
 * input as records of big-endian integers and byte strings, and the check
 * that aborts on a violated invariant.
 */
#ifndef FZ_INPUT_H
#define FZ_INPUT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FZ_CHECK(x)                                                            \
  do {                                                                         \
    if (!(x)) {                                                                \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #x);    \
      abort();                                                                 \
    }                                                                          \
  } while (0)

typedef struct fz_in {
  const uint8_t *p;
  size_t n;
} fz_in_t;

/* 0, or -1 at the end of the input (nothing taken). */
static inline int fz_u8(fz_in_t *in, uint8_t *v) {
  if (in->n < 1)
    return -1;
  *v = in->p[0];
  in->p++;
  in->n--;
  return 0;
}

static inline int fz_u16(fz_in_t *in, uint16_t *v) {
  if (in->n < 2)
    return -1;
  *v = (uint16_t)(in->p[0] << 8 | in->p[1]);
  in->p += 2;
  in->n -= 2;
  return 0;
}

static inline int fz_u32(fz_in_t *in, uint32_t *v) {
  if (in->n < 4)
    return -1;
  *v = (uint32_t)in->p[0] << 24 | (uint32_t)in->p[1] << 16 |
       (uint32_t)in->p[2] << 8 | in->p[3];
  in->p += 4;
  in->n -= 4;
  return 0;
}

/* Up to want bytes (fewer at the end of the input): where they start. */
static inline const uint8_t *fz_bytes(fz_in_t *in, size_t want, size_t *got) {
  const uint8_t *p = in->p;
  *got = want < in->n ? want : in->n;
  in->p += *got;
  in->n -= *got;
  return p;
}

/* A string of up to max bytes (NUL-terminated in buf, max + 1 long). */
static inline void fz_str(fz_in_t *in, size_t want, size_t max, char *buf) {
  size_t got, i;
  const uint8_t *p = fz_bytes(in, want % (max + 1), &got);
  for (i = 0; i < got; i++)
    buf[i] = (char)p[i];
  buf[got] = 0;
}

#endif
