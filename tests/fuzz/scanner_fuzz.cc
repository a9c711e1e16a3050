// Fuzz target: smtp::data_scanner, DATA and BDAT modes.
//
// Input: a flags octet (bit 0: BDAT mode), a cut seed (fuzz_input.hh), the
// line limit (0: 1000), the size limit (0: 50 MiB), then the body octets.
// The body is scanned in pieces, stopping at the end of data as the session
// does, by the reference walker and by each SIMD walker the CPU runs: every
// feed must return the same, and so must the final counters and flags. The
// reference fed the body in one piece must also agree on the body octets,
// what was consumed and every counter: the split must not matter.
#include <cstddef>
#include <cstdint>
#include <ringrelay/smtp/data_scanner.hh>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_input.hh"

namespace ringrelay::smtp {
namespace {

using fuzz::check;

struct feed_record {
  std::size_t body;
  std::size_t consumed;
  bool end;
  std::uint8_t replay;

  bool operator==(const feed_record&) const = default;
};

struct scan_run {
  std::vector<feed_record> feeds;
  std::string body;  // replayed octets and body spans, as the glue stores them
  std::size_t consumed = 0;
  bool end = false;
  std::uint64_t size = 0;
  std::uint64_t wire = 0;
  bool bare = false;
  bool long_line = false;
  bool eight_bit = false;
  bool too_big = false;

  bool same_result(const scan_run& o) const {
    return body == o.body && consumed == o.consumed && end == o.end && size == o.size &&
           wire == o.wire && bare == o.bare && long_line == o.long_line &&
           eight_bit == o.eight_bit && too_big == o.too_big;
  }
};

scan_run run(scan_impl impl, data_scanner::mode m, scan_limits limits,
             const std::vector<std::string_view>& pieces) {
  check(set_scan_impl(impl) == impl);
  data_scanner sc(limits);
  sc.reset(m);
  scan_run r;
  for (std::string_view piece : pieces) {
    const scan_result s = sc.feed(std::span<const char>(piece.data(), piece.size()));
    check(s.body <= s.consumed && s.consumed <= piece.size() && s.replay <= 2);
    check(s.end || s.consumed == piece.size());
    check(!s.end || m == data_scanner::mode::data);
    r.feeds.push_back({s.body, s.consumed, s.end, s.replay});
    r.body.append(held_back_text, s.replay);
    r.body.append(piece.substr(0, s.body));
    r.consumed += s.consumed;
    if (s.end) {
      r.end = true;
      break;
    }
  }
  r.size = sc.size();
  r.wire = sc.wire_size();
  r.bare = sc.bare_cr_or_lf();
  r.long_line = sc.line_too_long();
  r.eight_bit = sc.eight_bit();
  r.too_big = sc.too_big();
  // Every octet of wire form was handed out once; held-back ones are not
  // counted until they turn out to be body.
  check(r.body.size() == r.wire);
  return r;
}

std::vector<scan_impl> simd_impls() {
  std::vector<scan_impl> impls{scan_impl::sse2};
  if (__builtin_cpu_supports("avx2")) impls.push_back(scan_impl::avx2);
  return impls;
}

void scan_everywhere(fuzz::fuzz_input in) {
  const auto m = in.octet() & 1 ? data_scanner::mode::bdat : data_scanner::mode::data;
  const std::uint8_t seed = in.octet();
  scan_limits limits;
  if (const std::uint8_t line = in.octet()) limits.max_line = line;
  if (const std::uint8_t size = in.octet()) limits.max_size = size;
  const std::string_view body = in.rest();
  const std::vector<std::string_view> pieces = fuzz::cut(body, seed);

  const scan_run reference = run(scan_impl::reference, m, limits, pieces);
  for (scan_impl impl : simd_impls()) {
    const scan_run simd = run(impl, m, limits, pieces);
    check(simd.feeds == reference.feeds && simd.same_result(reference));
  }
  const std::vector<std::string_view> whole{body};
  check(run(scan_impl::reference, m, limits, whole).same_result(reference));
}

}  // namespace
}  // namespace ringrelay::smtp

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ringrelay::smtp::scan_everywhere(ringrelay::fuzz::fuzz_input(data, size));
  return 0;
}
