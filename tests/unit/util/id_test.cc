#include <gtest/gtest.h>

#include <ringrelay/util/id.hh>
#include <set>

namespace ringrelay::util {
namespace {

TEST(queue_id, unique_and_ordered_within_a_second_and_across_shards) {
  queue_id_generator a(0), b(1);
  std::set<queue_id> seen;
  queue_id last = 0;
  for (int i = 0; i < 1000; ++i) {
    auto id = a.next(1'800'000'000);
    EXPECT_GT(id, last);
    last = id;
    EXPECT_TRUE(seen.insert(id).second);
    EXPECT_TRUE(seen.insert(b.next(1'800'000'000)).second);
  }
}

TEST(queue_id, counter_overflow_borrows_the_next_second_instead_of_repeating) {
  queue_id_generator g(3);
  queue_id last = 0;
  for (std::uint32_t i = 0; i < (1u << 24) + 5; ++i) {
    auto id = g.next(100);
    ASSERT_GT(id, last);
    last = id;
  }
  // A clock that steps back must not reuse IDs either.
  EXPECT_GT(g.next(50), last);
}

TEST(queue_id, formats_as_sixteen_hex_digits) {
  EXPECT_EQ(format_queue_id(0x0123456789abcdefull), "0123456789ABCDEF");
  EXPECT_EQ(format_queue_id(0), "0000000000000000");
}

}  // namespace
}  // namespace ringrelay::util
