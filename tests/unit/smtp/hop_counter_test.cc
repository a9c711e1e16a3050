// smtp/hop_counter: Received: fields of the header section only, in any
// case, not continuations nor body lines, at every split of the input.
#include <gtest/gtest.h>

#include <ringrelay/smtp/hop_counter.hh>
#include <string>

namespace ringrelay::smtp {
namespace {

struct hop_case {
  const char* name;
  std::string body;
  std::uint32_t count;
  bool done;
};

std::string received(int n) {
  std::string out;
  for (int i = 0; i < n; ++i)
    out += "Received: from h" + std::to_string(i) + " by relay.test;\r\n\tThu, 3 Dec 2026\r\n";
  return out;
}

TEST(hop_counter, counts_received_fields_of_the_header_section_at_every_split) {
  const hop_case cases[] = {
      {"none", "Subject: x\r\n\r\nbody\r\n", 0, true},
      {"three", received(3) + "Subject: x\r\n\r\nReceived: in the body\r\n", 3, true},
      {"any case", "RECEIVED: a\r\nreceived:b\r\nReCeIvEd: c\r\n\r\n", 3, true},
      {"not a prefix match", "Received-SPF: pass\r\nX-Received: a\r\nReceived : b\r\n\r\n", 0,
       true},
      {"continuation lines", "Subject: a\r\n Received: folded\r\n\tReceived: x\r\n\r\n", 0, true},
      {"empty header section", "\r\nReceived: body\r\n", 0, true},
      {"no end yet", received(2), 2, false},
      {"fifty one", received(51) + "\r\n", 51, true},
  };
  for (const auto& c : cases) {
    for (std::size_t cut = 0; cut <= c.body.size(); ++cut) {
      hop_counter h;
      h.feed(std::string_view(c.body).substr(0, cut));
      h.feed(std::string_view(c.body).substr(cut));
      EXPECT_EQ(h.count(), c.count) << c.name << " cut at " << cut;
      EXPECT_EQ(h.done(), c.done) << c.name << " cut at " << cut;
    }
  }
}

TEST(hop_counter, stops_after_the_header_budget) {
  hop_counter h;
  std::string line = "X-Filler: " + std::string(990, 'a') + "\r\n";
  while (!h.done()) h.feed(line);
  h.feed(received(5));
  EXPECT_EQ(h.count(), 0u);
  h.reset();
  EXPECT_FALSE(h.done());
  h.feed(received(1) + "\r\n");
  EXPECT_EQ(h.count(), 1u);
}

}  // namespace
}  // namespace ringrelay::smtp
