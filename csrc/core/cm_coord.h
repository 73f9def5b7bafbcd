/*
 * Network coordinates: Vivaldi (Dabek et al., SIGCOMM 2004) with a height
 * term and an adjustment term (Ledlie et al., NSDI 2007), the model Serf's
 * coordinate package uses, so that the round trip between any two members
 * can be estimated from their coordinates without measuring it.
 *
 * A node updates its own coordinate from each RTT it measures to a peer and
 * that peer's coordinate (cm_coord_update); the distance between two
 * coordinates is the RTT estimate (cm_coord_rtt). All values are seconds,
 * except error, which is a dimensionless confidence (lower is better).
 *
 * Pure arithmetic: no clock, no I/O, no allocation.
 */
#ifndef CM_COORD_H
#define CM_COORD_H

#include "cm_common.h"

#define CM_COORD_DIMS 8
/* On the wire: 8 + 3 IEEE 754 binary32, big-endian (vec, height,
 * adjustment, error). */
#define CM_COORD_WIRE_LEN 44
/* Bounds on a coordinate anyone may report, in seconds: no component,
 * height or adjustment beyond this (Serf refuses RTTs over 10 s as well). */
#define CM_COORD_LIMIT 10.0
/* Tuning, as in Serf's coordinate.DefaultConfig and the papers it cites. */
#define CM_COORD_ERROR_MAX 1.5    /* error of a new coordinate, and its cap */
#define CM_COORD_CE 0.25          /* weight of a sample on the error */
#define CM_COORD_CC 0.25          /* weight of a sample on the position */
#define CM_COORD_HEIGHT_MIN 10e-6 /* seconds */
#define CM_COORD_GRAVITY_RHO 150.0
#define CM_COORD_ADJ_WINDOW 20
/* Outliers: a sample whose estimate is off by more than CM_COORD_OUTLIER
 * times the measured RTT (or CM_COORD_OUTLIER_FLOOR, if more) is refused
 * when either side claims confidence (error at most CM_COORD_OUTLIER_ERROR).
 * Refusals in a row, each from another peer than the last, this many of
 * them: our own coordinate is the odd one out, and starts again from the
 * origin. */
#define CM_COORD_OUTLIER 10.0
#define CM_COORD_OUTLIER_FLOOR 0.001 /* seconds */
#define CM_COORD_OUTLIER_ERROR 0.5
#define CM_COORD_OUTLIERS_RESET 8

typedef struct cm_coord {
  double vec[CM_COORD_DIMS];
  double height;
  double adjustment;
  double error;
} cm_coord_t;

/* A node's own coordinate and what updating it needs. */
typedef struct cm_coord_client {
  cm_coord_t c;
  double adj[CM_COORD_ADJ_WINDOW]; /* the last samples of rtt - distance */
  uint32_t adj_pos;
  uint32_t outliers_in_row;
  uint64_t last_outlier_peer;
  uint64_t rng; /* a direction when two coordinates coincide */
  uint64_t updates, rejected, resets;
} cm_coord_client_t;

/* A few RTT samples of one peer: its median rides out a blip. */
#define CM_COORD_FILTER 3
typedef struct cm_coord_filter {
  float s[CM_COORD_FILTER];
  uint8_t n, pos;
} cm_coord_filter_t;

/* The origin, with the largest error and the smallest height. */
void cm_coord_init(cm_coord_t *c);
/* 1 if every field is finite and within CM_COORD_LIMIT, the height not
 * negative and the error in [0, CM_COORD_ERROR_MAX]. */
int cm_coord_valid(const cm_coord_t *c);
/* Estimated RTT between a and b in seconds: the Euclidean distance plus
 * both heights, plus both adjustments when that stays positive. */
double cm_coord_rtt(const cm_coord_t *a, const cm_coord_t *b);

void cm_coord_client_init(cm_coord_client_t *cl, uint64_t seed);
/* One observation: peer (any value naming it, such as its id's hash), at
 * `remote`, answered in rtt seconds. Returns 0 (applied), CM_EINVAL (remote
 * invalid, or rtt not in [0, 10 s]: nothing changes; an RTT under 1 us
 * counts as 1 us) or CM_ELIMIT (an outlier, refused; the
 * CM_COORD_OUTLIERS_RESET-th in a row, each from another peer than the one
 * before, resets the coordinate). A coordinate that leaves the valid range
 * resets too. `rejected` and `resets` count them. */
int cm_coord_update(cm_coord_client_t *cl, const cm_coord_t *remote, double rtt,
                    uint64_t peer);

/* Add a sample and return the median of the ones held. */
double cm_coord_filter_add(cm_coord_filter_t *f, double rtt);

/* Wire form: exactly CM_COORD_WIRE_LEN bytes, any bit pattern (validity is
 * the reader's business: cm_coord_valid after cm_coord_from_wire). */
void cm_coord_to_wire(const cm_coord_t *c, uint8_t out[CM_COORD_WIRE_LEN]);
void cm_coord_from_wire(const uint8_t in[CM_COORD_WIRE_LEN], cm_coord_t *c);

#endif
