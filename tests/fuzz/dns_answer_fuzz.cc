// Fuzz target: dns::parse_answer on what a broken or hostile DNS server
// might send (c-ares hands the answer over as it arrived), then what the
// resolver and the sender check make of it.
//
// The input is the message. Beyond never reading outside it (ASan) and
// always ending (compression pointers), the parser must keep what it
// promises: names printable and within 255 octets once unescaped, no more
// records than the message can hold, the first question's type as sent,
// and the negative TTL the smaller of the SOA's two. The cache's result
// and the sender check's MX step must then hold their own limits: a TTL
// within the caps, failures never cached, at most the allowed number of
// targets, none repeated.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <ringrelay/dns/answer.hh>
#include <ringrelay/dns/cache.hh>
#include <ringrelay/dns/sender_check.hh>
#include <span>
#include <string_view>

#include "fuzz_input.hh"

namespace ringrelay::dns {
namespace {

using fuzz::check;

// Escaped form: printable ASCII only, and at most 4 characters an octet.
void check_name(std::string_view name) {
  check(name.size() <= 4 * 255);
  for (unsigned char c : name) check(c > 0x20 && c < 0x7f && !(c >= 'A' && c <= 'Z'));
}

void check_result(const lookup_result& r, const cache_limits& limits) {
  switch (r.status) {
    case lookup_status::ok:
      check(r.ttl <= limits.max_ttl);
      break;
    case lookup_status::nxdomain:
    case lookup_status::nodata:
      check(r.ttl <= limits.max_negative_ttl);
      break;
    default:
      check(r.ttl == 0);
  }
}

void play(std::span<const std::uint8_t> in) {
  answer a;
  if (parse_answer(in, a) != parse_error::ok) return;
  // Every record takes at least 11 octets: a root owner name and the fixed
  // fields.
  check(a.records.size() <= in.size() / 11);
  check_name(a.question);
  for (const record& r : a.records) {
    check_name(r.name);
    check_name(r.target);
    check(r.type == rr_type::a || r.type == rr_type::aaaa || r.type == rr_type::mx ||
          r.type == rr_type::cname || r.type == rr_type::txt);
    check(r.ttl <= 0x7fffffffu);
    check(r.text.size() <= in.size());
  }
  if (a.soa) {
    check_name(a.soa->zone);
    check(*a.negative_ttl() == std::min(a.soa->ttl, a.soa->minimum));
  }

  const cache_limits limits;
  for (rr_type asked : {rr_type::mx, rr_type::a, a.question_type}) {
    const lookup_result r = result_of(a, asked, limits);
    check_result(r, limits);
    check(r.records.size() == a.records.size());
    constexpr std::size_t max_targets = 3;
    const mx_step step = after_mx("example.com", r, max_targets);
    check(step.targets.size() <= max_targets);
    check(!step.verdict || step.targets.empty());
    for (std::size_t i = 0; i < step.targets.size(); ++i) {
      check(!step.targets[i].empty() && !is_ip_literal(step.targets[i]));
      for (std::size_t j = 0; j < i; ++j) check(step.targets[i] != step.targets[j]);
    }
  }
}

}  // namespace
}  // namespace ringrelay::dns

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ringrelay::dns::play(std::span<const std::uint8_t>(data, size));
  return 0;
}
