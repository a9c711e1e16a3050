// Fuzz target: smtp::parse_command and smtp::valid_mailbox.
//
// The input is one command line without its CRLF. Beyond not crashing, the
// parser must keep what command.hh promises: the views it returns point
// into the line; a refusal is a 5xx reply with an enhanced code of the same
// class; an accepted MAIL or RCPT address is a valid mailbox that parses
// again on its own; SIZE= never exceeds the limit. A valid mailbox carries no
// control octet (it is copied into commands and headers) and, unless UTF-8
// is allowed, no octet above 0x7f; allowing UTF-8 changes nothing for an
// ASCII mailbox.
#include <cstddef>
#include <cstdint>
#include <ringrelay/smtp/command.hh>
#include <string>
#include <string_view>

#include "fuzz_input.hh"

namespace ringrelay::smtp {
namespace {

using fuzz::check;

bool inside(std::string_view part, std::string_view whole) {
  return part.empty() ||
         (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

bool ascii(std::string_view s) {
  for (unsigned char c : s) {
    if (c >= 0x80) return false;
  }
  return true;
}

void check_mailbox(std::string_view m) {
  const bool valid_ascii = valid_mailbox(m, false);
  const bool valid_utf8 = valid_mailbox(m, true);
  if (ascii(m)) check(valid_ascii == valid_utf8);
  if (valid_ascii) check(valid_utf8 && ascii(m));
  if (!valid_utf8) return;
  check(m.size() <= 254 && m.find('@') != std::string_view::npos);
  for (unsigned char c : m) check(c >= 0x20 && c != 0x7f);
}

void check_refusal(const parse_reply& err) {
  check(err.code >= 500 && err.code <= 559);
  check(err.enhanced.size() >= 5 && err.enhanced[0] == '5' && err.enhanced[1] == '.');
  check(!err.text.empty());
}

// "MAIL FROM:<address>" (or RCPT) built from what was parsed must parse to
// the same address.
void check_reparse(const command& cmd, const parse_options& opt) {
  std::string line = cmd.v == verb::mail ? "MAIL FROM:<" : "RCPT TO:<";
  line.append(cmd.address).append(">");
  if (cmd.v == verb::mail && cmd.smtputf8) line.append(" SMTPUTF8");
  command again;
  parse_reply err{};
  check(parse_command(line, opt, again, err));
  check(again.v == cmd.v && again.address == cmd.address);
}

void check_command(std::string_view line) {
  const parse_options opt;
  command cmd;
  parse_reply err{};
  if (!parse_command(line, opt, cmd, err)) {
    check_refusal(err);
    return;
  }
  check(cmd.v != verb::unknown);
  check(inside(cmd.arg, line) && inside(cmd.address, line));
  check(!cmd.has_size || cmd.size <= opt.max_size);
  if (cmd.v == verb::mail && !cmd.address.empty()) {
    check(valid_mailbox(cmd.address, cmd.smtputf8));
    check_mailbox(cmd.address);
    check_reparse(cmd, opt);
  }
  if (cmd.v == verb::rcpt) {
    check(!cmd.address.empty());
    if (cmd.address.find('@') != std::string_view::npos) check_mailbox(cmd.address);
    check_reparse(cmd, opt);
  }
}

}  // namespace
}  // namespace ringrelay::smtp

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const ringrelay::fuzz::fuzz_input in(data, size);
  ringrelay::smtp::check_command(in.rest());
  ringrelay::smtp::check_mailbox(in.rest());
  return 0;
}
