// Fuzz target: auth::sasl_exchange, the strict base64 codec and the
// password hash parser, on arbitrary client octets.
//
// Input: a flags octet, then the client's lines separated by LF. Flags:
// bits 0-1 the mechanism (PLAIN, LOGIN, lower-case "plain", or the first
// line's text), bit 2 the first line is the initial response, bit 3 the
// session's reader overflows instead of delivering the last line.
//
// The exchange must answer every call with a well-formed reply that fits
// the status (334 challenges, 5xx errors with an enhanced code of the same
// class, nothing for credentials), stop awaiting lines once it has ended,
// and yield only credentials RFC 4616 or the LOGIN rules allow: no NUL, a
// non-empty PLAIN username and password. The decoder must accept exactly
// the canonical encoding: what it decodes re-encodes to the same text.
#include <cstddef>
#include <cstdint>
#include <ringrelay/auth/base64.hh>
#include <ringrelay/auth/password.hh>
#include <ringrelay/auth/sasl.hh>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_input.hh"

namespace ringrelay::auth {
namespace {

using fuzz::check;
using status = sasl_exchange::status;

void check_reply(const sasl_exchange::result& r) {
  switch (r.st) {
    case status::challenge:
      check(r.code == 334 && r.reply.starts_with("334 "));
      return;
    case status::credentials:
      check(r.code == 0 && r.reply.empty());
      return;
    case status::error:
      check(r.code >= 500 && r.code <= 559 && r.reply.size() > 10);
      check(r.reply.substr(0, 3) == std::to_string(r.code));
      check(r.reply.substr(3, 3) == " 5.");
      return;
  }
  check(false);
}

void check_credentials(const sasl_credentials& c, bool plain) {
  check(c.username.find('\0') == std::string::npos);
  check(c.password.find('\0') == std::string::npos);
  if (plain) check(!c.username.empty() && !c.password.empty());
}

void check_base64(std::string_view text) {
  std::string decoded;
  if (base64_decode(text, decoded)) check(base64_encode(decoded) == text);
  std::string again;
  check(base64_decode(base64_encode(text), again) && again == text);
}

std::vector<std::string_view> lines_of(std::string_view in) {
  std::vector<std::string_view> lines;
  for (;;) {
    const auto nl = in.find('\n');
    lines.push_back(in.substr(0, nl));
    if (nl == std::string_view::npos) return lines;
    in.remove_prefix(nl + 1);
  }
}

void run(fuzz::fuzz_input& in) {
  const std::uint8_t flags = in.octet();
  auto lines = lines_of(in.rest());
  std::size_t next = 0;
  static constexpr std::string_view mechanisms[] = {"PLAIN", "LOGIN", "plain"};
  std::string_view mechanism = (flags & 3) == 3 ? lines[next++] : mechanisms[flags & 3];
  const bool plain = mechanism == "PLAIN" || mechanism == "plain";
  std::string_view initial;
  if ((flags & 4) && next < lines.size()) initial = lines[next++];

  sasl_exchange x;
  auto r = x.start(mechanism, initial);
  check_reply(r);
  while (r.st == status::challenge && next < lines.size()) {
    check(x.awaiting_line());
    const bool overflow = (flags & 8) && next + 1 == lines.size();
    r = overflow ? x.line_too_long() : x.step(lines[next]);
    ++next;
    check_reply(r);
  }
  check(x.awaiting_line() == (r.st == status::challenge));
  if (r.st == status::credentials) check_credentials(x.credentials(), plain);

  for (auto line : lines) check_base64(line);
  // The hash parser sees users.json values; it must not crash on any.
  password_hash_problem(in.rest());
}

}  // namespace
}  // namespace ringrelay::auth

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ringrelay::fuzz::fuzz_input in(data, size);
  ringrelay::auth::run(in);
  return 0;
}
