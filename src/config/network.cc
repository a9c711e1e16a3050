#include <arpa/inet.h>

#include <cstring>
#include <ringrelay/config/config.hh>

#include "json_tree.hh"

namespace ringrelay::config {
namespace {

// ::ffff:0:0/96 (RFC 4291 2.5.5.2): an IPv4 address carried in IPv6.
constexpr std::uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool prefix_equal(const std::uint8_t* a, const std::uint8_t* b, unsigned bits) {
  unsigned bytes = bits / 8;
  if (std::memcmp(a, b, bytes) != 0) return false;
  unsigned rest = bits % 8;
  if (rest == 0) return true;
  auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
  return (a[bytes] & mask) == (b[bytes] & mask);
}

void clear_host_bits(std::uint8_t* addr, unsigned bits, unsigned total_bits) {
  for (unsigned bit = bits; bit < total_bits; ++bit)
    addr[bit / 8] &= static_cast<std::uint8_t>(~(0x80u >> (bit % 8)));
}

bool parse_prefix(std::string_view text, unsigned max, unsigned& out) {
  if (text.empty() || text.size() > 3) return false;
  out = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    out = out * 10 + static_cast<unsigned>(c - '0');
  }
  return out <= max;
}

std::string format(const network& n) {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(n.family, n.addr, buf, sizeof buf);
  return std::string(buf) + "/" + std::to_string(n.prefix);
}

}  // namespace

network parse_network(std::string_view text, const std::string& where) {
  auto fail = [&](const std::string& what) {
    throw config_error(where + ": " + what + ", got " + detail::quote(text));
  };
  auto slash = text.find('/');
  std::string address(text.substr(0, slash));
  network n;
  unsigned total_bits = 32;
  if (inet_pton(AF_INET, address.c_str(), n.addr) == 1) {
    n.family = AF_INET;
  } else if (inet_pton(AF_INET6, address.c_str(), n.addr) == 1) {
    n.family = AF_INET6;
    total_bits = 128;
  } else {
    fail("expected an IPv4 or IPv6 network such as \"10.0.0.0/8\" or \"fd00::/8\"");
  }
  n.prefix = total_bits;
  if (slash != std::string_view::npos &&
      !parse_prefix(text.substr(slash + 1), total_bits, n.prefix))
    fail("expected a prefix length from 0 to " + std::to_string(total_bits) + " after \"/\"");
  network masked = n;
  clear_host_bits(masked.addr, n.prefix, total_bits);
  if (std::memcmp(masked.addr, n.addr, sizeof n.addr) != 0) {
    throw config_error(where + ": " + detail::quote(text) +
                       " has bits set after the prefix length; did you mean " +
                       detail::quote(format(masked)) + "?");
  }
  // A mapped network is the IPv4 network it carries; contains() compares
  // mapped client addresses as IPv4, so this keeps the two in step.
  if (n.family == AF_INET6 && n.prefix >= 96 &&
      std::memcmp(n.addr, v4_mapped_prefix, sizeof v4_mapped_prefix) == 0) {
    network v4;
    v4.family = AF_INET;
    std::memcpy(v4.addr, n.addr + 12, 4);
    v4.prefix = n.prefix - 96;
    return v4;
  }
  return n;
}

bool network::contains(const sockaddr* sa) const {
  if (sa == nullptr) return false;
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    return family == AF_INET &&
           prefix_equal(addr, reinterpret_cast<const std::uint8_t*>(&in->sin_addr), prefix);
  }
  if (sa->sa_family == AF_INET6) {
    const auto* bytes = reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr.s6_addr;
    if (std::memcmp(bytes, v4_mapped_prefix, sizeof v4_mapped_prefix) == 0)
      return family == AF_INET && prefix_equal(addr, bytes + 12, prefix);
    return family == AF_INET6 && prefix_equal(addr, bytes, prefix);
  }
  return false;
}

}  // namespace ringrelay::config
