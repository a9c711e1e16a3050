#include "histogram.hh"

#include <algorithm>
#include <bit>
#include <cmath>

namespace ringrelay::ringbench {

// Values below 64 have their own bucket each; above, a value's power of two
// e (from 6) selects a row of 64 and its next 6 bits the column.
unsigned histogram::bucket_of(std::uint64_t value) {
  if (value < sub_count) return static_cast<unsigned>(value);
  unsigned e = 63 - static_cast<unsigned>(std::countl_zero(value));
  auto sub = static_cast<unsigned>((value >> (e - sub_bits)) & (sub_count - 1));
  return (e - sub_bits + 1) * sub_count + sub;
}

std::uint64_t histogram::bucket_high(unsigned bucket) {
  if (bucket < sub_count) return bucket;
  unsigned e = bucket / sub_count + sub_bits - 1;
  std::uint64_t sub = bucket % sub_count;
  std::uint64_t low = (sub_count + sub) << (e - sub_bits);
  return low + ((std::uint64_t{1} << (e - sub_bits)) - 1);
}

void histogram::record(std::uint64_t value) {
  ++_counts[bucket_of(value)];
  ++_count;
  _sum += value;
  _min = std::min(_min, value);
  _max = std::max(_max, value);
}

void histogram::merge(const histogram& other) {
  for (unsigned i = 0; i < bucket_count; ++i) _counts[i] += other._counts[i];
  _count += other._count;
  _sum += other._sum;
  _min = std::min(_min, other._min);
  _max = std::max(_max, other._max);
}

std::uint64_t histogram::percentile(double q) const {
  if (_count == 0) return 0;
  // The rank of the value asked for, 1-based: ceil(q × count), at least 1.
  auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(_count)));
  rank = std::clamp<std::uint64_t>(rank, 1, _count);
  std::uint64_t seen = 0;
  for (unsigned i = 0; i < bucket_count; ++i) {
    seen += _counts[i];
    if (seen >= rank) return std::min(bucket_high(i), _max);
  }
  return _max;
}

}  // namespace ringrelay::ringbench
