// smtp/command — the SMTP command-line parser (server side).
//
// Turns one command line (without its CRLF) into a `command`, or into the
// reply that refuses it: unknown verb or empty line → 500 5.5.1, bad syntax
// → 501 5.5.4, bad parameter → 555 5.5.4 (RFC 5321 4.1.1.11, RFC 1869),
// SIZE above the limit → 552 5.3.4, bad sender → 501 5.1.7, bad recipient
// → 501 5.1.3, non-ASCII sender without the SMTPUTF8 parameter → 550 5.6.7
// (RFC 6531 3.5). It checks syntax only; whether a command is allowed in
// the session's state, and whether an accepted parameter was advertised
// (BODY=BINARYMIME), is the session's job; RCPT NOTIFY=/ORCPT= (RFC 3461)
// are accepted and ignored until DSN is offered. Pure, no
// allocation, no exceptions, callable from any thread: the views in a
// `command` point into the line, which must outlive it.
//
// Leniency: verbs and parameter keywords are case-insensitive; runs of
// spaces between verb, path and parameters, a space after "FROM:"/"TO:", and
// trailing SP/TAB are accepted. HELO/EHLO accept any printable ASCII token
// (clients send odd names) but no space, control or non-ASCII octet (the
// name goes into the Received header, which must stay ASCII: RFC 6531
// 3.7.1). Free-text arguments (VRFY, NOOP, HELP, AUTH) refuse control
// characters other than TAB with 501 5.5.4.
//
// UTF-8 addresses (RFC 6531): MAIL accepts a non-ASCII mailbox only when the
// same line carries SMTPUTF8. RCPT cannot know what MAIL said, so the parser
// accepts any well-formed UTF-8 recipient and the session must refuse it
// (553 5.6.7, RFC 6531 3.5) when the transaction has no SMTPUTF8.
#pragma once

#include <cstdint>
#include <string_view>

namespace ringrelay::smtp {

enum class verb : std::uint8_t {
  helo,
  ehlo,
  mail,
  rcpt,
  data,
  bdat,
  rset,
  noop,
  quit,
  vrfy,
  help,
  starttls,
  auth,
  unknown
};

enum class body_type : std::uint8_t { unspecified, seven_bit, eight_bit_mime, binary_mime };

// A refusal: "code enhanced text". `text` is static.
struct parse_reply {
  std::uint16_t code;
  std::string_view enhanced;
  std::string_view text;
};

struct command {
  verb v = verb::unknown;
  // Everything after the verb and its spaces, as received, without trailing
  // SP/TAB (HELO/EHLO domain, VRFY/HELP/NOOP argument, AUTH mechanism and
  // initial response; for MAIL/RCPT the whole "FROM:<...> params" text).
  std::string_view arg;
  // MAIL/RCPT: the path without angle brackets and without a source route
  // (RFC 5321 4.1.2 "@a,@b:" is accepted and ignored). Empty for "<>"; for
  // RCPT it may be "Postmaster" with no domain (RFC 5321 4.1.1.3).
  std::string_view address;
  // MAIL parameters (RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8).
  std::uint64_t size = 0;  // 0 when SIZE= was not given
  bool has_size = false;
  body_type body = body_type::unspecified;
  bool smtputf8 = false;
  // BDAT (RFC 3030): chunk size and LAST.
  std::uint64_t chunk_size = 0;
  bool last = false;
};

struct parse_options {
  std::uint64_t max_size = 52428800;  // SIZE= above this: 552 5.3.4
};

// Parses `line` (no CRLF; the caller enforces the line-length limit).
// Returns true and fills `out`, or false and fills `err` (`out` then holds
// nothing meaningful).
bool parse_command(std::string_view line, const parse_options& opt, command& out, parse_reply& err);

// Checks a mailbox (RFC 5321 4.1.2 Mailbox: Local-part "@" Domain or
// address-literal; RFC 6531 allows UTF-8 when `utf8` is true, and it must be
// well-formed). Address literals are IPv4 or "IPv6:" only (a general
// literal names no address we could deliver to). Limits (RFC 5321 4.5.3.1):
// local part 64 octets, mailbox 254 so that the path "<mailbox>" fits in 256
// (which also keeps the domain within its 255), ASCII labels 63 (RFC 1035).
bool valid_mailbox(std::string_view mailbox, bool utf8);

}  // namespace ringrelay::smtp
