// time_zone — a test fixture that sets TZ for one test and puts the old
// value back afterwards (dates in Received headers and bounces are local
// time).
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <time.h>

#include <optional>
#include <string>

namespace ringrelay::delivery::test {

class time_zone : public ::testing::Test {
 protected:
  void TearDown() override {
    if (!_touched) return;
    if (_saved)
      ::setenv("TZ", _saved->c_str(), 1);
    else
      ::unsetenv("TZ");
    ::tzset();
  }
  void use(const char* tz) {
    if (!_touched) {
      if (const char* old = ::getenv("TZ")) _saved = old;
      _touched = true;
    }
    ::setenv("TZ", tz, 1);
    ::tzset();  // localtime_r reads TZ only once unless told
  }

 private:
  std::optional<std::string> _saved;
  bool _touched = false;
};

}  // namespace ringrelay::delivery::test
