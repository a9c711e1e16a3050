// wire — DNS messages built octet by octet for the dns tests (RFC 1035
// 4.1): a header, names written out or as compression pointers, and
// records of the types the parser keeps. Nothing here checks what it
// writes: tests build broken messages on purpose.
#pragma once

#include <arpa/inet.h>

#include <cstdint>
#include <ringrelay/dns/answer.hh>
#include <string>
#include <string_view>
#include <vector>

namespace ringrelay::dns::test {

constexpr std::uint16_t flag_qr = 0x8000;
constexpr std::uint16_t flag_aa = 0x0400;
constexpr std::uint16_t flag_tc = 0x0200;
constexpr std::uint16_t flag_rd = 0x0100;
constexpr std::uint16_t flag_ra = 0x0080;
constexpr std::uint16_t response_flags = flag_qr | flag_aa | flag_rd | flag_ra;

class wire {
 public:
  std::vector<std::uint8_t> bytes;

  std::size_t size() const { return bytes.size(); }

  wire& u8(std::uint8_t v) {
    bytes.push_back(v);
    return *this;
  }
  wire& u16(std::uint16_t v) { return u8(static_cast<std::uint8_t>(v >> 8)).u8(v & 0xff); }
  wire& u32(std::uint32_t v) { return u16(static_cast<std::uint16_t>(v >> 16)).u16(v & 0xffff); }
  wire& raw(std::string_view s) {
    bytes.insert(bytes.end(), s.begin(), s.end());
    return *this;
  }

  wire& header(std::uint16_t id, std::uint16_t flags, std::uint16_t qd, std::uint16_t an,
               std::uint16_t ns = 0, std::uint16_t ar = 0) {
    return u16(id).u16(flags).u16(qd).u16(an).u16(ns).u16(ar);
  }

  // Labels of a dotted name, without the final root label ("" writes
  // nothing): end it with `root()` or `pointer()`.
  wire& labels(std::string_view dotted) {
    while (!dotted.empty()) {
      const auto dot = dotted.find('.');
      const std::string_view label = dotted.substr(0, dot);
      u8(static_cast<std::uint8_t>(label.size())).raw(label);
      dotted.remove_prefix(dot == std::string_view::npos ? dotted.size() : dot + 1);
    }
    return *this;
  }
  wire& root() { return u8(0); }
  wire& name(std::string_view dotted) { return labels(dotted).root(); }
  wire& pointer(std::uint16_t offset) { return u16(static_cast<std::uint16_t>(0xC000 | offset)); }

  wire& question(std::string_view qname, rr_type t) {
    return name(qname).u16(static_cast<std::uint16_t>(t)).u16(1);
  }

  // Owner name written out, class IN; the rdata follows with its length.
  wire& rr_head(std::string_view owner, rr_type t, std::uint32_t ttl) {
    return name(owner).u16(static_cast<std::uint16_t>(t)).u16(1).u32(ttl);
  }

  wire& a(std::string_view owner, std::uint32_t ttl, const char* address) {
    std::uint8_t buf[4];
    inet_pton(AF_INET, address, buf);
    rr_head(owner, rr_type::a, ttl).u16(4);
    for (auto b : buf) u8(b);
    return *this;
  }
  wire& aaaa(std::string_view owner, std::uint32_t ttl, const char* address) {
    std::uint8_t buf[16];
    inet_pton(AF_INET6, address, buf);
    rr_head(owner, rr_type::aaaa, ttl).u16(16);
    for (auto b : buf) u8(b);
    return *this;
  }
  wire& mx(std::string_view owner, std::uint32_t ttl, std::uint16_t pref, std::string_view exch) {
    rr_head(owner, rr_type::mx, ttl).u16(static_cast<std::uint16_t>(name_size(exch) + 2));
    return u16(pref).name(exch);
  }
  wire& cname(std::string_view owner, std::uint32_t ttl, std::string_view target) {
    rr_head(owner, rr_type::cname, ttl).u16(static_cast<std::uint16_t>(name_size(target)));
    return name(target);
  }
  wire& txt(std::string_view owner, std::uint32_t ttl, const std::vector<std::string>& strings) {
    std::size_t len = 0;
    for (const auto& s : strings) len += 1 + s.size();
    rr_head(owner, rr_type::txt, ttl).u16(static_cast<std::uint16_t>(len));
    for (const auto& s : strings) u8(static_cast<std::uint8_t>(s.size())).raw(s);
    return *this;
  }
  wire& soa(std::string_view zone, std::uint32_t ttl, std::uint32_t minimum) {
    const std::string mname = "ns." + std::string(zone), rname = "hostmaster." + std::string(zone);
    rr_head(zone, rr_type::soa, ttl)
        .u16(static_cast<std::uint16_t>(name_size(mname) + name_size(rname) + 20));
    return name(mname).name(rname).u32(1).u32(7200).u32(900).u32(1209600).u32(minimum);
  }

  // Octets `dotted` takes written out with its root label.
  static std::size_t name_size(std::string_view dotted) {
    return dotted.empty() ? 1 : dotted.size() + 2;
  }
};

// A response to `qname`/`qtype` with `rcode` in the header's low bits;
// counts given, sections appended by the caller.
inline wire response(std::string_view qname, rr_type qtype, std::uint16_t an, std::uint16_t ns = 0,
                     rcode code = rcode::noerror, std::uint16_t id = 0x1234) {
  wire w;
  w.header(id, response_flags | static_cast<std::uint16_t>(code), 1, an, ns);
  w.question(qname, qtype);
  return w;
}

}  // namespace ringrelay::dns::test
