// Throughput of smtp::data_scanner per implementation, fed the way the
// receive path feeds it: a message in 16 KiB receive buffers.
#include <benchmark/benchmark.h>

#include <ringrelay/smtp/data_scanner.hh>
#include <string>
#include <string_view>

namespace ringrelay::smtp {
namespace {

constexpr std::size_t message_size = 1 << 20;
constexpr std::size_t piece_size = 16384;

// Typical mail text: 76-octet lines, an occasional stuffed dot line.
std::string typical_text() {
  std::string s;
  for (std::size_t i = 0; s.size() < message_size; ++i) {
    s += i % 50 == 0 ? "." : "";
    for (std::size_t k = 0; k < 76; ++k) s += static_cast<char>('a' + (i + k) % 26);
    s += "\r\n";
  }
  return s + ".\r\n";
}

// The scanner's worst case: short lines, most of them starting with a dot,
// so every block takes the octet-by-octet look at line-start dots.
std::string pathological_text() {
  static constexpr std::string_view pattern = "..\r\n.a\r\n\r\n.\r\r\n..x\r\nb\r\n";
  std::string s;
  while (s.size() < message_size) s += pattern;
  return s + ".\r\n";
}

void scan(benchmark::State& state, scan_impl impl, const std::string& msg) {
  if (set_scan_impl(impl) != impl) {
    state.SkipWithError("not supported by this CPU");
    return;
  }
  data_scanner sc;
  for (auto _ : state) {
    sc.reset(data_scanner::mode::data);
    for (std::size_t at = 0; at < msg.size(); at += piece_size) {
      benchmark::DoNotOptimize(sc.feed(std::string_view(msg).substr(at, piece_size)));
    }
    benchmark::DoNotOptimize(sc.size());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * msg.size()));
  set_scan_impl(scan_impl::best);
}

const std::string typical = typical_text();
const std::string pathological = pathological_text();

BENCHMARK_CAPTURE(scan, typical_reference, scan_impl::reference, typical);
BENCHMARK_CAPTURE(scan, typical_sse2, scan_impl::sse2, typical);
BENCHMARK_CAPTURE(scan, typical_avx2, scan_impl::avx2, typical);
BENCHMARK_CAPTURE(scan, pathological_reference, scan_impl::reference, pathological);
BENCHMARK_CAPTURE(scan, pathological_sse2, scan_impl::sse2, pathological);
BENCHMARK_CAPTURE(scan, pathological_avx2, scan_impl::avx2, pathological);

}  // namespace
}  // namespace ringrelay::smtp

// Its own main: meson's benchmark_dep does not bring libbenchmark_main.
BENCHMARK_MAIN();
