// The CPU side of a spool append: the CRC-32C of a record over its header and
// a payload lying in a receive buffer, the header encoding, and the commit
// record's envelope encoding. The write itself is the kernel's (measured end
// to end by ringbench).
#include <benchmark/benchmark.h>

#include <ringrelay/spool/envelope.hh>
#include <ringrelay/spool/record.hh>
#include <string>

namespace ringrelay::spool {
namespace {

void body_record(benchmark::State& state) {
  std::string payload(static_cast<std::size_t>(state.range(0)), 'x');
  header_bytes out;
  record_header h;
  h.type = record_type::body;
  h.payload_len = static_cast<std::uint32_t>(payload.size());
  h.id = 0x1AC2D02701000000ull;
  for (auto _ : state) {
    ++h.sequence;
    record_crc crc(h);
    crc.update(payload);
    h.crc = crc.value();
    encode_header(h, out);
    benchmark::DoNotOptimize(out);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(body_record)->Arg(1024)->Arg(16384);

void commit_envelope(benchmark::State& state) {
  envelope e;
  e.received_at = 1'800'000'000;
  e.size = 1024;
  e.wire_size = 1024;
  e.relays = 1;
  e.account = "acme";
  e.helo = "client.example.com";
  e.client_address = "192.0.2.10";
  e.sender = "bounces@acme.example";
  for (int i = 0; i < state.range(0); ++i)
    e.recipients.push_back("user" + std::to_string(i) + "@example.org");
  std::string out;
  for (auto _ : state) {
    out.clear();
    encode(e, out);
    benchmark::DoNotOptimize(out.data());
  }
}
BENCHMARK(commit_envelope)->Arg(1)->Arg(10);

}  // namespace
}  // namespace ringrelay::spool

BENCHMARK_MAIN();
