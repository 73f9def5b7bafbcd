/*
 * The machine's wake-up floor without Python: how long an idle process
 * blocked in epoll_wait takes to run again once another process has written
 * the pipe it watches. bench/api_bench.py measures the same wake-up with an
 * asyncio event loop as the reader (its "asyncio floor"); this is the part
 * of that figure no interpreter, event loop or library is in.
 *
 * A child process sleeps an idle gap drawn uniformly from [0, --gap-ms),
 * takes CLOCK_MONOTONIC and writes it to the pipe; the parent, blocked in
 * epoll_wait, reads it and takes the clock again. One stamp is in flight
 * at a time (the parent acknowledges each through a second pipe).
 *
 * With --writer FD ACK_FD it is the writer only, for a reader of another
 * program's (bench/api_bench.py's asyncio loop): it writes each stamp (a
 * native double, seconds) to FD and waits for the byte 'k' on ACK_FD.
 *
 * Usage:
 *   cm_wake [--samples N] [--gap-ms MS] [--seed K] [--raw] [--writer FD ACK_FD]
 * Prints one JSON object: the latencies' median (the mean of the middle two
 * for an even count, as Python's statistics.median), p99 (nearest rank) and
 * max in microseconds, and the sample count; with --raw, every latency too,
 * in the order taken (the writer alone prints nothing). Exits 0, 1 on a
 * failure (said on stderr, a peer gone included), 2 on bad arguments. Stops by
 * itself after N samples, when the other side goes away, or after 30 s without
 * a stamp.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 30000

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* 0 if all n bytes were read; -1 on end of file or an error. */
static int read_full(int fd, void *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, (char *)buf + got, n - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return -1;
    got += (size_t)r;
  }
  return 0;
}

static int write_full(int fd, const void *buf, size_t n) {
  size_t put = 0;
  while (put < n) {
    ssize_t r = write(fd, (const char *)buf + put, n - put);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return -1;
    put += (size_t)r;
  }
  return 0;
}

/* A whole decimal number in [lo, hi], digits only (no blank, no sign);
 * -1 otherwise. */
static int parse_long(const char *s, long lo, long hi, long *out) {
  char *end;
  if (*s < '0' || *s > '9')
    return -1;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
    return -1;
  *out = v;
  return 0;
}

/* A decimal number of milliseconds in [0, 10000]: digits, a point and an
 * exponent only (no blank, sign, hex or nan); -1 otherwise. */
static int parse_ms(const char *s, double *out) {
  char *end;
  if (!((*s >= '0' && *s <= '9') || *s == '.') ||
      s[strspn(s, "0123456789.eE-")] != '\0')
    return -1;
  errno = 0;
  double v = strtod(s, &end);
  if (errno == ERANGE && fabs(v) < 1.0) /* underflow: as good as zero */
    errno = 0;
  if (errno != 0 || end == s || *end != '\0' || !(v >= 0.0 && v <= 10000.0))
    return -1;
  *out = v;
  return 0;
}

/* splitmix64: every seed gives a full-period sequence. */
static uint64_t next_rand(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* The writer: gap, stamp, write; then wait for the reader's ack. */
static int writer(int wfd, int ack_fd, long samples, double gap_ms,
                  uint64_t seed) {
  uint64_t state = seed;
  for (long i = 0; i < samples; i++) {
    double u = (double)(next_rand(&state) >> 11) / 9007199254740992.0;
    double gap = gap_ms / 1000.0 * u;
    struct timespec ts = {(time_t)gap,
                          (long)((gap - (double)(time_t)gap) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
      ;
    double stamp = now_s();
    char ack = 0;
    if (write_full(wfd, &stamp, sizeof(stamp)) != 0) {
      fprintf(stderr, "cm_wake: writer: the reader is gone (%s)\n",
              strerror(errno));
      return 1;
    }
    if (read_full(ack_fd, &ack, 1) != 0 || ack != 'k') {
      fprintf(stderr, "cm_wake: writer: no acknowledgement of stamp %ld\n",
              i + 1);
      return 1;
    }
  }
  return 0;
}

static int usage(void) {
  fprintf(stderr, "usage: cm_wake [--samples 1..1000000] [--gap-ms 0..10000] "
                  "[--seed K] [--raw] [--writer FD ACK_FD]\n");
  return 2;
}

/* The reader: wait for each stamp, keep its latency, acknowledge it. */
static int reader(int rfd, int ack_fd, long samples, double *lat) {
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = rfd};
  int rc = 0;
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, rfd, &ev) != 0) {
    fprintf(stderr, "cm_wake: epoll: %s\n", strerror(errno));
    rc = 1;
  }
  for (long n = 0; rc == 0 && n < samples;) {
    struct epoll_event got;
    int k = epoll_wait(ep, &got, 1, WAIT_MS);
    if (k < 0 && errno == EINTR)
      continue;
    if (k < 0) {
      fprintf(stderr, "cm_wake: epoll_wait: %s\n", strerror(errno));
      rc = 1;
    } else if (k == 0) {
      fprintf(stderr, "cm_wake: no stamp within %d s\n", WAIT_MS / 1000);
      rc = 1;
    } else {
      double stamp;
      if (read_full(rfd, &stamp, sizeof(stamp)) != 0) {
        fprintf(stderr, "cm_wake: the writer is gone after %ld stamps\n", n);
        rc = 1;
        break;
      }
      lat[n++] = now_s() - stamp;
      if (write_full(ack_fd, "k", 1) != 0) {
        fprintf(stderr, "cm_wake: cannot acknowledge: %s\n", strerror(errno));
        rc = 1;
      }
    }
  }
  if (ep >= 0)
    close(ep);
  return rc;
}

static void print_result(const double *taken, double *lat, long n,
                         double gap_ms, int raw) {
  printf("{");
  if (raw) {
    printf("\"latencies_us\": [");
    for (long i = 0; i < n; i++)
      printf("%s%.1f", i ? ", " : "", taken[i] * 1e6);
    printf("], ");
  }
  qsort(lat, (size_t)n, sizeof(double), cmp_double);
  double median =
      n % 2 ? lat[n / 2] : (lat[n / 2 - 1] + lat[n / 2]) / 2.0; /* n >= 1 */
  long p99 = (long)ceil(0.99 * (double)n) - 1;
  printf("\"samples\": %ld, \"gap_ms\": %g, \"median_us\": %.1f, "
         "\"p99_us\": %.1f, \"max_us\": %.1f}\n",
         n, gap_ms, median * 1e6, lat[p99] * 1e6, lat[n - 1] * 1e6);
}

int main(int argc, char **argv) {
  long samples = 500, wfd = -1, ack_fd = -1, seed_l;
  double gap_ms = 50.0;
  uint64_t seed = 1;
  int raw = 0;
  /* A peer gone is an error to report (EPIPE), not a silent death. */
  signal(SIGPIPE, SIG_IGN);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--samples") == 0 && i + 1 < argc) {
      if (parse_long(argv[++i], 1, 1000000, &samples) != 0)
        return usage();
    } else if (strcmp(a, "--gap-ms") == 0 && i + 1 < argc) {
      if (parse_ms(argv[++i], &gap_ms) != 0)
        return usage();
    } else if (strcmp(a, "--seed") == 0 && i + 1 < argc) {
      if (parse_long(argv[++i], 0, 2147483647L, &seed_l) != 0)
        return usage();
      seed = (uint64_t)seed_l;
    } else if (strcmp(a, "--raw") == 0) {
      raw = 1;
    } else if (strcmp(a, "--writer") == 0 && i + 2 < argc) {
      if (parse_long(argv[i + 1], 0, 1048576, &wfd) != 0 ||
          parse_long(argv[i + 2], 0, 1048576, &ack_fd) != 0)
        return usage();
      i += 2;
    } else {
      return usage();
    }
  }
  if (wfd >= 0)
    return writer((int)wfd, (int)ack_fd, samples, gap_ms, seed);

  int data[2], ack[2];
  if (pipe(data) != 0 || pipe(ack) != 0) {
    fprintf(stderr, "cm_wake: pipe: %s\n", strerror(errno));
    return 1;
  }
  pid_t pid = fork();
  if (pid < 0) {
    fprintf(stderr, "cm_wake: fork: %s\n", strerror(errno));
    return 1;
  }
  if (pid == 0) {
    close(data[0]);
    close(ack[1]);
    _exit(writer(data[1], ack[0], samples, gap_ms, seed));
  }
  close(data[1]);
  close(ack[0]);
  double *lat = malloc(sizeof(double) * (size_t)samples);
  double *taken = malloc(sizeof(double) * (size_t)samples);
  int rc = 1;
  if (lat == NULL || taken == NULL)
    fprintf(stderr, "cm_wake: out of memory\n");
  else
    rc = reader(data[0], ack[1], samples, taken);
  close(ack[1]);
  close(data[0]);
  if (rc != 0)
    kill(pid, SIGKILL);
  int status = 0;
  pid_t waited;
  while ((waited = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
    ;
  if (rc == 0 && waited != pid) {
    fprintf(stderr, "cm_wake: waitpid: %s\n", strerror(errno));
    rc = 1;
  } else if (rc == 0 && WIFSIGNALED(status)) {
    fprintf(stderr, "cm_wake: the writer was killed by signal %d\n",
            WTERMSIG(status));
    rc = 1;
  } else if (rc == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
    fprintf(stderr, "cm_wake: the writer exited with %d\n",
            WEXITSTATUS(status));
    rc = 1;
  }
  if (rc == 0) {
    memcpy(lat, taken, sizeof(double) * (size_t)samples);
    print_result(taken, lat, samples, gap_ms, raw);
  }
  free(lat);
  free(taken);
  return rc;
}
