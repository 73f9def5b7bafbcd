/*
 * Phi accrual failure detector (Hayashibara et al. 2004) as Akka uses it:
 * inter-arrival times in a sliding window model a normal distribution whose
 * mean is lengthened by an acceptable pause and whose standard deviation has
 * a floor. phi(t) = -log10(P(next arrival later than t since the last)).
 */
#ifndef CM_PHI_H
#define CM_PHI_H

#include "cm_common.h"

typedef struct cm_phi {
  cm_time_t last;     /* time of the last arrival, 0 before the first */
  uint32_t window;    /* capacity of samples[] */
  uint32_t count;     /* samples held */
  uint32_t head;      /* next slot to overwrite */
  double sum, sumsq;  /* of the samples held, in microseconds */
  uint32_t samples[]; /* inter-arrival times in microseconds */
} cm_phi_t;

/* Allocate a detector with room for window samples. NULL on no memory. */
cm_phi_t *cm_phi_new(uint32_t window);
void cm_phi_free(cm_phi_t *p);
/* Record an arrival at now. */
void cm_phi_arrival(cm_phi_t *p, cm_time_t now);
double cm_phi_mean(const cm_phi_t *p);
double cm_phi_stddev(const cm_phi_t *p);
/* phi at now; 0 with fewer than min_samples samples. */
double cm_phi_value(const cm_phi_t *p, cm_time_t now, uint32_t min_samples,
                    cm_time_t min_std, cm_time_t acceptable_pause);
/* The closed form used by cm_phi_value: phi of an elapsed time against a
 * normal(mean, std) model, exact through erfc and asymptotic in the tail. */
double cm_phi_normal(double elapsed, double mean, double std);

#endif
