// ringbench/weighted_picker — picks entries of a weighted mix in an even,
// deterministic spread.
//
// Every run of `total` consecutive picks (total = the sum of the weights)
// yields each entry exactly its weight's times, interleaved rather than in
// blocks: pick n maps to the residue (n × step) mod total, where step is
// coprime with total (a permutation of the residues), and the residue falls
// into one entry's share. So "250:98,451:1,550:1" answers exactly 98, 1 and
// 1 of every 100 messages, and "1k:70,100k:25,10m:5" sends exactly 5 large
// messages in every 100.
//
// Pure and cheap (no allocation per pick). One picker per thread.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <vector>

namespace ringrelay::ringbench {

class weighted_picker {
 public:
  // `weights` must not be empty and must add up to at least 1.
  explicit weighted_picker(const std::vector<std::uint32_t>& weights) {
    std::uint64_t sum = 0;
    for (auto w : weights) _upper.push_back(sum += w);
    _total = sum;
    // About the golden ratio of the total: neighbours land far apart.
    _step = std::max<std::uint64_t>(1, _total * 618 / 1000);
    while (std::gcd(_step, _total) != 1) ++_step;
  }

  std::size_t next() {
    std::uint64_t r = (_n++ % _total) * _step % _total;
    return static_cast<std::size_t>(std::upper_bound(_upper.begin(), _upper.end(), r) -
                                    _upper.begin());
  }

 private:
  std::vector<std::uint64_t> _upper;  // exclusive upper bound of each entry's residues
  std::uint64_t _total = 1;
  std::uint64_t _step = 1;
  std::uint64_t _n = 0;
};

}  // namespace ringrelay::ringbench
