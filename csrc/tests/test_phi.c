#include <math.h>

#include "cm_phi.h"
#include "cm_test.h"

/* The closed form: phi = -log10(1 - Phi((t - mean) / std)). */
static double reference_phi(double t, double mean, double std) {
  return -log10(0.5 * erfc((t - mean) / std / sqrt(2.0)));
}

CM_TEST(phi_normal_matches_closed_form) {
  /* At the mean the tail is 1/2: phi = log10 2. */
  CM_CHECK_NEAR(cm_phi_normal(1000, 1000, 100), log10(2.0), 1e-12);
  /* One, two, three standard deviations: tails 0.158655, 0.0227501,
   * 0.0013499 (standard normal table). */
  CM_CHECK_NEAR(cm_phi_normal(1100, 1000, 100), -log10(0.158655254), 1e-6);
  CM_CHECK_NEAR(cm_phi_normal(1200, 1000, 100), -log10(0.022750132), 1e-6);
  CM_CHECK_NEAR(cm_phi_normal(1300, 1000, 100), -log10(0.001349898), 1e-6);
  CM_CHECK_NEAR(cm_phi_normal(700, 1000, 100), reference_phi(700, 1000, 100),
                1e-12);
}

CM_TEST(phi_tail_is_finite_and_monotonic) {
  double prev = 0.0, t;
  for (t = 1000; t < 20000; t += 250) {
    double p = cm_phi_normal(t, 1000, 100);
    CM_CHECK(isfinite(p));
    CM_CHECK(p >= prev);
    prev = p;
  }
  /* Deep in the tail the asymptotic form takes over: 40 sigma. */
  CM_CHECK(cm_phi_normal(5000, 1000, 100) > 300.0);
}

CM_TEST(phi_window_statistics) {
  cm_phi_t *p = cm_phi_new(4);
  cm_time_t t = 1000;
  int i;
  CM_CHECK(p != NULL);
  cm_phi_arrival(p, t);
  CM_CHECK_EQ(p->count, 0); /* the first arrival only starts the clock */
  for (i = 0; i < 4; i++) {
    t += 100;
    cm_phi_arrival(p, t);
  }
  CM_CHECK_NEAR(cm_phi_mean(p), 100, 1e-9);
  CM_CHECK_NEAR(cm_phi_stddev(p), 0, 1e-9);
  /* The window slides: four 300 us gaps replace the 100 us ones. */
  for (i = 0; i < 4; i++) {
    t += 300;
    cm_phi_arrival(p, t);
  }
  CM_CHECK_EQ(p->count, 4);
  CM_CHECK_NEAR(cm_phi_mean(p), 300, 1e-9);
  t += 100;
  cm_phi_arrival(p, t);
  CM_CHECK_NEAR(cm_phi_mean(p), 250, 1e-9);
  CM_CHECK_NEAR(cm_phi_stddev(p), sqrt(3 * 50.0 * 50 + 150.0 * 150) / 2, 1e-6);
  cm_phi_free(p);
}

/* Akka's meaning: the acceptable pause lengthens the mean, the minimum
 * standard deviation floors the spread, and too few samples give 0. */
CM_TEST(phi_value_uses_pause_and_min_std) {
  cm_phi_t *p = cm_phi_new(100);
  cm_time_t t = CM_SEC(10);
  int i;
  double phi, expect;
  cm_phi_arrival(p, t);
  for (i = 0; i < 10; i++) {
    t += CM_MSEC(1000);
    cm_phi_arrival(p, t);
  }
  CM_CHECK_EQ(cm_phi_value(p, t + CM_MSEC(500), 11, CM_MSEC(100), 0), 0.0);
  phi = cm_phi_value(p, t + CM_MSEC(1500), 8, CM_MSEC(100), 0);
  expect = reference_phi(1500e3, 1000e3, 100e3); /* std floored to 100 ms */
  CM_CHECK_NEAR(phi, expect, 1e-9);
  phi = cm_phi_value(p, t + CM_MSEC(1500), 8, CM_MSEC(100), CM_MSEC(3000));
  expect = reference_phi(1500e3, 4000e3, 100e3);
  CM_CHECK_NEAR(phi, expect, 1e-9);
  CM_CHECK(phi < 0.01);
  cm_phi_free(p);
}
