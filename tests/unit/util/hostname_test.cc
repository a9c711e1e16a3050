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

TEST(hostname, dns_names_also_take_underscores_and_edge_hyphens) {
  const struct {
    std::string name;
    bool valid;
  } rows[] = {
      {"_spf.Relay.example", true},
      {"_dmarc.example.com", true},
      {"-a.example", true},
      {"a", true},
      {std::string(63, 'a') + ".example", true},
      {std::string(64, 'a') + ".example", false},
      {std::string(254, 'a'), false},
      {"", false},
      {"example.", false},
      {".example", false},
      {"a..b", false},
      {"a b.example", false},
      {"bücher.example", false},
      {"192.0.2.1", true},
  };
  for (const auto& r : rows) EXPECT_EQ(valid_dns_name(r.name), r.valid) << r.name;
}

TEST(hostname, ascii_lowered_leaves_other_octets_alone) {
  EXPECT_EQ(ascii_lowered("MX.Example.NET"), "mx.example.net");
  EXPECT_EQ(ascii_lowered("B\xc3\x9c"
                          "CHER"),
            "b\xc3\x9c"
            "cher");
  EXPECT_EQ(ascii_lower('@'), '@');
  EXPECT_EQ(ascii_lower('Z'), 'z');
}

}  // namespace
}  // namespace ringrelay::util
