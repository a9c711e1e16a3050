// fuzz_input — what the fuzz targets share: parameters read from the front
// of the fuzzer's input, the rest cut into receive buffers, and the check
// that turns a broken promise into a crash libFuzzer reports.
//
// A target reads its parameter octets first (`octet()`), then takes `rest()`
// as the bytes a peer sent. `cut` splits them the way a socket might: the
// fuzzer mutates the seed octet, so it explores splits as it explores
// content.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace ringrelay::fuzz {

// A broken promise: libFuzzer reports the input as a crash.
inline void check(bool ok) {
  if (!ok) __builtin_trap();
}

class fuzz_input {
 public:
  fuzz_input(const std::uint8_t* data, std::size_t size)
      : _rest(reinterpret_cast<const char*>(data), size) {}

  // The next parameter octet; 0 once the input is used up.
  std::uint8_t octet() {
    if (_rest.empty()) return 0;
    const auto c = static_cast<std::uint8_t>(_rest.front());
    _rest.remove_prefix(1);
    return c;
  }

  std::string_view rest() const { return _rest; }

 private:
  std::string_view _rest;
};

// Cuts `in` into pieces. The seed's low two bits choose the longest piece
// (1, 8 or 64 octets, or all at once), the rest seed the lengths.
inline std::vector<std::string_view> cut(std::string_view in, std::uint8_t seed) {
  static constexpr std::size_t longest[] = {1, 8, 64, 0};
  const std::size_t max = longest[seed & 3];
  std::uint32_t x = 0x9e3779b9u ^ seed;
  std::vector<std::string_view> pieces;
  while (!in.empty()) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    const std::size_t n = max == 0 ? in.size() : 1 + x % max;
    pieces.push_back(in.substr(0, n));
    in.remove_prefix(pieces.back().size());
  }
  return pieces;
}

}  // namespace ringrelay::fuzz
