// auth/base64 — see the header for the contract.
#include <array>
#include <cstdint>
#include <ringrelay/auth/base64.hh>

namespace ringrelay::auth {
namespace {

constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::uint8_t invalid = 0xff;

constexpr std::array<std::uint8_t, 256> make_values() {
  std::array<std::uint8_t, 256> v{};
  v.fill(invalid);
  for (std::uint8_t i = 0; i < 64; ++i) v[static_cast<unsigned char>(alphabet[i])] = i;
  return v;
}
constexpr auto values = make_values();

std::uint8_t value_of(char c) {
  return values[static_cast<unsigned char>(c)];
}

}  // namespace

bool base64_decode(std::string_view in, std::string& out) {
  if (in.size() % 4 != 0) return false;
  std::size_t padding = 0;
  if (!in.empty() && in.back() == '=') padding = in[in.size() - 2] == '=' ? 2 : 1;
  const std::size_t data = in.size() - padding;
  out.reserve(out.size() + base64_decoded_size(in.size(), padding));
  std::uint32_t acc = 0;
  for (std::size_t i = 0; i < data; ++i) {
    const std::uint8_t v = value_of(in[i]);
    if (v == invalid) return false;  // includes an "=" before the padding
    acc = (acc << 6) | v;
    if (i % 4 == 3) {
      out.push_back(static_cast<char>(acc >> 16));
      out.push_back(static_cast<char>(acc >> 8));
      out.push_back(static_cast<char>(acc));
      acc = 0;
    }
  }
  // The last quantum: 2 characters carry one octet (4 spare bits), 3 carry
  // two (2 spare bits); the spare bits must be zero (RFC 4648 3.5).
  if (padding == 2) {
    if (acc & 0xf) return false;
    out.push_back(static_cast<char>(acc >> 4));
  } else if (padding == 1) {
    if (acc & 0x3) return false;
    out.push_back(static_cast<char>(acc >> 10));
    out.push_back(static_cast<char>(acc >> 2));
  }
  return true;
}

std::string base64_encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  auto octet = [&](std::size_t k) {
    return static_cast<std::uint32_t>(static_cast<unsigned char>(in[k]));
  };
  for (; i + 3 <= in.size(); i += 3) {
    const std::uint32_t n = octet(i) << 16 | octet(i + 1) << 8 | octet(i + 2);
    for (int shift : {18, 12, 6, 0}) out.push_back(alphabet[(n >> shift) & 63]);
  }
  if (in.size() - i == 1) {
    const std::uint32_t n = octet(i) << 16;
    out.push_back(alphabet[(n >> 18) & 63]);
    out.push_back(alphabet[(n >> 12) & 63]);
    out.append("==");
  } else if (in.size() - i == 2) {
    const std::uint32_t n = octet(i) << 16 | octet(i + 1) << 8;
    out.push_back(alphabet[(n >> 18) & 63]);
    out.push_back(alphabet[(n >> 12) & 63]);
    out.push_back(alphabet[(n >> 6) & 63]);
    out.push_back('=');
  }
  return out;
}

}  // namespace ringrelay::auth
