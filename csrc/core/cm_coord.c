/*
 * Vivaldi network coordinates (cm_coord.h). The update follows Dabek et al.
 * section 3 (adaptive timestep: the weight of a sample is our error over
 * both errors) with the height model of section 5.3, the adjustment term of
 * Ledlie et al. (the mean of rtt - distance over a window, halved: each side
 * of a pair adds its own) and a weak pull towards the origin against drift.
 */
#include "cm_coord.h"

#include <math.h>
#include <string.h>

#define CM_COORD_ZERO 1e-6 /* below this, two positions coincide */

void cm_coord_init(cm_coord_t *c) {
  memset(c, 0, sizeof(*c));
  c->height = CM_COORD_HEIGHT_MIN;
  c->error = CM_COORD_ERROR_MAX;
}

static int coord_in(double v, double lo, double hi) {
  return isfinite(v) && v >= lo && v <= hi;
}

int cm_coord_valid(const cm_coord_t *c) {
  int i;
  for (i = 0; i < CM_COORD_DIMS; i++)
    if (!coord_in(c->vec[i], -CM_COORD_LIMIT, CM_COORD_LIMIT))
      return 0;
  return coord_in(c->height, 0, CM_COORD_LIMIT) &&
         coord_in(c->adjustment, -CM_COORD_LIMIT, CM_COORD_LIMIT) &&
         coord_in(c->error, 0, CM_COORD_ERROR_MAX);
}

static double coord_raw(const cm_coord_t *a, const cm_coord_t *b) {
  double sum = 0;
  int i;
  for (i = 0; i < CM_COORD_DIMS; i++) {
    double d = a->vec[i] - b->vec[i];
    sum += d * d;
  }
  return sqrt(sum) + a->height + b->height;
}

double cm_coord_rtt(const cm_coord_t *a, const cm_coord_t *b) {
  double raw = coord_raw(a, b);
  double adjusted = raw + a->adjustment + b->adjustment;
  return adjusted > 0 ? adjusted : raw;
}

void cm_coord_client_init(cm_coord_client_t *cl, uint64_t seed) {
  memset(cl, 0, sizeof(*cl));
  cm_coord_init(&cl->c);
  cl->rng = seed | 1;
}

static double coord_rand(cm_coord_client_t *cl) {
  /* xorshift64*: only ever picks a direction. */
  uint64_t x = cl->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  cl->rng = x;
  return (double)((x * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

/* Move c by force along the line from other to c (towards other when force
 * is negative); the height takes its share as in Dabek et al. 5.3. */
static void coord_apply(cm_coord_client_t *cl, double force,
                        const cm_coord_t *other) {
  cm_coord_t *c = &cl->c;
  double unit[CM_COORD_DIMS], mag = 0;
  int i;
  for (i = 0; i < CM_COORD_DIMS; i++) {
    unit[i] = c->vec[i] - other->vec[i];
    mag += unit[i] * unit[i];
  }
  mag = sqrt(mag);
  if (mag > CM_COORD_ZERO) {
    for (i = 0; i < CM_COORD_DIMS; i++)
      c->vec[i] += unit[i] / mag * force;
    c->height = (c->height + other->height) * force / mag + c->height;
    if (c->height < CM_COORD_HEIGHT_MIN)
      c->height = CM_COORD_HEIGHT_MIN;
    return;
  }
  /* On top of each other: any direction will do. */
  for (;;) {
    double m = 0;
    for (i = 0; i < CM_COORD_DIMS; i++) {
      unit[i] = coord_rand(cl) - 0.5;
      m += unit[i] * unit[i];
    }
    m = sqrt(m);
    if (m > CM_COORD_ZERO) {
      for (i = 0; i < CM_COORD_DIMS; i++)
        c->vec[i] += unit[i] / m * force;
      return;
    }
  }
}

static void coord_reset(cm_coord_client_t *cl) {
  cm_coord_init(&cl->c);
  memset(cl->adj, 0, sizeof(cl->adj));
  cl->adj_pos = 0;
  cl->outliers_in_row = 0;
  cl->resets++;
}

int cm_coord_update(cm_coord_client_t *cl, const cm_coord_t *remote, double rtt,
                    uint64_t peer) {
  cm_coord_t *c = &cl->c, origin;
  double dist, wrongness, total, w, sum = 0;
  int i;
  if (!cm_coord_valid(remote) || !(rtt >= 0) || rtt > CM_COORD_LIMIT) {
    cl->rejected++;
    return CM_EINVAL;
  }
  if (rtt < CM_COORD_ZERO)
    rtt = CM_COORD_ZERO;
  dist = cm_coord_rtt(c, remote);
  /* An estimate off by many times the RTT, when either side claims to be
   * sure of its place, says one of the two coordinates is wrong. Ours, if
   * it keeps happening with every peer. */
  if (fabs(dist - rtt) >
          CM_COORD_OUTLIER *
              (rtt > CM_COORD_OUTLIER_FLOOR ? rtt : CM_COORD_OUTLIER_FLOOR) &&
      (c->error <= CM_COORD_OUTLIER_ERROR ||
       remote->error <= CM_COORD_OUTLIER_ERROR)) {
    cl->rejected++;
    /* Ours is the odd one out only if peer after peer says so: one peer,
     * however often it lies, never makes it look so. */
    if (cl->outliers_in_row == 0 || peer != cl->last_outlier_peer)
      cl->outliers_in_row++;
    cl->last_outlier_peer = peer;
    if (cl->outliers_in_row >= CM_COORD_OUTLIERS_RESET)
      coord_reset(cl);
    return CM_ELIMIT;
  }
  cl->outliers_in_row = 0;
  wrongness = fabs(dist - rtt) / rtt;
  total = c->error + remote->error;
  if (total < CM_COORD_ZERO)
    total = CM_COORD_ZERO;
  w = c->error / total;
  c->error = CM_COORD_CE * w * wrongness + c->error * (1.0 - CM_COORD_CE * w);
  if (c->error > CM_COORD_ERROR_MAX)
    c->error = CM_COORD_ERROR_MAX;
  coord_apply(cl, CM_COORD_CC * w * (rtt - dist), remote);
  /* Adjustment: what the Euclidean model misses, on average, recently. */
  cl->adj[cl->adj_pos] = rtt - coord_raw(c, remote);
  cl->adj_pos = (cl->adj_pos + 1) % CM_COORD_ADJ_WINDOW;
  for (i = 0; i < CM_COORD_ADJ_WINDOW; i++)
    sum += cl->adj[i];
  c->adjustment = sum / (2.0 * CM_COORD_ADJ_WINDOW);
  /* Gravity: a pull towards the origin, growing with the square of the
   * distance, keeps the whole cluster from drifting away together. */
  cm_coord_init(&origin);
  dist = cm_coord_rtt(&origin, c);
  coord_apply(cl,
              -(dist / CM_COORD_GRAVITY_RHO) * (dist / CM_COORD_GRAVITY_RHO),
              &origin);
  if (!cm_coord_valid(c)) {
    coord_reset(cl);
    return 0;
  }
  cl->updates++;
  return 0;
}

double cm_coord_filter_add(cm_coord_filter_t *f, double rtt) {
  float s[CM_COORD_FILTER];
  uint8_t i, j, n;
  f->s[f->pos] = (float)rtt;
  f->pos = (uint8_t)((f->pos + 1) % CM_COORD_FILTER);
  if (f->n < CM_COORD_FILTER)
    f->n++;
  n = f->n;
  memcpy(s, f->s, sizeof(s));
  for (i = 1; i < n; i++)
    for (j = i; j > 0 && s[j - 1] > s[j]; j--) {
      float t = s[j];
      s[j] = s[j - 1];
      s[j - 1] = t;
    }
  return s[n / 2];
}

static void coord_put32(uint8_t *p, float v) {
  uint32_t u;
  memcpy(&u, &v, 4);
  p[0] = (uint8_t)(u >> 24);
  p[1] = (uint8_t)(u >> 16);
  p[2] = (uint8_t)(u >> 8);
  p[3] = (uint8_t)u;
}

static double coord_get32(const uint8_t *p) {
  uint32_t u = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
               ((uint32_t)p[2] << 8) | p[3];
  float v;
  memcpy(&v, &u, 4);
  return v;
}

void cm_coord_to_wire(const cm_coord_t *c, uint8_t out[CM_COORD_WIRE_LEN]) {
  int i;
  for (i = 0; i < CM_COORD_DIMS; i++)
    coord_put32(out + 4 * i, (float)c->vec[i]);
  coord_put32(out + 32, (float)c->height);
  coord_put32(out + 36, (float)c->adjustment);
  coord_put32(out + 40, (float)c->error);
}

void cm_coord_from_wire(const uint8_t in[CM_COORD_WIRE_LEN], cm_coord_t *c) {
  int i;
  for (i = 0; i < CM_COORD_DIMS; i++)
    c->vec[i] = coord_get32(in + 4 * i);
  c->height = coord_get32(in + 32);
  c->adjustment = coord_get32(in + 36);
  c->error = coord_get32(in + 40);
}
