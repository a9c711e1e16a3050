// Relay charging (SPEC.md §5, DESIGN.md §4), as tables: what reserve,
// settle and release take from a slot and give back, across a day change;
// that many threads charging one slot admit exactly the quota plus the
// blocks; and the quota's day in a time zone, checked against the C library
// for every zone the system has.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <ringrelay/accounts/counters.hh>
#include <ringrelay/accounts/quota.hh>
#include <ringrelay/accounts/timestamp.hh>
#include <ringrelay/config/config.hh>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace ringrelay::accounts {
namespace {

constexpr std::uint32_t D = 20000;  // 2024-10-04
constexpr std::int64_t int64_max = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t int64_min = std::numeric_limits<std::int64_t>::min();

// ---- charging, one thread ----

struct state {
  std::uint32_t day;
  std::uint64_t used;
  std::int64_t blocks;
};

void set(counter_slot& slot, state s) {
  slot.usage_word.store(pack_usage(s.day, s.used));
  slot.blocks.store(s.blocks);
}

std::string str(state s) {
  return "day " + std::to_string(s.day) + " used " + std::to_string(s.used) + ", blocks " +
         std::to_string(s.blocks);
}

std::string str(const counter_slot& slot) {
  const std::uint64_t word = slot.usage_word.load();
  return str({packed_day(word), packed_usage(word), slot.blocks.load()});
}

std::string str(const reservation& r) {
  return "day " + std::to_string(r.day) + ": quota " + std::to_string(r.quota) + ", blocks " +
         std::to_string(r.blocks) + ", ended " + std::to_string(r.ended);
}

std::string str(const std::optional<reservation>& r) {
  return r ? str(*r) : "refused";
}

reservation held(std::uint32_t day, std::uint64_t quota, std::uint64_t blocks,
                 std::uint64_t ended = 0) {
  return {.day = day, .quota = quota, .blocks = blocks, .ended = ended};
}

TEST(counters_reserve, takes_quota_then_blocks_or_nothing) {
  constexpr std::uint64_t q = 10;
  constexpr std::uint64_t u64_max = std::numeric_limits<std::uint64_t>::max();
  struct row {
    const char* what;
    state before;
    std::uint32_t day;
    std::uint64_t relays;
    std::uint64_t quota;
    std::optional<reservation> expect;
    state after;
  };
  const row rows[] = {
      {"quota only", {D, 0, 5}, D, 3, q, held(D, 3, 0), {D, 3, 5}},
      {"up to the quota exactly", {D, 7, 5}, D, 3, q, held(D, 3, 0), {D, 10, 5}},
      {"the quota's rest, then blocks", {D, 8, 5}, D, 4, q, held(D, 2, 2), {D, 10, 3}},
      {"blocks once the quota is spent", {D, 10, 5}, D, 5, q, held(D, 0, 5), {D, 10, 0}},
      {"refused: one block short", {D, 10, 5}, D, 6, q, std::nullopt, {D, 10, 5}},
      {"refused: quota and blocks together short", {D, 8, 5}, D, 8, q, std::nullopt, {D, 8, 5}},
      {"an older day's word counts as nothing used",
       {D - 1, 10, 5},
       D,
       3,
       q,
       held(D, 3, 0),
       {D, 3, 5}},
      {"a new day's whole quota, then blocks",
       {D - 1, 10, 5},
       D,
       12,
       q,
       held(D, 10, 2),
       {D, 10, 3}},
      {"a newer day's word wins over a lagging clock",
       {D + 1, 4, 5},
       D,
       3,
       q,
       held(D + 1, 3, 0),
       {D + 1, 7, 5}},
      {"no quota: blocks only", {D, 0, 5}, D, 5, 0, held(D, 0, 5), {D, 0, 0}},
      {"a quota lowered below the usage: blocks", {D, 8, 5}, D, 2, 5, held(D, 0, 2), {D, 8, 3}},
      {"a negative balance covers nothing", {D, 10, -3}, D, 1, q, std::nullopt, {D, 10, -3}},
      {"zero relays", {D, 4, 5}, D, 0, q, held(D, 0, 0), {D, 4, 5}},
      {"more than int64 relays: refused, no overflow",
       {D, 0, int64_max},
       D,
       u64_max,
       q,
       std::nullopt,
       {D, 0, int64_max}},
      {"a quota past the word's range is capped",
       {D, max_usage - 1, 0},
       D,
       2,
       u64_max,
       std::nullopt,
       {D, max_usage - 1, 0}},
      {"the word's last relay, then a block",
       {D, max_usage - 1, 1},
       D,
       2,
       u64_max,
       held(D, 1, 1),
       {D, max_usage, 0}},
  };
  for (const row& r : rows) {
    SCOPED_TRACE(r.what);
    counter_slot slot;
    set(slot, r.before);
    EXPECT_EQ(str(reserve(slot, r.day, r.relays, r.quota)), str(r.expect));
    EXPECT_EQ(str(slot), str(r.after));
  }
}

TEST(counters_settle, adjusts_to_the_exact_charge) {
  constexpr std::uint64_t q = 10;
  struct row {
    const char* what;
    state before;
    std::uint64_t reserved;
    std::uint64_t exact;
    bool ok;
    reservation expect;
    state after;
  };
  const row rows[] = {
      {"exact: nothing changes", {D, 0, 5}, 4, 4, true, held(D, 4, 0), {D, 4, 5}},
      {"down, within the quota", {D, 0, 5}, 5, 2, true, held(D, 2, 0), {D, 2, 5}},
      {"down gives blocks back first", {D, 8, 5}, 4, 3, true, held(D, 2, 1), {D, 10, 4}},
      {"down past the blocks into the quota", {D, 8, 5}, 4, 1, true, held(D, 1, 0), {D, 9, 5}},
      {"down to nothing", {D, 8, 5}, 4, 0, true, held(D, 0, 0), {D, 8, 5}},
      {"up, within the quota", {D, 0, 5}, 2, 5, true, held(D, 5, 0), {D, 5, 5}},
      {"up, the quota's rest then blocks", {D, 7, 5}, 2, 5, true, held(D, 3, 2), {D, 10, 3}},
      {"up to the last block", {D, 7, 5}, 2, 8, true, held(D, 3, 5), {D, 10, 0}},
      {"up refused: nothing changes", {D, 7, 5}, 2, 9, false, held(D, 2, 0), {D, 9, 5}},
  };
  for (const row& r : rows) {
    SCOPED_TRACE(r.what);
    counter_slot slot;
    set(slot, r.before);
    auto res = reserve(slot, D, r.reserved, q);
    ASSERT_TRUE(res);
    EXPECT_EQ(settle(slot, *res, D, r.exact, q), r.ok);
    EXPECT_EQ(str(*res), str(r.expect));
    EXPECT_EQ(str(slot), str(r.after));
  }
}

TEST(counters_release, gives_back_exactly_what_was_taken) {
  constexpr std::uint64_t q = 10;
  struct row {
    const char* what;
    state before;
    std::uint64_t relays;
  };
  const row rows[] = {
      {"quota only", {D, 3, 5}, 4},
      {"quota and blocks", {D, 8, 5}, 6},
      {"blocks only", {D, 10, 5}, 5},
      {"nothing", {D, 4, 5}, 0},
  };
  for (const row& r : rows) {
    SCOPED_TRACE(r.what);
    counter_slot slot;
    set(slot, r.before);
    auto res = reserve(slot, D, r.relays, q);
    ASSERT_TRUE(res);
    release(slot, *res);
    EXPECT_EQ(str(slot), str(r.before));
    EXPECT_EQ(res->relays(), 0u);
  }
}

// A transaction that lost quota to an earlier one keeps blocks only while
// the quota is spent: once another transaction gives quota back, settle
// moves the blocks to it.
TEST(counters_settle, blocks_pay_only_for_what_the_quota_cannot) {
  counter_slot slot;
  set(slot, {D, 0, 5});
  auto big = reserve(slot, D, 10, 10);
  auto late = reserve(slot, D, 3, 10);
  ASSERT_TRUE(big && late);
  EXPECT_EQ(str(*late), str(held(D, 0, 3)));
  release(slot, *big);
  EXPECT_TRUE(settle(slot, *late, D, 3, 10));
  EXPECT_EQ(str(*late), str(held(D, 3, 0)));
  EXPECT_EQ(str(slot), str(state{D, 3, 5}));
}

TEST(counters_settle, grows_a_transaction_by_each_recipient) {
  counter_slot slot;
  set(slot, {D, 8, 5});
  auto r = reserve(slot, D, 1, 10);
  ASSERT_TRUE(r);
  for (int rcpt = 0; rcpt < 3; ++rcpt) EXPECT_TRUE(settle(slot, *r, D, r->relays() + 1, 10));
  EXPECT_EQ(str(*r), str(held(D, 2, 2)));
  EXPECT_EQ(str(slot), str(state{D, 10, 3}));
}

// ---- charging across a day change ----

TEST(counters_day_change, release_leaves_the_new_day_alone) {
  counter_slot slot;
  set(slot, {D, 8, 5});
  auto r = reserve(slot, D, 7, 10);  // 2 from the quota, 5 from blocks
  ASSERT_TRUE(r);
  ASSERT_TRUE(reserve(slot, D + 1, 1, 10));  // another transaction, after midnight
  release(slot, *r);
  EXPECT_EQ(str(slot), str(state{D + 1, 1, 5})) << "blocks come back, day D's quota is gone";
}

TEST(counters_day_change, release_before_anyone_charged_the_new_day) {
  counter_slot slot;
  set(slot, {D, 6, 5});
  auto r = reserve(slot, D, 3, 10);
  ASSERT_TRUE(r);
  release(slot, *r);  // on day D + 1, but the word still holds day D
  EXPECT_EQ(str(slot), str(state{D, 6, 5}));
}

TEST(counters_day_change, settle_down_drops_the_ended_days_excess) {
  counter_slot slot;
  set(slot, {D, 0, 5});
  auto r = reserve(slot, D, 5, 10);
  ASSERT_TRUE(r);
  ASSERT_TRUE(reserve(slot, D + 1, 3, 10));
  EXPECT_TRUE(settle(slot, *r, D + 1, 2, 10));
  EXPECT_EQ(str(*r), str(held(D, 2, 0)));
  EXPECT_EQ(str(slot), str(state{D + 1, 3, 5}));
}

TEST(counters_day_change, settle_up_charges_the_new_day) {
  counter_slot slot;
  set(slot, {D, 8, 5});
  auto r = reserve(slot, D, 4, 10);
  ASSERT_TRUE(r);
  EXPECT_EQ(str(*r), str(held(D, 2, 2)));
  ASSERT_TRUE(reserve(slot, D + 1, 1, 10));
  // 2 more from day D + 1's quota; day D's 2 are final; and the 2 blocks
  // move to the new day's quota, which has room.
  EXPECT_TRUE(settle(slot, *r, D + 1, 6, 10));
  EXPECT_EQ(str(*r), str(held(D + 1, 4, 0, 2)));
  EXPECT_EQ(str(slot), str(state{D + 1, 5, 5}));
  release(slot, *r);
  EXPECT_EQ(str(slot), str(state{D + 1, 1, 5}));
}

TEST(counters_day_change, settle_moves_blocks_to_a_fresh_day) {
  counter_slot slot;
  set(slot, {D, 8, 5});
  auto r = reserve(slot, D, 3, 10);
  ASSERT_TRUE(r);
  EXPECT_TRUE(settle(slot, *r, D + 1, 3, 10));
  EXPECT_EQ(str(*r), str(held(D + 1, 1, 0, 2)));
  EXPECT_EQ(str(slot), str(state{D + 1, 1, 5}));
}

TEST(counters_day_change, refused_settle_changes_nothing) {
  counter_slot slot;
  set(slot, {D, 0, 1});
  auto r = reserve(slot, D, 10, 10);
  ASSERT_TRUE(r);
  ASSERT_TRUE(reserve(slot, D + 1, 9, 10));
  EXPECT_FALSE(settle(slot, *r, D + 1, 13, 10));
  EXPECT_EQ(str(*r), str(held(D, 10, 0)));
  EXPECT_EQ(str(slot), str(state{D + 1, 9, 1}));
}

TEST(counters_blocks, add_saturates) {
  struct row {
    std::int64_t before, n, after;
  };
  const row rows[] = {
      {0, 5, 5}, {5, -8, -3}, {int64_max - 1, 5, int64_max}, {int64_min + 1, -5, int64_min}};
  for (const row& r : rows) {
    counter_slot slot;
    slot.blocks.store(r.before);
    EXPECT_EQ(add_blocks(slot, r.n), r.after) << r.before << " + " << r.n;
    EXPECT_EQ(slot.blocks.load(), r.after);
  }
}

// ---- charging, many threads, one account ----

// The test clock all threads read; one of them moves it past midnight
// halfway through. A sampler thread checks the slot while they run.
struct contended_run {
  static constexpr int threads = 8;
  static constexpr int per_thread = 10000;
  const std::uint64_t quota;
  const std::int64_t blocks;

  counter_slot slot;
  const quota_clock clock;
  const std::int64_t start = *parse_rfc3339("2026-11-28T20:00:00Z");
  const std::uint32_t day0 = clock.day_number(start);
  std::atomic<std::int64_t> now{start};
  std::atomic<int> ops{0};
  std::atomic<bool> over_quota{false}, negative_blocks{false};

  contended_run(std::uint64_t daily_quota, std::int64_t initial_blocks)
      : quota(daily_quota), blocks(initial_blocks) {
    slot.blocks.store(blocks);
  }

  // Each thread's day, read once per operation as a shard would.
  std::uint32_t today() {
    if (ops.fetch_add(1) == threads * per_thread / 2) now.store(clock.next_reset(now.load()));
    return clock.day_number(now.load());
  }

  // Runs `work(thread index, rng)` on every thread while the sampler runs.
  template <typename Work>
  void run(Work work) {
    std::atomic<bool> done{false};
    std::thread sampler([&] {
      while (!done.load()) {
        if (packed_usage(slot.usage_word.load()) > quota) over_quota = true;
        if (slot.blocks.load() < 0) negative_blocks = true;
      }
    });
    std::vector<std::thread> workers;
    std::atomic<int> ready{0};
    for (int t = 0; t < threads; ++t)
      workers.emplace_back([&, t] {
        std::mt19937 rng(static_cast<unsigned>(t) + 1);
        ready.fetch_add(1);
        while (ready.load() < threads) std::this_thread::yield();  // start together
        work(t, rng);
      });
    for (auto& w : workers) w.join();
    done = true;
    sampler.join();
    EXPECT_FALSE(over_quota) << "a day's usage passed the quota";
    EXPECT_FALSE(negative_blocks) << "the block balance went below zero";
    EXPECT_EQ(clock.day_number(now.load()), day0 + 1) << "the day changed once";
  }
};

// Reserves only, and never gives back until the end.
void admits_exactly(std::uint64_t quota, std::int64_t blocks) {
  contended_run run(quota, blocks);
  std::vector<std::vector<reservation>> admitted(contended_run::threads);
  run.run([&](int t, std::mt19937& rng) {
    std::uniform_int_distribution<std::uint64_t> size(1, 6);
    for (int i = 0; i < contended_run::per_thread; ++i)
      if (auto r = reserve(run.slot, run.today(), size(rng), quota)) admitted[t].push_back(*r);
  });
  std::uint64_t quota_on[2] = {0, 0};
  std::uint64_t from_blocks = 0;
  for (const auto& list : admitted)
    for (const reservation& r : list) {
      ASSERT_TRUE(r.day == run.day0 || r.day == run.day0 + 1) << str(r);
      quota_on[r.day - run.day0] += r.quota;
      from_blocks += r.blocks;
    }
  EXPECT_EQ(quota_on[0], quota);
  EXPECT_EQ(quota_on[1], quota);
  EXPECT_EQ(from_blocks, static_cast<std::uint64_t>(blocks));
  EXPECT_EQ(run.slot.blocks.load(), 0);
  EXPECT_EQ(run.slot.usage(run.day0 + 1), quota);

  for (auto& list : admitted)
    for (reservation& r : list) release(run.slot, r);
  EXPECT_EQ(run.slot.blocks.load(), blocks);
  EXPECT_EQ(run.slot.usage(run.day0 + 1), 0u);
}

// Whole transactions: reserve at RCPT, grow by more recipients, settle up
// or down at end of data (discarding the message when the account cannot
// cover it), or release at RSET; a refused settle changes nothing, so the
// discarded message's release gives back exactly the reservation. What the
// kept reservations say must be what the slot says; releasing them all
// restores the start.
void transactions_balance(std::uint64_t quota, std::int64_t blocks) {
  contended_run run(quota, blocks);
  std::vector<std::vector<reservation>> kept(contended_run::threads);
  std::atomic<std::uint64_t> wrong_size{0};
  run.run([&](int t, std::mt19937& rng) {
    std::uniform_int_distribution<std::uint64_t> size(1, 6);
    std::uniform_int_distribution<int> step(0, 3);
    for (int i = 0; i < contended_run::per_thread; ++i) {
      auto r = reserve(run.slot, run.today(), size(rng), quota);
      if (!r) continue;
      std::uint64_t exact = r->relays();
      switch (step(rng)) {
        case 0:  // RSET
          release(run.slot, *r);
          continue;
        case 1:  // more recipients, or a bigger message than SIZE= said
          exact = r->relays() + size(rng);
          break;
        case 2:  // any exact charge
          exact = size(rng);
          break;
        default:  // as reserved
          break;
      }
      if (!settle(run.slot, *r, run.today(), exact, quota)) {
        release(run.slot, *r);
        continue;
      }
      if (r->relays() != exact) ++wrong_size;
      kept[t].push_back(*r);
    }
  });
  EXPECT_EQ(wrong_size.load(), 0u);
  std::uint64_t quota_on[2] = {0, 0};
  std::uint64_t from_blocks = 0;
  for (const auto& list : kept)
    for (const reservation& r : list) {
      ASSERT_TRUE(r.day == run.day0 || r.day == run.day0 + 1) << str(r);
      quota_on[r.day - run.day0] += r.quota;
      quota_on[0] += r.ended;  // only day 0 can have ended
      from_blocks += r.blocks;
    }
  EXPECT_LE(quota_on[0], quota);
  EXPECT_EQ(quota_on[1], run.slot.usage(run.day0 + 1));
  EXPECT_EQ(from_blocks + static_cast<std::uint64_t>(run.slot.blocks.load()),
            static_cast<std::uint64_t>(blocks));

  for (auto& list : kept)
    for (reservation& r : list) release(run.slot, r);
  EXPECT_EQ(run.slot.blocks.load(), blocks);
  EXPECT_EQ(run.slot.usage(run.day0 + 1), 0u);
}

// Two accounts: a small quota makes the day's edge the contended part; a
// large one keeps most requests racing on the usage word.
constexpr std::pair<std::uint64_t, std::int64_t> quota_and_blocks[] = {{1000, 3000},
                                                                       {60000, 40000}};

// Far more is asked than the account has (80,000 requests of 1 to 6
// relays, half of them on each day), so both days' quotas and all the
// blocks must be used to the last relay, and never one more. A refusal that
// changed anything would leave a relay unaccounted for in the sums.
TEST(counters_concurrency, admits_exactly_quota_plus_blocks_across_a_day_change) {
  for (const auto& [quota, blocks] : quota_and_blocks) {
    SCOPED_TRACE("quota " + std::to_string(quota) + ", blocks " + std::to_string(blocks));
    admits_exactly(quota, blocks);
  }
}

TEST(counters_concurrency, transactions_balance_across_a_day_change) {
  for (const auto& [quota, blocks] : quota_and_blocks) {
    SCOPED_TRACE("quota " + std::to_string(quota) + ", blocks " + std::to_string(blocks));
    transactions_balance(quota, blocks);
  }
}

// Threads fighting over the last two relays of quota and the last two
// blocks, each giving back at once what it got: the straddling reserves
// lose CAS races, recompute, and sometimes refuse after holding blocks.
// Whatever the interleaving, the slot must end exactly where it started.
TEST(counters_concurrency, races_at_the_edge_give_everything_back) {
  constexpr int threads = 4;
  constexpr int rounds = 1000000;
  counter_slot slot;
  set(slot, {D, 8, 2});
  std::atomic<int> ready{0};
  std::atomic<bool> wrong{false};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t) + 1);
      std::uniform_int_distribution<std::uint64_t> size(1, 4);
      ready.fetch_add(1);
      while (ready.load() < threads) std::this_thread::yield();
      for (int i = 0; i < rounds; ++i) {
        const std::uint64_t n = size(rng);
        auto r = reserve(slot, D, n, 10);
        if (!r) continue;
        if (r->relays() != n || packed_usage(slot.usage_word.load()) > 10 || slot.blocks.load() < 0)
          wrong = true;
        release(slot, *r);
      }
    });
  for (auto& w : workers) w.join();
  EXPECT_FALSE(wrong) << "a reservation of the wrong size, or past the quota or the blocks";
  EXPECT_EQ(str(slot), str(state{D, 8, 2}));
}

// ---- the quota's day ----

std::int64_t at(const char* rfc3339) {
  const auto t = parse_rfc3339(rfc3339);
  EXPECT_TRUE(t) << rfc3339;
  return t.value_or(0);
}

std::uint32_t date(const char* yyyy_mm_dd) {
  return static_cast<std::uint32_t>(at((std::string(yyyy_mm_dd) + "T00:00:00Z").c_str()) / 86400);
}

bool have_zoneinfo() {
  return std::filesystem::exists("/usr/share/zoneinfo/Europe/Berlin");
}

TEST(quota_clock, utc_by_default) {
  const quota_clock utc;
  EXPECT_EQ(utc.zone(), "UTC");
  EXPECT_EQ(utc.day_number(0), 0u);
  EXPECT_EQ(utc.day_number(86399), 0u);
  EXPECT_EQ(utc.day_number(86400), 1u);
  EXPECT_EQ(utc.next_reset(0), 86400);
  EXPECT_EQ(utc.next_reset(86399), 86400);
  EXPECT_EQ(utc.day_number(-1), 0u) << "before 1970 is clamped";
  EXPECT_EQ(utc.day_number(int64_max), max_day) << "the far future is clamped";
  EXPECT_EQ(utc.next_reset(int64_max), int64_max);
  EXPECT_EQ(utc.format(at("2026-11-29T00:00:00Z")), "2026-11-29T00:00:00+00:00");
  EXPECT_EQ(quota_clock::load("UTC", "/nonexistent").day_number(86400), 1u);
}

TEST(quota_clock, days_and_resets_in_zones) {
  if (!have_zoneinfo()) GTEST_SKIP() << "no /usr/share/zoneinfo (tzdata)";
  struct row {
    const char* zone;
    const char* now;  // UTC
    const char* day;  // the local date
    const char* reset;
    const char* reset_local;
  };
  const row rows[] = {
      {"UTC", "2026-11-28T12:00:00Z", "2026-11-28", "2026-11-29T00:00:00Z",
       "2026-11-29T00:00:00+00:00"},
      {"Etc/UTC", "2026-11-28T23:59:59Z", "2026-11-28", "2026-11-29T00:00:00Z",
       "2026-11-29T00:00:00+00:00"},
      // Berlin: CET +1, CEST +2 from 2026-03-29 01:00Z to 2026-10-25 01:00Z.
      {"Europe/Berlin", "2026-03-28T22:59:59Z", "2026-03-28", "2026-03-28T23:00:00Z",
       "2026-03-29T00:00:00+01:00"},
      {"Europe/Berlin", "2026-03-28T23:00:00Z", "2026-03-29", "2026-03-29T22:00:00Z",
       "2026-03-30T00:00:00+02:00"},
      {"Europe/Berlin", "2026-10-24T21:59:59Z", "2026-10-24", "2026-10-24T22:00:00Z",
       "2026-10-25T00:00:00+02:00"},
      {"Europe/Berlin", "2026-10-25T00:30:00Z", "2026-10-25", "2026-10-25T23:00:00Z",
       "2026-10-26T00:00:00+01:00"},
      // Auckland: NZDT +13 until 2026-04-05 03:00 local, NZST +12 until
      // 2026-09-27 02:00 local.
      {"Pacific/Auckland", "2026-01-01T10:59:59Z", "2026-01-01", "2026-01-01T11:00:00Z",
       "2026-01-02T00:00:00+13:00"},
      {"Pacific/Auckland", "2026-04-04T12:00:00Z", "2026-04-05", "2026-04-05T12:00:00Z",
       "2026-04-06T00:00:00+12:00"},
      {"Pacific/Auckland", "2026-09-26T12:00:00Z", "2026-09-27", "2026-09-27T11:00:00Z",
       "2026-09-28T00:00:00+13:00"},
      // New York: EST -5, EDT -4 from 2026-03-08 07:00Z to 2026-11-01 06:00Z.
      {"America/New_York", "2026-03-08T04:59:59Z", "2026-03-07", "2026-03-08T05:00:00Z",
       "2026-03-08T00:00:00-05:00"},
      {"America/New_York", "2026-03-08T05:00:00Z", "2026-03-08", "2026-03-09T04:00:00Z",
       "2026-03-09T00:00:00-04:00"},
      {"America/New_York", "2026-11-01T04:00:00Z", "2026-11-01", "2026-11-02T05:00:00Z",
       "2026-11-02T00:00:00-05:00"},
      // Havana springs forward at midnight: that day starts at 01:00.
      {"America/Havana", "2026-03-08T04:00:00Z", "2026-03-07", "2026-03-08T05:00:00Z",
       "2026-03-08T01:00:00-04:00"},
      {"Asia/Kolkata", "2026-11-28T18:29:59Z", "2026-11-28", "2026-11-28T18:30:00Z",
       "2026-11-29T00:00:00+05:30"},
      // Past the TZif file's last transition (2037): the footer's rule.
      {"Europe/Berlin", "2100-03-27T23:00:00Z", "2100-03-28", "2100-03-28T22:00:00Z",
       "2100-03-29T00:00:00+02:00"},
      {"America/New_York", "3000-07-01T03:59:59Z", "3000-06-30", "3000-07-01T04:00:00Z",
       "3000-07-01T00:00:00-04:00"},
  };
  for (const row& r : rows) {
    SCOPED_TRACE(std::string(r.zone) + " at " + r.now);
    const quota_clock clock = quota_clock::load(r.zone);
    EXPECT_EQ(clock.zone(), r.zone);
    EXPECT_EQ(clock.day_number(at(r.now)), date(r.day));
    const std::int64_t reset = clock.next_reset(at(r.now));
    EXPECT_EQ(format_rfc3339(reset), r.reset);
    EXPECT_EQ(clock.format(reset), r.reset_local);
    EXPECT_EQ(clock.day_number(reset), date(r.day) + 1);
  }
}

// The C library's local date of `t` in the zone TZ names, as days since 1970.
std::int64_t c_library_day(std::int64_t t, long* offset = nullptr) {
  const std::time_t tt = t;
  std::tm tm{};
  localtime_r(&tt, &tm);
  if (offset) *offset = tm.tm_gmtoff;
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  return static_cast<std::int64_t>(timegm(&tm)) / 86400;
}

// Sets TZ for the C library while it lives (this test binary is the only
// place that may: shards never touch TZ).
class c_library_zone {
 public:
  explicit c_library_zone(const std::string& tz) {
    setenv("TZ", tz.c_str(), 1);
    tzset();
  }
  ~c_library_zone() {
    unsetenv("TZ");
    tzset();
  }
};

// Random instants from 1970 to the year 5000 (the C library and the TZif
// footer agree there too), plus the instants around each.
void expect_agrees_with_c_library(const quota_clock& clock, const std::string& tz, int samples) {
  const c_library_zone zone(tz);
  std::mt19937_64 rng(std::hash<std::string>{}(tz));
  std::uniform_int_distribution<std::int64_t> instant(0, 95'000'000'000);
  int failures = 0;
  for (int i = 0; i < samples && failures < 3; ++i) {
    const std::int64_t t = instant(rng);
    long offset = 0;
    const std::int64_t day = c_library_day(t, &offset);
    const std::int64_t reset = clock.next_reset(t);
    const bool ok = clock.utc_offset(t) == offset && clock.day_number(t) == day && reset > t &&
                    c_library_day(reset - 1) == day && c_library_day(reset) > day;
    if (!ok) {
      ++failures;
      ADD_FAILURE() << tz << " at " << t << ": offset " << clock.utc_offset(t) << " vs " << offset
                    << ", day " << clock.day_number(t) << " vs " << day << ", reset " << reset;
    }
  }
}

// Every zone in the system's tzdata, against glibc's reading of the same
// files (the oracle is TZ, which only a test may set).
TEST(quota_clock, agrees_with_the_c_library_in_every_zone) {
  std::ifstream zi("/usr/share/zoneinfo/tzdata.zi");
  if (!zi) GTEST_SKIP() << "no /usr/share/zoneinfo/tzdata.zi (tzdata)";
  std::vector<std::string> zones;
  std::string line;
  while (std::getline(zi, line)) {
    std::istringstream words(line);
    std::string kind, name;
    words >> kind >> name;
    if (kind == "L") words >> name;  // "L TARGET LINK-NAME"
    if (kind == "Z" || kind == "L") zones.push_back(name);
  }
  ASSERT_GT(zones.size(), 300u);
  for (const std::string& zone : zones) {
    SCOPED_TRACE(zone);
    expect_agrees_with_c_library(quota_clock::load(zone), ":" + zone, 200);
  }
}

// ---- TZif files, built by hand ----

using namespace std::string_literals;

std::string be(std::uint64_t v, int bytes) {
  std::string out;
  for (int i = bytes - 1; i >= 0; --i) out += static_cast<char>(v >> (8 * i) & 0xff);
  return out;
}

struct tzif_spec {
  char version = '2';
  std::vector<std::pair<std::int64_t, std::uint8_t>> transitions = {};  // instant, type
  std::vector<std::int32_t> offsets = {0};
  std::string footer = {};
  std::uint32_t leaps = 0;
};

// A TZif file: a minimal version 1 block (one type, no transitions), then
// for version 2+ the real data with 64-bit times and the footer.
std::string tzif(const tzif_spec& s) {
  auto header = [&](std::uint32_t times, std::uint32_t types, std::uint32_t leaps) {
    return "TZif" + std::string(1, s.version) + std::string(15, '\0') + be(0, 4) + be(0, 4) +
           be(leaps, 4) + be(times, 4) + be(types, 4) + be(4, 4);
  };
  if (s.version == '\0') {
    std::string out = header(static_cast<std::uint32_t>(s.transitions.size()),
                             static_cast<std::uint32_t>(s.offsets.size()), s.leaps);
    for (const auto& [t, type] : s.transitions) out += be(static_cast<std::uint64_t>(t), 4);
    for (const auto& [t, type] : s.transitions) out += static_cast<char>(type);
    for (const std::int32_t o : s.offsets) out += be(static_cast<std::uint32_t>(o), 4) + "\0\0"s;
    return out + "ABC\0"s + std::string(s.leaps * 8, '\0');
  }
  std::string out = header(0, 1, 0) + be(0, 6) + "UTC\0"s;
  out += header(static_cast<std::uint32_t>(s.transitions.size()),
                static_cast<std::uint32_t>(s.offsets.size()), s.leaps);
  for (const auto& [t, type] : s.transitions) out += be(static_cast<std::uint64_t>(t), 8);
  for (const auto& [t, type] : s.transitions) out += static_cast<char>(type);
  for (const std::int32_t o : s.offsets) out += be(static_cast<std::uint32_t>(o), 4) + "\0\0"s;
  out += "ABC\0"s + std::string(s.leaps * 12, '\0');
  return out + "\n" + s.footer + "\n";
}

// A file holding only a footer is read through its POSIX TZ string alone,
// which glibc also takes directly as TZ.
TEST(quota_clock, posix_rules_agree_with_the_c_library) {
  const char* rules[] = {
      "CET-1CEST,M3.5.0,M10.5.0/3",
      "NZST-12NZDT,M9.5.0,M4.1.0/3",
      "IST-1GMT0,M10.5.0,M3.5.0/1",        // Dublin: "DST" is the winter
      "<-02>2<-01>,M3.5.0/-1,M10.5.0/0",   // Nuuk: negative rule times
      "<-03>3<-02>,M3.2.0/-2,M11.1.0/-1",  // Sao Paulo style, before midnight
      "CST5CDT,M3.2.0/0,M11.1.0/1",        // Havana: midnight skipped
      "AAA3BBB,J60/2,J300/2",              // Julian days, no February 29
      "AAA3BBB,59/2,299/2",                // zero-based days, February 29 counted
      "<+1245>-12:45<+1345>,M9.5.0/2:45,M4.1.0/3:45",
      "XXX-5:45YYY-6:45:30,M4.1.0/0:30,M10.5.0/1:30:15",
      "<+0530>-5:30",
      "EST5EDT,M3.2.0/167,M11.1.0/-167",
  };
  for (const char* rule : rules) {
    SCOPED_TRACE(rule);
    const quota_clock clock = quota_clock::from_tzif("Test/Zone", tzif({.footer = rule}));
    expect_agrees_with_c_library(clock, rule, 2000);
  }
}

TEST(quota_clock, posix_rule_details) {
  // DST all year, written as the rule RFC 8536 §3.3.1 suggests.
  const auto always =
      quota_clock::from_tzif("Test/Always", tzif({.footer = "EST5EDT,0/0,J365/25"}));
  for (const char* t : {"1980-01-01T00:00:00Z", "2026-06-01T00:00:00Z", "2026-12-31T23:00:00Z",
                        "2027-01-01T05:30:00Z", "2400-02-29T12:00:00Z"})
    EXPECT_EQ(always.utc_offset(at(t)), -4 * 3600) << t;
  // A DST name with no rule takes the US rule, as glibc and tzcode do.
  const auto us = quota_clock::from_tzif("Test/US", tzif({.footer = "EST5EDT"}));
  EXPECT_EQ(us.utc_offset(at("2026-03-08T06:59:59Z")), -5 * 3600);
  EXPECT_EQ(us.utc_offset(at("2026-03-08T07:00:00Z")), -4 * 3600);
  EXPECT_EQ(us.utc_offset(at("2026-11-01T05:59:59Z")), -4 * 3600);
  EXPECT_EQ(us.utc_offset(at("2026-11-01T06:00:00Z")), -5 * 3600);
}

// Transitions first, then the footer takes over after the last one.
TEST(quota_clock, transitions_then_the_footer) {
  const std::int64_t change = at("2030-06-01T00:00:00Z");
  const auto clock =
      quota_clock::from_tzif("Test/Moved", tzif({.transitions = {{change, 1}},
                                                 .offsets = {3 * 3600, -5 * 3600},
                                                 .footer = "EST5EDT,M3.2.0,M11.1.0"}));
  EXPECT_EQ(clock.utc_offset(change - 1), 3 * 3600);
  EXPECT_EQ(clock.utc_offset(change), -5 * 3600) << "the transition's type";
  EXPECT_EQ(clock.utc_offset(at("2030-07-01T00:00:00Z")), -4 * 3600) << "the footer's DST";
  EXPECT_EQ(clock.utc_offset(at("2031-01-01T00:00:00Z")), -5 * 3600);
  const auto v1 = quota_clock::from_tzif(
      "Test/V1", tzif({.version = '\0', .transitions = {{86400, 1}}, .offsets = {0, 3600}}));
  EXPECT_EQ(v1.utc_offset(86399), 0);
  EXPECT_EQ(v1.utc_offset(86400), 3600);
  EXPECT_EQ(v1.utc_offset(at("2500-01-01T00:00:00Z")), 3600) << "no footer: the last offset";
}

// Grand Turk kept -4 from 2015 to 2018 as "AST", then as "EDT": the last
// transition changes only the name and DST flag, and the footer governs
// after it, not after the last change of offset. (zic -b slim writes this.)
TEST(quota_clock, footer_starts_after_the_last_transition_of_any_kind) {
  const auto clock = quota_clock::from_tzif(
      "Test/Grand_Turk",
      tzif({.transitions = {{at("2015-03-08T07:00:00Z"), 1}, {at("2018-03-11T07:00:00Z"), 2}},
            .offsets = {-5 * 3600, -4 * 3600, -4 * 3600},
            .footer = "EST5EDT,M3.2.0,M11.1.0"}));
  EXPECT_EQ(clock.utc_offset(at("2014-11-28T12:00:00Z")), -5 * 3600);
  EXPECT_EQ(clock.utc_offset(at("2016-11-28T12:00:00Z")), -4 * 3600);
  EXPECT_EQ(clock.utc_offset(at("2018-11-28T12:00:00Z")), -5 * 3600);
}

TEST(quota_clock, refuses_bad_tzif_files) {
  const std::string good = tzif({.transitions = {{0, 1}, {100, 0}},
                                 .offsets = {0, 3600},
                                 .footer = "CET-1CEST,M3.5.0,M10.5.0/3"});
  EXPECT_NO_THROW(quota_clock::from_tzif("Test/Good", good));
  struct row {
    std::string file;
    const char* error;
  };
  std::string bad_magic = good;
  bad_magic[2] = 'j';
  std::string bad_version = good;
  bad_version[4] = '1';
  const row rows[] = {
      {"", "truncated TZif header"},
      {bad_magic, "not a TZif file"},
      {bad_version, "unknown TZif version 49"},
      {tzif({.offsets = {}}), "no local time types"},
      {tzif({.transitions = {{0, 2}}, .offsets = {0, 3600}}),
       "transition to a missing local time type"},
      {tzif({.transitions = {{100, 1}, {100, 0}}, .offsets = {0, 3600}}),
       "transition times not ascending"},
      {tzif({.offsets = {100000}}), "UTC offset out of range"},
      {tzif({.leaps = 1}), "leap-second"},
      {good.substr(0, good.size() - 1), "bad TZif footer"},
      {good + "x", "bad TZif footer"},
      {tzif({.footer = "CET-1CEST,M13.5.0,M10.5.0"}), "bad POSIX TZ string"},
      {tzif({.footer = "CET-1CEST,M3.5.0"}), "bad POSIX TZ string"},
      {tzif({.footer = "C-1"}), "bad POSIX TZ string"},
      {tzif({.footer = "CET-1CEST,M3.5.0/168,M10.5.0"}), "bad POSIX TZ string"},
      {tzif({.footer = "CET-25"}), "bad POSIX TZ string"},
      {std::string(2 << 20, 'x'), "larger than 1 MiB"},
  };
  for (const row& r : rows) {
    try {
      quota_clock::from_tzif("Test/Bad", r.file);
      ADD_FAILURE() << "accepted, expected: " << r.error;
    } catch (const config::config_error& e) {
      EXPECT_NE(std::string(e.what()).find(r.error), std::string::npos)
          << e.what() << "\nexpected: " << r.error;
      EXPECT_NE(std::string(e.what()).find("time zone \"Test/Bad\""), std::string::npos);
    }
  }
}

// The parser is bounded: every prefix of a real file is refused cleanly
// (the sanitizer builds would catch any read past the end).
TEST(quota_clock, refuses_every_truncation_of_a_real_file) {
  std::ifstream in("/usr/share/zoneinfo/Europe/Berlin", std::ios::binary);
  if (!in) GTEST_SKIP() << "no /usr/share/zoneinfo (tzdata)";
  const std::string file{std::istreambuf_iterator<char>(in), {}};
  EXPECT_NO_THROW(quota_clock::from_tzif("Europe/Berlin", file));
  for (std::size_t n = 0; n < file.size(); ++n)
    EXPECT_THROW(quota_clock::from_tzif("Europe/Berlin", file.substr(0, n)), config::config_error)
        << n << " of " << file.size() << " bytes";
}

TEST(quota_clock, refuses_bad_zone_names) {
  if (!have_zoneinfo()) GTEST_SKIP() << "no /usr/share/zoneinfo (tzdata)";
  struct row {
    const char* zone;
    const char* error;
  };
  const row rows[] = {
      {"", "not a time zone name"},
      {"../../etc/passwd", "not a time zone name"},
      {"/etc/passwd", "not a time zone name"},
      {"Europe//Berlin", "not a time zone name"},
      {"Europe/Berlin ", "not a time zone name"},
      {"Mars/Olympus_Mons", "no such zone"},
      {"Europe", "no such zone"},
      {"zone1970.tab", "not a TZif file"},
  };
  for (const row& r : rows) {
    try {
      quota_clock::load(r.zone);
      ADD_FAILURE() << "accepted \"" << r.zone << "\", expected: " << r.error;
    } catch (const config::config_error& e) {
      EXPECT_NE(std::string(e.what()).find(r.error), std::string::npos)
          << e.what() << "\nexpected: " << r.error;
    }
  }
  if (std::filesystem::exists("/usr/share/zoneinfo/right/UTC")) {
    EXPECT_THROW(quota_clock::load("right/UTC"), config::config_error);
  }
}

TEST(quota_clock, loads_from_another_directory) {
  const std::filesystem::path dir = std::filesystem::path(testing::TempDir()) / "zoneinfo";
  std::filesystem::create_directories(dir / "Test");
  std::ofstream(dir / "Test" / "Plus3", std::ios::binary) << tzif({.offsets = {3 * 3600}});
  const auto clock = quota_clock::load("Test/Plus3", dir.string());
  EXPECT_EQ(clock.day_number(at("2026-11-28T20:59:59Z")), date("2026-11-28"));
  EXPECT_EQ(clock.day_number(at("2026-11-28T21:00:00Z")), date("2026-11-29"));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ringrelay::accounts
