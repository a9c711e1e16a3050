// smtp/command — see the header for the contract. Grammar references are to
// RFC 5321 4.1.2 unless stated; RFC 6531 3.3 extends it with UTF-8.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <ringrelay/smtp/command.hh>
#include <span>
#include <string_view>

namespace ringrelay::smtp {
namespace {

constexpr auto npos = std::string_view::npos;

// Replies. The texts tell the client what to send instead.
constexpr parse_reply unrecognized{500, "5.5.1", "Command unrecognized"};
constexpr parse_reply helo_syntax{501, "5.5.4", "Syntax: HELO hostname"};
constexpr parse_reply ehlo_syntax{501, "5.5.4", "Syntax: EHLO hostname"};
constexpr parse_reply mail_syntax{501, "5.5.4", "Syntax: MAIL FROM:<address>"};
constexpr parse_reply rcpt_syntax{501, "5.5.4", "Syntax: RCPT TO:<address>"};
constexpr parse_reply data_syntax{501, "5.5.4", "Syntax: DATA"};
constexpr parse_reply bdat_syntax{501, "5.5.4", "Syntax: BDAT chunk-size [LAST]"};
constexpr parse_reply rset_syntax{501, "5.5.4", "Syntax: RSET"};
constexpr parse_reply quit_syntax{501, "5.5.4", "Syntax: QUIT"};
constexpr parse_reply vrfy_syntax{501, "5.5.4", "Syntax: VRFY address"};
constexpr parse_reply starttls_syntax{501, "5.5.4", "Syntax: STARTTLS"};
constexpr parse_reply auth_syntax{501, "5.5.4", "Syntax: AUTH mechanism [initial-response]"};
constexpr parse_reply control_character{501, "5.5.4",
                                        "Syntax error: control character in argument"};
constexpr parse_reply param_syntax{501, "5.5.4", "Syntax error in parameters: use KEYWORD[=value]"};
constexpr parse_reply param_duplicate{501, "5.5.4", "Duplicate parameter"};
constexpr parse_reply param_unsupported{555, "5.5.4", "Unsupported parameter"};
constexpr parse_reply size_syntax{501, "5.5.4", "Syntax: SIZE=<octets>"};
constexpr parse_reply size_too_big{552, "5.3.4", "Message size exceeds fixed limit"};
constexpr parse_reply body_syntax{501, "5.5.4", "Syntax: BODY=7BIT|8BITMIME|BINARYMIME"};
constexpr parse_reply smtputf8_syntax{501, "5.5.4", "Syntax: SMTPUTF8 (it takes no value)"};
constexpr parse_reply value_missing{501, "5.5.4", "Syntax: parameter needs a value"};
constexpr parse_reply bad_sender{501, "5.1.7", "Bad sender address syntax"};
constexpr parse_reply sender_needs_utf8{550, "5.6.7",
                                        "Non-ASCII sender address requires the SMTPUTF8 parameter"};
constexpr parse_reply bad_recipient{501, "5.1.3", "Bad recipient address syntax"};

// RFC 5321 4.5.3.1: local part 64, path 256 including the angle brackets.
constexpr std::size_t max_local_part = 64;
constexpr std::size_t max_path = 256;
constexpr std::size_t max_mailbox = max_path - 2;
// RFC 1035 2.3.4. U-labels are not held to it: their limit applies to the
// A-label form, which only IDNA conversion can measure.
constexpr std::size_t max_ascii_label = 63;

constexpr unsigned char octet(char c) {
  return static_cast<unsigned char>(c);
}
constexpr bool is_alpha(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
constexpr bool is_digit(unsigned char c) {
  return c >= '0' && c <= '9';
}
constexpr bool is_let_dig(unsigned char c) {
  return is_alpha(c) || is_digit(c);
}
constexpr unsigned char to_lower(unsigned char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<unsigned char>(c + ('a' - 'A')) : c;
}

// atext (RFC 5322 3.2.3), the ASCII part of an Atom; a table because every
// local-part octet is looked up.
constexpr auto atext_table = [] {
  std::array<bool, 256> table{};
  for (unsigned c = 0; c < table.size(); ++c) table[c] = is_let_dig(static_cast<unsigned char>(c));
  for (char c : std::string_view("!#$%&'*+-/=?^_`{|}~"))
    table[static_cast<unsigned char>(c)] = true;
  return table;
}();
constexpr bool is_atext(unsigned char c) {
  return atext_table[c];
}
// qtextSMTP = %d32-33 / %d35-91 / %d93-126 (no DQUOTE, no backslash).
constexpr bool is_qtext(unsigned char c) {
  return c >= 32 && c <= 126 && c != '"' && c != '\\';
}
// esmtp-value = 1*(%d33-60 / %d62-126): printable, no "=".
constexpr bool is_value_char(unsigned char c) {
  return c >= 33 && c <= 126 && c != '=';
}

bool ci_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (to_lower(octet(a[i])) != to_lower(octet(b[i]))) return false;
  }
  return true;
}

bool ci_starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && ci_equal(s.substr(0, prefix.size()), prefix);
}

bool fail(parse_reply& err, const parse_reply& reply) {
  err = reply;
  return false;
}

std::string_view skip_spaces(std::string_view s) {
  auto start = s.find_first_not_of(' ');
  return start == npos ? std::string_view{} : s.substr(start);
}

// Takes the next space-separated token off the front of `s`.
std::string_view next_token(std::string_view& s) {
  s = skip_spaces(s);
  auto end = s.find(' ');
  auto token = s.substr(0, end);
  s.remove_prefix(token.size());
  return token;
}

// Length of the well-formed UTF8-non-ascii sequence (RFC 3629 4: no
// overlong forms, no surrogates, nothing above U+10FFFF) that starts `s`,
// or 0 when there is none.
std::size_t utf8_sequence(std::string_view s) {
  auto lead = octet(s[0]);
  std::size_t length = 0;
  unsigned char low = 0x80, high = 0xbf;  // range of the second octet
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    if (lead == 0xe0) low = 0xa0;
    if (lead == 0xed) high = 0x9f;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    if (lead == 0xf0) low = 0x90;
    if (lead == 0xf4) high = 0x8f;
  } else {
    return 0;
  }
  if (s.size() < length || octet(s[1]) < low || octet(s[1]) > high) return 0;
  for (std::size_t i = 2; i < length; ++i) {
    if ((octet(s[i]) & 0xc0) != 0x80) return 0;
  }
  return length;
}

// Dot-string = Atom *("." Atom); Atom = 1*atext, with atext =/
// UTF8-non-ascii under SMTPUTF8. Returns the length of the Dot-string that
// starts `s` (0 when there is none).
std::size_t dot_string_length(std::string_view s, bool utf8) {
  std::size_t i = 0;
  for (;;) {
    std::size_t atom_start = i;
    while (i < s.size()) {
      auto c = octet(s[i]);
      if (is_atext(c)) {
        ++i;
      } else if (c >= 0x80 && utf8) {
        auto n = utf8_sequence(s.substr(i));
        if (n == 0) return 0;
        i += n;
      } else {
        break;
      }
    }
    if (i == atom_start) return 0;  // empty atom: leading, trailing or double dot
    if (i == s.size() || s[i] != '.') return i;
    ++i;
  }
}

// Quoted-string = DQUOTE *QcontentSMTP DQUOTE, with qtextSMTP =/
// UTF8-non-ascii under SMTPUTF8 and quoted-pairSMTP = "\" %d32-126. Returns
// the length including both quotes (0 when there is none).
std::size_t quoted_string_length(std::string_view s, bool utf8) {
  if (s.empty() || s[0] != '"') return 0;
  for (std::size_t i = 1; i < s.size();) {
    auto c = octet(s[i]);
    if (c == '"') return i + 1;
    if (c == '\\') {
      if (i + 1 == s.size() || octet(s[i + 1]) < 32 || octet(s[i + 1]) > 126) return 0;
      i += 2;
    } else if (is_qtext(c)) {
      ++i;
    } else if (c >= 0x80 && utf8) {
      auto n = utf8_sequence(s.substr(i));
      if (n == 0) return 0;
      i += n;
    } else {
      return 0;
    }
  }
  return 0;
}

// sub-domain = Let-dig [Ldh-str], i.e. letters, digits and inner hyphens;
// under SMTPUTF8 also a U-label (RFC 6531 3.3), checked here for UTF-8
// well-formedness only: IDNA2008 validity is for the DNS lookup to refuse.
bool valid_label(std::string_view label, bool utf8) {
  if (label.empty() || label.front() == '-' || label.back() == '-') return false;
  bool ascii = true;
  for (std::size_t i = 0; i < label.size();) {
    auto c = octet(label[i]);
    if (is_let_dig(c) || c == '-') {
      ++i;
    } else if (c >= 0x80 && utf8) {
      auto n = utf8_sequence(label.substr(i));
      if (n == 0) return false;
      ascii = false;
      i += n;
    } else {
      return false;
    }
  }
  return !ascii || label.size() <= max_ascii_label;
}

// Domain = sub-domain *("." sub-domain): no empty label, so no leading,
// trailing or double dot.
bool valid_domain(std::string_view domain, bool utf8) {
  for (;;) {
    auto dot = domain.find('.');
    if (!valid_label(domain.substr(0, dot), utf8)) return false;
    if (dot == npos) return true;
    domain.remove_prefix(dot + 1);
  }
}

// IPv4-address-literal = Snum 3("." Snum); Snum = 1*3DIGIT, value 0-255.
bool valid_ipv4(std::string_view s) {
  for (int part = 0; part < 4; ++part) {
    if (part > 0) {
      if (s.empty() || s[0] != '.') return false;
      s.remove_prefix(1);
    }
    std::size_t digits = 0;
    unsigned value = 0;
    while (digits < s.size() && digits < 4 && is_digit(octet(s[digits]))) {
      value = value * 10 + static_cast<unsigned>(s[digits] - '0');
      ++digits;
    }
    if (digits == 0 || digits > 3 || value > 255) return false;
    s.remove_prefix(digits);
  }
  return s.empty();
}

// IPv6-address-literal = "IPv6:" IPv6-addr. inet_pton accepts exactly the
// RFC 4291 text forms the grammar lists (full, compressed, with an embedded
// IPv4 tail) and refuses zone identifiers.
bool valid_ipv6(std::string_view s) {
  std::array<char, INET6_ADDRSTRLEN> text{};
  // inet_pton reads a C string: a NUL inside would end it early and let
  // whatever follows (CR, a forged header) through unchecked.
  if (s.size() >= text.size() || s.find('\0') != std::string_view::npos) return false;
  s.copy(text.data(), s.size());
  in6_addr addr;
  return inet_pton(AF_INET6, text.data(), &addr) == 1;
}

// address-literal = "[" ( IPv4-address-literal / IPv6-address-literal /
// General-address-literal ) "]". General literals are refused: no
// standardized tag other than IPv6 exists, so nothing could deliver to one.
bool valid_address_literal(std::string_view s) {
  if (s.size() < 2 || s.front() != '[' || s.back() != ']') return false;
  s = s.substr(1, s.size() - 2);
  constexpr std::string_view ipv6_tag = "IPv6:";
  if (ci_starts_with(s, ipv6_tag)) return valid_ipv6(s.substr(ipv6_tag.size()));
  return valid_ipv4(s);
}

// Splits "<path>[ params]" after `keyword` ("FROM:" / "TO:"). A space after
// the keyword is tolerated: many clients send "MAIL FROM: <a@b>". The path
// ends at the first ">" outside a quoted string, since a quoted local part
// may itself hold ">".
bool split_path_argument(std::string_view arg, std::string_view keyword, std::string_view& path,
                         std::string_view& params) {
  if (!ci_starts_with(arg, keyword)) return false;
  arg = skip_spaces(arg.substr(keyword.size()));
  if (arg.empty() || arg[0] != '<') return false;
  bool quoted = false;
  std::size_t i = 1;
  for (; i < arg.size(); ++i) {
    char c = arg[i];
    if (quoted) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        quoted = false;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == '>') {
      break;
    }
  }
  if (i >= arg.size()) return false;
  path = arg.substr(1, i - 1);
  params = arg.substr(i + 1);
  return params.empty() || params[0] == ' ';
}

// Path = "<" [ A-d-l ":" ] Mailbox ">"; A-d-l = At-domain *("," At-domain);
// At-domain = "@" Domain. `path` is the text between the brackets. The
// source route must be accepted and ignored (RFC 5321 4.1.1.3, C), so only
// its syntax is checked and `mailbox` is what follows it.
bool strip_source_route(std::string_view path, bool utf8, std::string_view& mailbox) {
  if (path.size() + 2 > max_path) return false;
  mailbox = path;
  if (path.empty() || path[0] != '@') return true;
  auto colon = path.find(':');  // a Domain holds no ":", so the first one ends the route
  if (colon == npos) return false;
  mailbox = path.substr(colon + 1);
  auto route = path.substr(0, colon);
  for (;;) {
    auto comma = route.find(',');
    auto at_domain = route.substr(0, comma);
    if (at_domain.empty() || at_domain[0] != '@' || !valid_domain(at_domain.substr(1), utf8)) {
      return false;
    }
    if (comma == npos) return true;
    route.remove_prefix(comma + 1);
  }
}

// esmtp-param = esmtp-keyword ["=" esmtp-value] (RFC 5321 4.1.2), with
// esmtp-value =/ UTF8-non-ascii (RFC 6531 3.3).
struct esmtp_param {
  std::string_view keyword;
  std::string_view value;
  bool has_value = false;
};

bool split_param(std::string_view token, esmtp_param& p) {
  auto equals = token.find('=');
  p.keyword = token.substr(0, equals);
  // esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
  if (p.keyword.empty() || !is_let_dig(octet(p.keyword[0]))) return false;
  for (char c : p.keyword) {
    if (!is_let_dig(octet(c)) && c != '-') return false;
  }
  p.has_value = equals != npos;
  if (!p.has_value) return true;
  p.value = token.substr(equals + 1);
  if (p.value.empty()) return false;
  for (std::size_t i = 0; i < p.value.size();) {
    auto c = octet(p.value[i]);
    if (is_value_char(c)) {
      ++i;
    } else if (auto n = c >= 0x80 ? utf8_sequence(p.value.substr(i)) : 0; n != 0) {
      i += n;
    } else {
      return false;
    }
  }
  return true;
}

// 1*DIGIT into a uint64, refusing overflow.
bool parse_number(std::string_view s, std::uint64_t& out) {
  if (s.empty()) return false;
  std::uint64_t value = 0;
  for (char c : s) {
    if (!is_digit(octet(c))) return false;
    auto digit = static_cast<std::uint64_t>(c - '0');
    if (value > (UINT64_MAX - digit) / 10) return false;
    value = value * 10 + digit;
  }
  out = value;
  return true;
}

// RFC 1870: size-value = 1*20DIGIT. The limit is applied by the caller once
// the whole line has parsed, so a syntax error wins over a policy refusal.
// A valid 20-digit value beyond 2^64-1 is still a size, just larger than any
// limit: it saturates so the caller answers 552, not a syntax error.
bool apply_size(const esmtp_param& p, command& out, parse_reply& err) {
  if (!p.has_value || p.value.empty() || p.value.size() > 20) return fail(err, size_syntax);
  if (!parse_number(p.value, out.size)) {
    for (char c : p.value)
      if (!is_digit(octet(c))) return fail(err, size_syntax);
    out.size = UINT64_MAX;
  }
  out.has_size = true;
  return true;
}

// RFC 6152 BODY=7BIT / 8BITMIME; RFC 3030 BODY=BINARYMIME.
bool apply_body(const esmtp_param& p, command& out, parse_reply& err) {
  if (!p.has_value) return fail(err, body_syntax);
  if (ci_equal(p.value, "7BIT")) {
    out.body = body_type::seven_bit;
  } else if (ci_equal(p.value, "8BITMIME")) {
    out.body = body_type::eight_bit_mime;
  } else if (ci_equal(p.value, "BINARYMIME")) {
    out.body = body_type::binary_mime;
  } else {
    return fail(err, body_syntax);
  }
  return true;
}

// RFC 6531 3.4: "it MUST not accept a value".
bool apply_smtputf8(const esmtp_param& p, command& out, parse_reply& err) {
  if (p.has_value) return fail(err, smtputf8_syntax);
  out.smtputf8 = true;
  return true;
}

// MAIL AUTH= (RFC 4954 5) and RCPT NOTIFY=/ORCPT= (RFC 3461 4): all take a
// value; ringrelay accepts and ignores them.
bool apply_ignored(const esmtp_param& p, command&, parse_reply& err) {
  return p.has_value || fail(err, value_missing);
}

struct param_spec {
  std::string_view keyword;
  bool (*apply)(const esmtp_param&, command&, parse_reply&);
};

constexpr param_spec mail_params[] = {
    {"SIZE", apply_size},
    {"BODY", apply_body},
    {"SMTPUTF8", apply_smtputf8},
    {"AUTH", apply_ignored},
};
constexpr param_spec rcpt_params[] = {
    {"NOTIFY", apply_ignored},
    {"ORCPT", apply_ignored},
};

// Mail-parameters = esmtp-param *(SP esmtp-param). Keywords are
// case-insensitive (RFC 5321 2.4); a repeated one is ambiguous, so refused.
bool parse_params(std::string_view params, std::span<const param_spec> specs, command& out,
                  parse_reply& err) {
  unsigned seen = 0;
  for (auto token = next_token(params); !token.empty(); token = next_token(params)) {
    esmtp_param p;
    if (!split_param(token, p)) return fail(err, param_syntax);
    std::size_t i = 0;
    while (i < specs.size() && !ci_equal(p.keyword, specs[i].keyword)) ++i;
    if (i == specs.size()) return fail(err, param_unsupported);
    if (seen & (1u << i)) return fail(err, param_duplicate);
    seen |= 1u << i;
    if (!specs[i].apply(p, out, err)) return false;
  }
  return true;
}

struct verb_spec;
using check_fn = bool (*)(const verb_spec&, std::string_view arg, const parse_options&, command&,
                          parse_reply&);

enum class argument : std::uint8_t { none, optional, required };

// One row per verb: its argument rule, the refusal when the argument breaks
// it, and the verb's own syntax check (none: free text).
struct verb_spec {
  std::string_view name;
  verb v;
  argument arg;
  const parse_reply* syntax;
  check_fn check;
};

// RFC 5321 4.1.1.1 wants a Domain or address literal, but clients send odd
// names (bare hostnames with "_", a trailing dot, a malformed literal), and
// refusing them only breaks mail. The name is kept as one printable ASCII token
// because it is copied into the Received header.
bool check_hostname(const verb_spec& spec, std::string_view arg, const parse_options&, command&,
                    parse_reply& err) {
  for (char c : arg) {
    if (octet(c) <= ' ' || octet(c) >= 0x7f) return fail(err, *spec.syntax);
  }
  return true;
}

// "MAIL FROM:" Reverse-path [SP Mail-parameters]; Reverse-path = Path / "<>".
bool check_mail(const verb_spec&, std::string_view arg, const parse_options& opt, command& out,
                parse_reply& err) {
  std::string_view path, params;
  if (!split_path_argument(arg, "FROM:", path, params)) return fail(err, mail_syntax);
  if (!parse_params(params, mail_params, out, err)) return false;
  if (!path.empty()) {
    std::string_view mailbox;
    if (!strip_source_route(path, out.smtputf8, mailbox)) return fail(err, bad_sender);
    if (!valid_mailbox(mailbox, out.smtputf8)) {
      // RFC 6531 3.5: an address that is only wrong for lacking SMTPUTF8
      // gets 550 X.6.7, so the client learns what to add.
      bool utf8_would_do = !out.smtputf8 && valid_mailbox(mailbox, true);
      return fail(err, utf8_would_do ? sender_needs_utf8 : bad_sender);
    }
    out.address = mailbox;
  }
  if (out.has_size && out.size > opt.max_size) return fail(err, size_too_big);
  return true;
}

// "RCPT TO:" ( "<Postmaster@" Domain ">" / "<Postmaster>" / Forward-path )
// [SP Rcpt-parameters]. The transaction's SMTPUTF8 is the session's to
// enforce (see the header), so UTF-8 is allowed here.
bool check_rcpt(const verb_spec&, std::string_view arg, const parse_options&, command& out,
                parse_reply& err) {
  std::string_view path, params;
  if (!split_path_argument(arg, "TO:", path, params)) return fail(err, rcpt_syntax);
  if (!parse_params(params, rcpt_params, out, err)) return false;
  std::string_view mailbox;
  if (path.empty() || !strip_source_route(path, true, mailbox)) return fail(err, bad_recipient);
  if (!ci_equal(mailbox, "Postmaster") && !valid_mailbox(mailbox, true)) {
    return fail(err, bad_recipient);
  }
  out.address = mailbox;
  return true;
}

// RFC 3030 2: "BDAT" SP chunk-size [SP end-marker]; chunk-size = 1*DIGIT;
// end-marker = "LAST".
bool check_bdat(const verb_spec&, std::string_view arg, const parse_options&, command& out,
                parse_reply& err) {
  auto size = next_token(arg);
  auto marker = next_token(arg);
  if (!parse_number(size, out.chunk_size) || !next_token(arg).empty()) {
    return fail(err, bdat_syntax);
  }
  if (!marker.empty()) {
    if (!ci_equal(marker, "LAST")) return fail(err, bdat_syntax);
    out.last = true;
  }
  return true;
}

// Free text is logged and echoed to other modules; a CR, LF or NUL in it
// could forge log lines or protocol lines downstream.
bool check_text(std::string_view arg, parse_reply& err) {
  for (char c : arg) {
    if ((octet(c) < ' ' && c != '\t') || octet(c) == 0x7f) return fail(err, control_character);
  }
  return true;
}

// Ordered by how often each verb arrives in a bulk session.
constexpr verb_spec verbs[] = {
    {"RCPT", verb::rcpt, argument::required, &rcpt_syntax, check_rcpt},
    {"MAIL", verb::mail, argument::required, &mail_syntax, check_mail},
    {"DATA", verb::data, argument::none, &data_syntax, nullptr},
    {"BDAT", verb::bdat, argument::required, &bdat_syntax, check_bdat},
    {"RSET", verb::rset, argument::none, &rset_syntax, nullptr},
    {"EHLO", verb::ehlo, argument::required, &ehlo_syntax, check_hostname},
    {"AUTH", verb::auth, argument::required, &auth_syntax, nullptr},
    {"QUIT", verb::quit, argument::none, &quit_syntax, nullptr},
    {"NOOP", verb::noop, argument::optional, nullptr, nullptr},
    {"STARTTLS", verb::starttls, argument::none, &starttls_syntax, nullptr},
    {"HELO", verb::helo, argument::required, &helo_syntax, check_hostname},
    {"VRFY", verb::vrfy, argument::required, &vrfy_syntax, nullptr},
    {"HELP", verb::help, argument::optional, nullptr, nullptr},
};

const verb_spec* find_verb(std::string_view name) {
  for (const auto& spec : verbs) {
    if (ci_equal(name, spec.name)) return &spec;
  }
  return nullptr;
}

}  // namespace

bool parse_command(std::string_view line, const parse_options& opt, command& out,
                   parse_reply& err) {
  out = command{};
  // RFC 5321 4.1.1 wants exactly one SP before an argument and none after;
  // clients add both, and tolerating them is harmless.
  auto end = line.find_last_not_of(" \t");
  line = end == npos ? std::string_view{} : line.substr(0, end + 1);
  auto space = line.find(' ');
  const verb_spec* spec = find_verb(line.substr(0, space));
  if (spec == nullptr) return fail(err, unrecognized);
  out.v = spec->v;
  out.arg = space == npos ? std::string_view{} : skip_spaces(line.substr(space));
  if ((spec->arg == argument::required && out.arg.empty()) ||
      (spec->arg == argument::none && !out.arg.empty())) {
    return fail(err, *spec->syntax);
  }
  if (spec->check != nullptr) return spec->check(*spec, out.arg, opt, out, err);
  return check_text(out.arg, err);
}

bool valid_mailbox(std::string_view mailbox, bool utf8) {
  if (mailbox.size() > max_mailbox) return false;
  // Mailbox = Local-part "@" ( Domain / address-literal );
  // Local-part = Dot-string / Quoted-string.
  auto local = mailbox.starts_with('"') ? quoted_string_length(mailbox, utf8)
                                        : dot_string_length(mailbox, utf8);
  if (local == 0 || local > max_local_part || local + 1 >= mailbox.size() ||
      mailbox[local] != '@') {
    return false;
  }
  auto domain = mailbox.substr(local + 1);
  return domain[0] == '[' ? valid_address_literal(domain) : valid_domain(domain, utf8);
}

}  // namespace ringrelay::smtp
