// The checks the core's C++ tests count: a failed check prints its line and the run fails at the end.
#pragma once

#include <cmath>
#include <cstdio>
#include <functional>

inline int g_failures = 0;
inline int g_checks = 0;

#define EXPECT(condition)                                                              \
  do {                                                                                 \
    ++g_checks;                                                                        \
    if (!(condition)) {                                                                \
      ++g_failures;                                                                    \
      std::fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #condition);    \
    }                                                                                  \
  } while (0)
#define EXPECT_NEAR(a, b, tol) EXPECT(std::fabs((a) - (b)) <= (tol))

template <typename E>
bool throws(const std::function<void()>& f) {
  try {
    f();
  } catch (const E&) {
    return true;
  } catch (...) {
    return false;
  }
  return false;
}
