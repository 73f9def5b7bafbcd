/*
 * Runner for the C unit tests. Usage: cm_tests [-l] [substring...]
 * Runs every registered test whose "file:name" contains one of the substrings
 * (all tests when none is given), in registration order, and prints
 * "N passed, N failed" as its last line.
 */
#include "cm_test.h"

#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CM_TEST_MAX 2048

struct cm_test_entry {
  const char *name;
  const char *file;
  cm_test_fn fn;
};

static struct cm_test_entry tests[CM_TEST_MAX];
static size_t ntests;
static jmp_buf fail_jmp;

void cm_test_register(const char *name, const char *file, cm_test_fn fn) {
  if (ntests == CM_TEST_MAX) {
    fprintf(stderr, "too many tests; raise CM_TEST_MAX\n");
    exit(2);
  }
  tests[ntests].name = name;
  tests[ntests].file = file;
  tests[ntests].fn = fn;
  ntests++;
}

void cm_test_fail(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "    %s:%d: ", file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  longjmp(fail_jmp, 1);
}

/* Defined by clang's profile runtime, linked only into the coverage build. */
int __llvm_profile_write_file(void) __attribute__((weak));
void __llvm_profile_set_filename(const char *name) __attribute__((weak));
/* Defined by LeakSanitizer, linked only into the ASan build; non-zero if it
 * found leaks (it prints them). Returns 0 when leak detection is off
 * (ASAN_OPTIONS=detect_leaks=0). */
int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

/* A child's exit status when LeakSanitizer found leaks in it: LSan's own. */
#define CM_TEST_CHILD_LEAKED 23

void cm_test_child_exit(int status) {
  const char *pattern = getenv("LLVM_PROFILE_FILE");
  char name[4096];
  if (__llvm_profile_write_file != NULL && pattern != NULL &&
      pattern[0] != '\0') {
    /* The runtime expanded %p to the parent's pid when it started, and
     * parses a name again only if it is new: the same path, spelt with a
     * "./" in front, makes it take this process's pid. */
    snprintf(name, sizeof(name), pattern[0] == '/' ? "/.%s" : "./%s", pattern);
    __llvm_profile_set_filename(name);
    (void)__llvm_profile_write_file();
  }
  /* _exit skips the leak check that exit would run at the end of the
   * process: run it here, so what a child leaks fails its test. */
  if (__lsan_do_recoverable_leak_check != NULL &&
      __lsan_do_recoverable_leak_check() != 0)
    _exit(CM_TEST_CHILD_LEAKED);
  _exit(status);
}

int cm_test_in_child(void (*fn)(void *), void *arg, unsigned ms) {
  struct timespec pause = {0, 5 * 1000 * 1000};
  unsigned waited = 0;
  int status;
  pid_t pid;
  fflush(NULL);
  pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    /* A failed check lands here, in the child: end it, not the run. */
    if (setjmp(fail_jmp) == 0) {
      fn(arg);
      cm_test_child_exit(0);
    }
    cm_test_child_exit(1);
  }
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid)
      break;
    if (r < 0 || waited >= ms) {
      kill(pid, SIGKILL);
      (void)waitpid(pid, &status, 0);
      return -1;
    }
    nanosleep(&pause, NULL);
    waited += 5;
  }
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

static const char *basename_of(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

static int selected(const struct cm_test_entry *t, int argc, char **argv) {
  char full[512];
  int i;
  if (argc <= 1)
    return 1;
  snprintf(full, sizeof(full), "%s:%s", basename_of(t->file), t->name);
  for (i = 1; i < argc; i++)
    if (strstr(full, argv[i]) != NULL)
      return 1;
  return 0;
}

static double now_sec(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  static size_t i, passed, failed;
  if (argc > 1 && strcmp(argv[1], "-l") == 0) {
    for (i = 0; i < ntests; i++)
      printf("%s:%s\n", basename_of(tests[i].file), tests[i].name);
    return 0;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  for (i = 0; i < ntests; i++) {
    volatile double t0;
    if (!selected(&tests[i], argc, argv))
      continue;
    t0 = now_sec();
    if (setjmp(fail_jmp) == 0) {
      tests[i].fn();
      passed++;
      printf("ok   %s:%s (%.3fs)\n", basename_of(tests[i].file), tests[i].name,
             now_sec() - t0);
    } else {
      failed++;
      printf("FAIL %s:%s\n", basename_of(tests[i].file), tests[i].name);
    }
  }
  printf("%zu passed, %zu failed\n", passed, failed);
  return failed == 0 && passed > 0 ? 0 : 1;
}
