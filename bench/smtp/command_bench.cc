// ns per parse of the command lines a bulk sender repeats most: MAIL FROM
// and RCPT TO with the parameters real clients add, plus the short verbs
// and a worst-case line for scale.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <ringrelay/smtp/command.hh>
#include <string_view>

namespace ringrelay::smtp {
namespace {

void parse(benchmark::State& state, std::string_view line) {
  const parse_options opt;
  command cmd;
  parse_reply err{};
  if (!parse_command(line, opt, cmd, err)) {
    state.SkipWithError("line refused");
    return;
  }
  for (auto _ : state) {
    benchmark::DoNotOptimize(line);
    bool ok = parse_command(line, opt, cmd, err);
    benchmark::DoNotOptimize(ok);
    benchmark::DoNotOptimize(cmd);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(line.size()));
}

BENCHMARK_CAPTURE(parse, mail_from, std::string_view("MAIL FROM:<bounces@mail.example.com>"));
BENCHMARK_CAPTURE(parse, mail_from_params,
                  std::string_view("MAIL FROM:<bounces+1234-abcd@mail.example.com> SIZE=48213 "
                                   "BODY=8BITMIME"));
BENCHMARK_CAPTURE(parse, mail_from_null, std::string_view("MAIL FROM:<>"));
BENCHMARK_CAPTURE(parse, mail_from_utf8,
                  std::string_view("MAIL FROM:<josé.müller@bücher.example> SMTPUTF8 SIZE=2048"));
BENCHMARK_CAPTURE(parse, rcpt_to, std::string_view("RCPT TO:<jane.doe@example.org>"));
BENCHMARK_CAPTURE(parse, rcpt_to_literal, std::string_view("RCPT TO:<ops@[IPv6:2001:db8::25]>"));
BENCHMARK_CAPTURE(parse, data, std::string_view("DATA"));
BENCHMARK_CAPTURE(parse, bdat, std::string_view("BDAT 65536 LAST"));
BENCHMARK_CAPTURE(parse, ehlo, std::string_view("EHLO mta-17.out.example.net"));
// About 300 octets: route, long local part and domain, all parameters.
BENCHMARK_CAPTURE(parse, mail_from_long,
                  std::string_view("MAIL FROM:<@relay-one.example.net,@relay-two.example.net:"
                                   "very.long.local.part.with.many.atoms.0123456789@"
                                   "a-rather-long-subdomain.of.a-rather-long-domain-name."
                                   "mail-sending-platform.example.com> SIZE=52428800 "
                                   "BODY=8BITMIME AUTH=<> SMTPUTF8"));

}  // namespace
}  // namespace ringrelay::smtp

BENCHMARK_MAIN();
