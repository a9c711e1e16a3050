// Fuzz target: delivery::compose_bounce, with every reflected string
// chosen by the fuzzer.
//
// Input: a flags octet (bit 0 SMTPUTF8 original, bit 1 raw (BDAT) body,
// bits 2-7 the sequence), one reason octet per recipient slot (4), then
// fields separated by 0x1e (an octet the fuzzer may still use inside a
// field: it is one control octet among others): reporting MTA, Message-ID
// domain, sender, the original head, then address, status, diagnostic and
// remote MTA of each recipient (at most 4; a recipient needs an address
// field).
//
// Promises checked: no bounce exactly for a null sender or no recipient;
// otherwise the body is CRLF lines only, at most 998 octets each,
// dot-stuffed; unstuffed, its header section has exactly our fields and a
// multipart/report with exactly three parts whose headers are ours, the
// boundary occurs only in the Content-Type parameter and the delimiters,
// the report has one group per recipient made only of report fields; the
// envelope is the null sender to the original sender with the sizes and
// 8-bit flag of the body. The same input gives the same bounce.
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <ringrelay/delivery/bounce.hh>
#include <string>
#include <string_view>
#include <vector>

#include "../unit/delivery/wire_form.hh"
#include "fuzz_input.hh"

namespace ringrelay::delivery {
namespace {

using fuzz::check;

constexpr std::size_t slots = 4;
constexpr char separator = '\x1e';

std::vector<std::string_view> fields_of(std::string_view in) {
  std::vector<std::string_view> out;
  while (true) {
    const std::size_t end = in.find(separator);
    out.push_back(in.substr(0, end));
    if (end == std::string_view::npos) return out;
    in.remove_prefix(end + 1);
  }
}

// Checks the wire form and returns the body unstuffed.
std::string unstuff(std::string_view wire) {
  std::string problem;
  std::string plain = test::unstuff(wire, problem);
  check(problem.empty());
  return plain;
}

std::vector<std::string_view> lines_of(std::string_view s) {
  std::vector<std::string_view> out;
  while (!s.empty()) {
    const std::size_t end = s.find("\r\n");
    out.push_back(s.substr(0, end));
    s.remove_prefix(end + 2);
  }
  return out;
}

// The name of a header line, empty for a continuation line.
std::string_view name_of(std::string_view line) {
  if (line.starts_with(" ") || line.starts_with("\t")) return {};
  const std::size_t colon = line.find(':');
  check(colon != std::string_view::npos && colon > 0);
  return line.substr(0, colon);
}

bool one_of(std::string_view name, std::initializer_list<std::string_view> names) {
  for (std::string_view n : names) {
    if (n == name) return true;
  }
  return false;
}

std::size_t count(std::string_view hay, std::string_view needle) {
  std::size_t n = 0;
  for (std::size_t pos = hay.find(needle); pos != std::string_view::npos;
       pos = hay.find(needle, pos + 1)) {
    ++n;
  }
  return n;
}

// The delivery-status body: per-message fields, then one group per
// recipient, each field one of RFC 3464's we write.
void check_report(const std::vector<std::string_view>& lines, std::size_t from, std::size_t to,
                  std::size_t recipients) {
  std::size_t groups = 0;
  bool fresh = true;
  for (std::size_t i = from; i < to; ++i) {
    if (lines[i].empty()) {
      fresh = true;
      continue;
    }
    if (fresh) ++groups;
    fresh = false;
    const std::string_view name = name_of(lines[i]);
    if (name.empty()) continue;
    if (groups == 1) {
      check(one_of(name, {"Reporting-MTA", "X-Ringrelay-Queue-ID", "Arrival-Date"}));
    } else {
      check(one_of(name, {"Final-Recipient", "Action", "Status", "Remote-MTA", "Diagnostic-Code"}));
    }
  }
  check(groups == recipients + 1);
}

void check_structure(std::string_view plain, std::size_t recipients) {
  const std::vector<std::string_view> lines = lines_of(plain);
  std::size_t i = 0;
  std::string boundary;
  std::vector<std::string_view> names;
  for (; i < lines.size() && !lines[i].empty(); ++i) {
    const std::string_view name = name_of(lines[i]);
    if (!name.empty()) names.push_back(name);
    if (lines[i].starts_with("\tboundary=\"")) {
      boundary = std::string(lines[i].substr(11, lines[i].size() - 12));
    }
  }
  if (names.back() == "Content-Transfer-Encoding") names.pop_back();
  check(names == std::vector<std::string_view>{"From", "To", "Subject", "Date", "Message-ID",
                                               "Auto-Submitted", "MIME-Version", "Content-Type"});
  check(!boundary.empty() && count(plain, boundary) == 5);
  const std::string delimiter = "--" + boundary;
  std::vector<std::size_t> at;  // the delimiter lines
  for (std::size_t k = i; k < lines.size(); ++k) {
    if (lines[k].starts_with(delimiter)) at.push_back(k);
  }
  check(at.size() == 4 && lines[at[3]] == delimiter + "--" && at[3] == lines.size() - 1);
  for (std::size_t p = 0; p < 3; ++p) {
    check(lines[at[p]] == delimiter);
    std::size_t k = at[p] + 1;
    for (; k < at[p + 1] && !lines[k].empty(); ++k) {
      check(one_of(name_of(lines[k]),
                   {"Content-Description", "Content-Type", "Content-Transfer-Encoding"}));
    }
    check(k < at[p + 1]);
    if (p == 1) check_report(lines, k + 1, at[p + 1], recipients);
  }
}

void play(fuzz::fuzz_input in) {
  const std::uint8_t flags = in.octet();
  std::uint8_t reasons[slots];
  for (std::uint8_t& r : reasons) r = in.octet();
  const std::vector<std::string_view> f = fields_of(in.rest());
  const auto get = [&](std::size_t k) { return k < f.size() ? f[k] : std::string_view{}; };

  bounce_request r;
  r.reporting_mta = get(0);
  r.message_id_domain = get(1);
  r.sender = get(2);
  r.original_head = get(3);
  r.original_smtputf8 = flags & 1;
  r.original_body_is_raw = flags & 2;
  r.sequence = flags >> 2;
  r.queue_id = 0x0123456789abcdef;
  r.arrival = 1'700'000'000;
  r.now = r.arrival + 5 * 86400;
  for (std::size_t s = 0; s < slots && 4 + 4 * s < f.size(); ++s) {
    r.recipients.push_back({std::string(get(4 + 4 * s)), static_cast<bounce_reason>(reasons[s] % 6),
                            std::string(get(5 + 4 * s)), std::string(get(6 + 4 * s)),
                            std::string(get(7 + 4 * s))});
  }

  const std::optional<bounce_message> b = compose_bounce(r);
  check(b.has_value() == (!r.sender.empty() && !r.recipients.empty()));
  if (!b) return;
  const std::string plain = unstuff(b->body);
  check_structure(plain, r.recipients.size());
  const spool::envelope& e = b->envelope;
  check(e.sender.empty() && e.recipients.size() == 1 && e.recipients[0] == r.sender);
  check(e.size == plain.size() && e.wire_size == b->body.size() && !e.body_is_raw);
  bool eight_bit = false;
  for (unsigned char c : plain) eight_bit |= c >= 0x80;
  check(e.eight_bit == eight_bit && e.body_8bitmime == eight_bit);
  check(compose_bounce(r)->body == b->body);
}

}  // namespace
}  // namespace ringrelay::delivery

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ringrelay::delivery::play(ringrelay::fuzz::fuzz_input(data, size));
  return 0;
}
