// What charging costs a shard: reserve at RCPT then settle at end of data,
// on one account that every thread charges (the slot's cache line bounces
// between cores) and on one account per thread (each line stays in its
// core's cache). Settle to the same count is the common case (RCPT reserved
// the exact charge); settle down to fewer is the second CAS a message pays
// when SIZE= overstated it. The quota never runs out, so every reserve is
// admitted and no run drifts into the block balance. Also the day number a
// transaction computes once, in a zone with DST (a binary search over the
// zone's offset changes).
#include <benchmark/benchmark.h>

#include <ringrelay/accounts/counters.hh>
#include <ringrelay/accounts/quota.hh>
#include <ringrelay/config/config.hh>

namespace ringrelay::accounts {
namespace {

constexpr std::uint32_t day = 20000;
constexpr int max_threads = 4;

counter_slot shared_slot;
counter_slot own_slots[max_threads];  // one cache line each (alignas(64))

counter_slot& slot_for(const benchmark::State& state, bool shared) {
  return shared ? shared_slot : own_slots[state.thread_index()];
}

// Runs before the threads meet at the loop's start barrier.
void reset(const benchmark::State& state, counter_slot& slot) {
  if (state.thread_index() == 0 || &slot != &shared_slot) slot.usage_word.store(0);
}

void reserve_settle(benchmark::State& state, bool shared, std::uint64_t reserved,
                    std::uint64_t exact) {
  counter_slot& slot = slot_for(state, shared);
  reset(state, slot);
  for (auto _ : state) {
    auto r = reserve(slot, day, reserved, max_usage);
    bool ok = settle(slot, *r, day, exact, max_usage);
    benchmark::DoNotOptimize(ok);
  }
  state.SetItemsProcessed(state.iterations());
}

void reserve_settle_shared(benchmark::State& state) {
  reserve_settle(state, true, 1, 1);
}
void reserve_settle_distinct(benchmark::State& state) {
  reserve_settle(state, false, 1, 1);
}
void reserve_settle_down_shared(benchmark::State& state) {
  reserve_settle(state, true, 2, 1);
}
void reserve_settle_down_distinct(benchmark::State& state) {
  reserve_settle(state, false, 2, 1);
}

BENCHMARK(reserve_settle_shared)->Threads(1)->Threads(2)->Threads(4);
BENCHMARK(reserve_settle_distinct)->Threads(1)->Threads(2)->Threads(4);
BENCHMARK(reserve_settle_down_shared)->Threads(1)->Threads(2)->Threads(4);
BENCHMARK(reserve_settle_down_distinct)->Threads(1)->Threads(2)->Threads(4);

void day_number(benchmark::State& state) {
  quota_clock clock;
  try {
    clock = quota_clock::load("Europe/Berlin");
  } catch (const config::config_error& e) {
    state.SkipWithError(e.what());
    return;
  }
  std::int64_t now = 1795000000;  // 2026-11-18
  for (auto _ : state) {
    auto day = clock.day_number(now);
    benchmark::DoNotOptimize(day);
    now += 61;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(day_number);

}  // namespace
}  // namespace ringrelay::accounts

BENCHMARK_MAIN();
