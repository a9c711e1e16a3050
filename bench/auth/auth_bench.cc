// What a login costs: verification cold (PBKDF2 at the default iteration
// count, on a verifier worker) against warm (the shard's verification
// cache: one HMAC-SHA256 key and a hash-map probe), plus the SASL decoding
// and the failure limiter that every AUTH also goes through.
#include <benchmark/benchmark.h>

#include <ringrelay/auth/base64.hh>
#include <ringrelay/auth/failure_limiter.hh>
#include <ringrelay/auth/password.hh>
#include <ringrelay/auth/sasl.hh>
#include <ringrelay/auth/verification_cache.hh>
#include <string>

namespace ringrelay::auth {
namespace {

const std::string password = "correct horse battery staple";

void verify_cold(benchmark::State& state) {
  const auto stored = hash_password(password, static_cast<std::uint32_t>(state.range(0)));
  for (auto _ : state) {
    auto r = verify_password(password, stored);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(verify_cold)->Arg(default_iterations)->Unit(benchmark::kMillisecond);

// The shard's path on a cache hit: build the key, probe.
void verify_warm(benchmark::State& state) {
  const auto stored = hash_password(password, min_iterations);
  verification_cache cache;
  cache.insert(cache.make_key("acme", password, stored));
  for (auto _ : state) {
    const auto key = cache.make_key("acme", password, stored);
    bool hit = cache.lookup(key);
    benchmark::DoNotOptimize(hit);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(verify_warm);

void sasl_plain(benchmark::State& state) {
  const std::string response = base64_encode(std::string("\0acme\0", 6) + password);
  sasl_exchange x;
  for (auto _ : state) {
    auto r = x.start("PLAIN", response);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(sasl_plain);

void limiter_failure(benchmark::State& state) {
  failure_limiter lim;
  std::uint32_t n = 0;
  std::int64_t now = 0;
  for (auto _ : state) {
    client_key k;
    k.bytes[0] = 10;
    k.bytes[1] = static_cast<std::uint8_t>(n >> 16);
    k.bytes[2] = static_cast<std::uint8_t>(n >> 8);
    k.bytes[3] = static_cast<std::uint8_t>(n);
    auto v = lim.record_failure(k, now++);
    benchmark::DoNotOptimize(v);
    n = (n + 1) & 0xffff;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(limiter_failure);

}  // namespace
}  // namespace ringrelay::auth

BENCHMARK_MAIN();
