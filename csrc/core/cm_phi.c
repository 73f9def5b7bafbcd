#include "cm_phi.h"

#include <math.h>
#include <stdlib.h>

/* Longest interval recorded: an arrival after a longer silence is a new
 * start, not a sample (a restart or partition would skew the window). */
#define CM_PHI_MAX_SAMPLE UINT32_MAX

cm_phi_t *cm_phi_new(uint32_t window) {
  cm_phi_t *p;
  if (window == 0)
    return NULL;
  p = calloc(1, sizeof(*p) + (size_t)window * sizeof(uint32_t));
  if (p != NULL)
    p->window = window;
  return p;
}

void cm_phi_free(cm_phi_t *p) { free(p); }

void cm_phi_arrival(cm_phi_t *p, cm_time_t now) {
  cm_time_t gap;
  uint32_t s;
  if (p->last == 0 || now <= p->last) {
    if (p->last == 0 || now < p->last)
      p->last = now;
    return;
  }
  gap = now - p->last;
  p->last = now;
  if (gap > CM_PHI_MAX_SAMPLE)
    return;
  s = (uint32_t)gap;
  if (p->count == p->window) {
    double old = p->samples[p->head];
    p->sum -= old;
    p->sumsq -= old * old;
  } else {
    p->count++;
  }
  p->samples[p->head] = s;
  p->head = (p->head + 1) % p->window;
  p->sum += s;
  p->sumsq += (double)s * s;
}

double cm_phi_mean(const cm_phi_t *p) {
  return p->count ? p->sum / p->count : 0.0;
}

double cm_phi_stddev(const cm_phi_t *p) {
  double m, v;
  if (p->count == 0)
    return 0.0;
  m = p->sum / p->count;
  v = p->sumsq / p->count - m * m;
  return v > 0.0 ? sqrt(v) : 0.0;
}

double cm_phi_normal(double elapsed, double mean, double std) {
  double y = (elapsed - mean) / std;
  double x = y / M_SQRT2;
  double tail = 0.5 * erfc(x);
  if (tail > 0.0 && isfinite(tail))
    return -log10(tail);
  /* erfc underflowed: log10(0.5*erfc(x)) ~ -x^2/ln10 - log10(2 x sqrt(pi)) */
  return x * x / M_LN10 + log10(2.0 * x * sqrt(M_PI));
}

double cm_phi_value(const cm_phi_t *p, cm_time_t now, uint32_t min_samples,
                    cm_time_t min_std, cm_time_t acceptable_pause) {
  double mean, std;
  if (p == NULL || p->count < min_samples || p->last == 0 || now <= p->last)
    return 0.0;
  mean = cm_phi_mean(p) + (double)acceptable_pause;
  std = cm_phi_stddev(p);
  if (std < (double)min_std)
    std = (double)min_std;
  return cm_phi_normal((double)(now - p->last), mean, std);
}
