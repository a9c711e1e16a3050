// ringbench/histogram — a fixed-size latency histogram with log buckets.
//
// Values (nanoseconds) go into buckets of 64 linear sub-buckets per power of
// two, as HdrHistogram does with two significant digits: any value is
// reported within 1/64 (about 1.6%) of its true value, from 1 ns to 2^63 ns,
// in 3,776 counters (30 KB). Recording is a few instructions and never
// allocates; histograms of several threads are merged after the run.
//
// Not thread-safe: one histogram per thread.
#pragma once

#include <array>
#include <cstdint>

namespace ringrelay::ringbench {

class histogram {
 public:
  static constexpr unsigned sub_bits = 6;
  static constexpr std::uint64_t sub_count = 1u << sub_bits;
  static constexpr unsigned bucket_count = (64 - sub_bits + 1) * sub_count;

  void record(std::uint64_t value);
  void merge(const histogram& other);

  std::uint64_t count() const { return _count; }
  std::uint64_t min() const { return _count ? _min : 0; }
  std::uint64_t max() const { return _max; }
  double mean() const {
    return _count ? static_cast<double>(_sum) / static_cast<double>(_count) : 0;
  }
  // The smallest recorded value v such that `q` (0..1) of the values are at
  // most v, reported as the upper end of v's bucket (never below the true
  // value) and clamped to the exact max. 0 when empty.
  std::uint64_t percentile(double q) const;

  static unsigned bucket_of(std::uint64_t value);
  // The largest value that falls into `bucket`.
  static std::uint64_t bucket_high(unsigned bucket);

 private:
  std::array<std::uint64_t, bucket_count> _counts{};
  std::uint64_t _count = 0;
  std::uint64_t _sum = 0;
  std::uint64_t _min = ~std::uint64_t{0};
  std::uint64_t _max = 0;
};

}  // namespace ringrelay::ringbench
