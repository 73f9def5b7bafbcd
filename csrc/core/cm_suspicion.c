#include "cm_suspicion.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

cm_suspicion_t *cm_suspicion_new(cm_time_t now, uint32_t k, cm_time_t min,
                                 cm_time_t max, const uint64_t *from_hash) {
  cm_suspicion_t *s;
  if (k > CM_SUSPICION_MAX_K)
    k = CM_SUSPICION_MAX_K;
  s = calloc(1, sizeof(*s) + ((size_t)k + 1) * sizeof(s->from[0]));
  if (s == NULL)
    return NULL;
  s->start = now;
  s->confirmed = now;
  s->k = k;
  s->min = min;
  s->max = max < min ? min : max;
  if (from_hash != NULL) {
    s->from[0] = *from_hash;
    s->nfrom = 1;
  } else {
    s->unnamed = 1;
  }
  return s;
}

/* from[] holds the origin and up to k confirmers: k + 1 at most. */
int cm_suspicion_confirm(cm_suspicion_t *s, uint64_t from_hash, cm_time_t now,
                         int independent) {
  uint32_t i;
  for (i = 0; i < s->nfrom; i++)
    if (s->from[i] == from_hash)
      return 0;
  if (s->unnamed && !independent) {
    s->from[s->nfrom++] = from_hash;
    s->unnamed = 0;
    return CM_SUSPICION_ORIGIN;
  }
  if (s->n >= s->k)
    return 0;
  s->from[s->nfrom++] = from_hash;
  s->n++;
  if (now > s->confirmed)
    s->confirmed = now;
  return CM_SUSPICION_COUNTED;
}

cm_time_t cm_suspicion_timeout(cm_time_t min, cm_time_t max, uint32_t k,
                               uint32_t c) {
  double frac, t;
  if (k == 0 || max <= min)
    return min;
  frac = log((double)c + 1.0) / log((double)k + 1.0);
  t = (double)max - frac * (double)(max - min);
  if (t < (double)min)
    return min;
  return (cm_time_t)floor(t + 0.5);
}

cm_time_t cm_suspicion_deadline(const cm_suspicion_t *s) {
  cm_time_t d = s->start + cm_suspicion_timeout(s->min, s->max, s->k, s->n);
  return d > s->confirmed ? d : s->confirmed;
}
