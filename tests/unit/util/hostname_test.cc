#include <gtest/gtest.h>

#include <ringrelay/util/hostname.hh>
#include <string>

namespace ringrelay::util {
namespace {

TEST(hostname, rfc1123_names) {
  struct row {
    std::string name;
    bool valid;
  };
  const row rows[] = {
      {"relay.example.com", true},
      {"a", true},
      {"xn--bcher-kva.example", true},
      {"1.2.3.4", true},  // digits are letters in RFC 1123 2.1
      {std::string(63, 'a') + ".com", true},
      {std::string(64, 'a') + ".com", false},
      {std::string(253, 'a')
           .replace(50, 1, ".")
           .replace(101, 1, ".")
           .replace(152, 1, ".")
           .replace(203, 1, "."),
       true},
      {std::string(254, 'a'), false},
      {"", false},
      {".example", false},
      {"example.", false},
      {"a..b", false},
      {"-a.example", false},
      {"a-.example", false},
      {"a_b.example", false},
      {"a b.example", false},
      {"bücher.example", false},
  };
  for (const auto& r : rows) EXPECT_EQ(valid_hostname(r.name), r.valid) << r.name;
}

}  // namespace
}  // namespace ringrelay::util
