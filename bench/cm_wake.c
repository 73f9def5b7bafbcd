/*
 * The machine's wake-up floor without Python: how long an idle process
 * blocked in epoll_wait takes to run again once another process has written
 * the pipe it watches. bench/api_bench.py measures the same wake-up with an
 * asyncio event loop as the reader (its "wake-up floor"); this is the part
 * of that figure no interpreter, event loop or library is in.
 *
 * A child process sleeps an idle gap drawn uniformly from [0, --gap-ms),
 * takes CLOCK_MONOTONIC and writes it to the pipe; the parent, blocked in
 * epoll_wait, reads it and takes the clock again. One stamp is in flight
 * at a time (the parent acknowledges each through a second pipe).
 *
 * With --writer FD ACK_FD it is the writer only, for a reader of another
 * program's (bench/api_bench.py's asyncio loop): it writes each stamp (a
 * native double, seconds) to FD and waits for one byte on ACK_FD.
 *
 * Usage:
 *   cm_wake [--samples N] [--gap-ms MS] [--seed K] [--raw] [--writer FD ACK_FD]
 * Prints one JSON object: the latencies' median, p99 and max in
 * microseconds, and the sample count; with --raw, every latency too, in
 * the order taken (the writer alone prints nothing).
 * Stops by itself after N samples, or when the reader goes away.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

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

/* The writer: gap, stamp, write; then wait for the reader's ack. */
static int writer(int wfd, int ack_fd, int samples, double gap_ms,
                  uint64_t seed) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (int i = 0; i < samples; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    double gap = gap_ms / 1000.0 * (double)(x >> 11) / 9007199254740992.0;
    struct timespec ts = {(time_t)gap,
                          (long)((gap - (double)(time_t)gap) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
      ;
    double stamp = now_s();
    char ack;
    if (write_full(wfd, &stamp, sizeof(stamp)) != 0 ||
        read_full(ack_fd, &ack, 1) != 0)
      return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  int samples = 500;
  double gap_ms = 50.0;
  uint64_t seed = 1;
  int wfd = -1, ack_fd = -1, raw = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--samples") == 0 && i + 1 < argc)
      samples = atoi(argv[++i]);
    else if (strcmp(argv[i], "--gap-ms") == 0 && i + 1 < argc)
      gap_ms = atof(argv[++i]);
    else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
      seed = strtoull(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--raw") == 0)
      raw = 1;
    else if (strcmp(argv[i], "--writer") == 0 && i + 2 < argc) {
      wfd = atoi(argv[++i]);
      ack_fd = atoi(argv[++i]);
    } else {
      fprintf(stderr, "usage: cm_wake [--samples N] [--gap-ms MS] [--seed K] "
                      "[--raw] [--writer FD ACK_FD]\n");
      return 2;
    }
  }
  if (samples < 1 || samples > 1000000 ||
      !(gap_ms >= 0.0 && gap_ms <= 10000.0)) {
    fprintf(stderr,
            "cm_wake: --samples must be 1..1000000, --gap-ms 0..10000\n");
    return 2;
  }
  if (wfd >= 0 || ack_fd >= 0) {
    if (wfd < 0 || ack_fd < 0) {
      fprintf(stderr, "cm_wake: --writer needs two descriptors\n");
      return 2;
    }
    return writer(wfd, ack_fd, samples, gap_ms, seed);
  }
  int data[2], ack[2];
  if (pipe(data) != 0 || pipe(ack) != 0) {
    perror("cm_wake: pipe");
    return 1;
  }
  pid_t pid = fork();
  if (pid < 0) {
    perror("cm_wake: fork");
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
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = data[0]};
  int rc = 0, n = 0;
  if (lat == NULL || ep < 0 ||
      epoll_ctl(ep, EPOLL_CTL_ADD, data[0], &ev) != 0) {
    perror("cm_wake: set-up");
    rc = 1;
  }
  while (rc == 0 && n < samples) {
    struct epoll_event got;
    int k = epoll_wait(ep, &got, 1, 30000);
    if (k < 0 && errno == EINTR)
      continue;
    if (k != 1) {
      fprintf(stderr, "cm_wake: no stamp within 30 s\n");
      rc = 1;
      break;
    }
    double stamp;
    if (read_full(data[0], &stamp, sizeof(stamp)) != 0) {
      rc = 1;
      break;
    }
    lat[n++] = now_s() - stamp;
    if (write_full(ack[1], "k", 1) != 0)
      rc = 1;
  }
  close(ack[1]);
  close(data[0]);
  if (rc != 0)
    kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  if (ep >= 0)
    close(ep);
  if (rc == 0) {
    printf("{");
    if (raw) {
      printf("\"latencies_us\": [");
      for (int i = 0; i < n; i++)
        printf("%s%.1f", i ? ", " : "", lat[i] * 1e6);
      printf("], ");
    }
    qsort(lat, (size_t)n, sizeof(double), cmp_double);
    size_t p99 = (size_t)((double)(n - 1) * 0.99);
    printf("\"samples\": %d, \"gap_ms\": %g, \"median_us\": %.1f, \"p99_us\": "
           "%.1f, "
           "\"max_us\": %.1f}\n",
           n, gap_ms, lat[n / 2] * 1e6, lat[p99] * 1e6, lat[n - 1] * 1e6);
  }
  free(lat);
  return rc;
}
