/*
 * A small self-registering C test harness. Each test file defines tests with
 * CM_TEST(name) { ... } and checks with CM_CHECK / CM_CHECK_EQ; a failed check
 * aborts the current test only and the runner reports it.
 */
#ifndef CM_TEST_H
#define CM_TEST_H

#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef void (*cm_test_fn)(void);

void cm_test_register(const char *name, const char *file, cm_test_fn fn);
void cm_test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));
/* _exit() for a fork() child: in the coverage build (make coverage) it
 * first writes the child's counts, as exit() would have, and in the ASan
 * build it first runs LeakSanitizer's check, as exit() would have, ending
 * with status 23 instead if the child leaked. */
void cm_test_child_exit(int status) __attribute__((noreturn));

/* Run fn(arg) in a fork() child and return how it ended: 0 if it returned,
 * 1 if one of its checks failed, the status it passed to
 * cm_test_child_exit, 23 if it leaked (ASan build, detect_leaks=1),
 * 128 + signal if a signal ended it, or -1 if it could
 * not start or had not ended within ms (it is then killed). */
int cm_test_in_child(void (*fn)(void *), void *arg, unsigned ms);

#define CM_TEST(name)                                                          \
  static void cm_test_##name(void);                                            \
  __attribute__((constructor)) static void cm_test_reg_##name(void) {          \
    cm_test_register(#name, __FILE__, cm_test_##name);                         \
  }                                                                            \
  static void cm_test_##name(void)

#define CM_CHECK(cond)                                                         \
  do {                                                                         \
    if (!(cond))                                                               \
      cm_test_fail(__FILE__, __LINE__, "check failed: %s", #cond);             \
  } while (0)

#define CM_CHECK_EQ(a, b)                                                      \
  do {                                                                         \
    long long cm_a_ = (long long)(a), cm_b_ = (long long)(b);                  \
    if (cm_a_ != cm_b_)                                                        \
      cm_test_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b,       \
                   cm_a_, cm_b_);                                              \
  } while (0)

#define CM_CHECK_NEAR(a, b, eps)                                               \
  do {                                                                         \
    double cm_a_ = (double)(a), cm_b_ = (double)(b);                           \
    double cm_d_ = cm_a_ > cm_b_ ? cm_a_ - cm_b_ : cm_b_ - cm_a_;              \
    if (!(cm_d_ <= (eps)))                                                     \
      cm_test_fail(__FILE__, __LINE__, "%s ~= %s: %.9g vs %.9g (eps %g)", #a,  \
                   #b, cm_a_, cm_b_, (double)(eps));                           \
  } while (0)

#define CM_CHECK_STR(a, b)                                                     \
  do {                                                                         \
    const char *cm_a_ = (a), *cm_b_ = (b);                                     \
    if (cm_a_ == NULL || cm_b_ == NULL || strcmp(cm_a_, cm_b_) != 0)           \
      cm_test_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b,   \
                   cm_a_ ? cm_a_ : "(null)", cm_b_ ? cm_b_ : "(null)");        \
  } while (0)

/* Check a call returned 0, printing the error name otherwise. */
#define CM_CHECK_OK(call)                                                      \
  do {                                                                         \
    int cm_rc_ = (call);                                                       \
    if (cm_rc_ != 0)                                                           \
      cm_test_fail(__FILE__, __LINE__, "%s returned %d", #call, cm_rc_);       \
  } while (0)

#endif
