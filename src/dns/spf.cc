#include <arpa/inet.h>

#include <algorithm>
#include <memory>
#include <ringrelay/dns/spf.hh>
#include <ringrelay/util/hostname.hh>

namespace ringrelay::dns {
namespace {

using util::ascii_lower;
using util::ascii_lowered;

bool alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool digit(char c) {
  return c >= '0' && c <= '9';
}

bool alphanum(char c) {
  return alpha(c) || digit(c);
}

bool all_digits(std::string_view s) {
  return std::all_of(s.begin(), s.end(), digit);
}

std::string quoted(std::string_view s) {
  // Appended piece by piece: GCC 12's -Wrestrict misfires on
  // "literal" + std::string at -O3.
  std::string out = "\"";
  out.append(s);
  out += '"';
  return out;
}

// An octet that may not appear in a record, named so that it can be seen.
std::string octet_name(char c) {
  static constexpr char hex[] = "0123456789ABCDEF";
  const auto u = static_cast<unsigned char>(c);
  return std::string("the octet 0x") + hex[u >> 4] + hex[u & 15] +
         (c == '\t' ? " (a tab; only spaces separate terms)" : "");
}

// A problem at `at` octets into the part of the term being checked.
struct failure {
  std::size_t at = 0;
  std::string message;
};
using outcome = std::optional<failure>;

outcome fail(std::size_t at, std::string message) {
  return failure{at, std::move(message)};
}

// RFC 7208 7.1: a macro-string is visible characters (parse_term checked
// them), "%" only as the start of a macro-expand. `ends_in_macro` tells
// whether the last thing in it is one. The letters c, r and t are for exp
// text only (RFC 7208 7.3).
outcome check_macro_string(std::string_view s, bool& ends_in_macro) {
  ends_in_macro = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    ends_in_macro = false;
    if (c != '%') continue;
    if (i + 1 < s.size() && (s[i + 1] == '%' || s[i + 1] == '_' || s[i + 1] == '-')) {
      ++i;
      ends_in_macro = true;
      continue;
    }
    if (i + 1 >= s.size() || s[i + 1] != '{')
      return fail(i, "\"%\" must start a macro such as %{d}; write %% for a percent sign");
    const auto close = s.find('}', i);
    if (close == std::string_view::npos) return fail(i, "the macro has no closing \"}\"");
    const std::string_view body = s.substr(i + 2, close - i - 2);
    const std::string_view macro = s.substr(i, close - i + 1);
    if (body.empty() ||
        std::string_view("slodiphcrtv").find(ascii_lower(body[0])) == std::string::npos)
      return fail(i, quoted(macro) +
                         " is not a macro: the letter after %{ is one of s l o d i p h v "
                         "(RFC 7208 7.1)");
    if (std::string_view("crt").find(ascii_lower(body[0])) != std::string::npos)
      return fail(i, quoted(macro) +
                         ": the macro letters c, r and t are for exp text only "
                         "(RFC 7208 7.3)");
    std::size_t j = 1;
    while (j < body.size() && digit(body[j])) ++j;
    if (j < body.size() && ascii_lower(body[j]) == 'r') ++j;
    for (; j < body.size(); ++j)
      if (std::string_view(".-+,/_=").find(body[j]) == std::string::npos)
        return fail(i, quoted(macro) +
                           " is not a macro: after the letter come digits, \"r\" "
                           "and the delimiters . - + , / _ = (RFC 7208 7.1)");
    i = close;
    ends_in_macro = true;
  }
  return std::nullopt;
}

// RFC 7208 §12 toplabel: letters, digits and hyphens, starting and ending
// with a letter or digit, not all digits.
bool is_toplabel(std::string_view l) {
  return !l.empty() && alphanum(l.front()) && alphanum(l.back()) && !all_digits(l) &&
         std::all_of(l.begin(), l.end(), [](char c) { return alphanum(c) || c == '-'; });
}

// A macro-free domain-spec is looked up as it is: its labels must make a
// DNS name (RFC 1035 2.3.4).
outcome check_labels(std::string_view name) {
  if (name.size() > 253) return fail(0, "the domain is longer than 253 octets");
  std::size_t start = 0;
  for (;;) {
    const auto dot = name.find('.', start);
    const std::size_t end = dot == std::string_view::npos ? name.size() : dot;
    if (end == start) return fail(start, "the domain has an empty label (\"..\" or a leading dot)");
    if (end - start > 63)
      return fail(start, "the domain has a label longer than 63 octets: " +
                             quoted(name.substr(start, end - start)));
    if (dot == std::string_view::npos) return std::nullopt;
    start = dot + 1;
  }
}

// RFC 7208 §12: domain-spec = macro-string domain-end, where domain-end is
// "." toplabel ["."] or a macro-expand. `lead` is what comes before it
// ("include:", "redirect=").
outcome check_domain_spec(std::string_view spec, std::string_view lead) {
  if (spec.empty())
    return fail(0, quoted(lead) + " needs a domain after it, as in " + std::string(lead) +
                       "_spf.example.com");
  bool ends_in_macro = false;
  if (auto f = check_macro_string(spec, ends_in_macro)) return f;
  if (ends_in_macro) return std::nullopt;
  std::string_view name = spec;
  if (name.ends_with('.')) name.remove_suffix(1);
  const auto dot = name.rfind('.');
  if (dot == std::string_view::npos || !is_toplabel(name.substr(dot + 1)))
    return fail(0, quoted(spec) +
                       " is not a domain name: it needs at least two labels, the last a top-level "
                       "label of letters, digits and hyphens that is not all digits, as in "
                       "_spf.example.com");
  if (spec.find('%') == std::string_view::npos) return check_labels(name);
  return std::nullopt;
}

// RFC 7208 §12 ip4-cidr-length and ip6-cidr-length: a number without a
// leading zero, at most `max`.
outcome read_prefix(std::string_view digits, unsigned max, std::optional<unsigned>& out) {
  const bool ok = !digits.empty() && digits.size() <= 3 && all_digits(digits) &&
                  (digits.size() == 1 || digits[0] != '0');
  unsigned value = 0;
  for (char c : digits) value = value * 10 + static_cast<unsigned>(c - '0');
  if (!ok || value > max)
    return fail(0, "the prefix length \"/" + std::string(digits) + "\" is not a number from 0 to " +
                       std::to_string(max));
  out = value;
  return std::nullopt;
}

// RFC 7208 §12 ip4-network: four qnums, each 0 to 255 without leading
// zeros.
bool is_ip4(std::string_view s) {
  int parts = 0;
  std::size_t start = 0;
  for (;;) {
    const auto dot = s.find('.', start);
    const std::string_view q =
        s.substr(start, dot == std::string_view::npos ? s.npos : dot - start);
    if (q.empty() || q.size() > 3 || !all_digits(q) || (q.size() > 1 && q[0] == '0') ||
        std::stoi(std::string(q)) > 255)
      return false;
    ++parts;
    if (dot == std::string_view::npos) return parts == 4;
    start = dot + 1;
  }
}

// RFC 4291 2.2 text forms, as inet_pton reads them.
bool is_ip6(std::string_view s) {
  if (s.empty() || s.size() > 45) return false;
  unsigned char buf[16];
  return inet_pton(AF_INET6, std::string(s).c_str(), buf) == 1;
}

// Takes "/N" (ip4) and "//N" (ip6) off the end of an a or mx argument
// (RFC 7208 §12 dual-cidr-length).
outcome take_dual_cidr(std::string_view& rest, spf_term& t) {
  auto slash = rest.rfind('/');
  if (slash == std::string_view::npos || !all_digits(rest.substr(slash + 1))) return std::nullopt;
  if (slash > 0 && rest[slash - 1] == '/') {
    if (auto f = read_prefix(rest.substr(slash + 1), 128, t.ip6_prefix))
      return fail(slash - 1, f->message);
    rest = rest.substr(0, slash - 1);
    slash = rest.rfind('/');
    if (slash == std::string_view::npos || !all_digits(rest.substr(slash + 1))) return std::nullopt;
  }
  if (auto f = read_prefix(rest.substr(slash + 1), 32, t.ip4_prefix))
    return fail(slash, f->message);
  rest = rest.substr(0, slash);
  return std::nullopt;
}

// ":domain-spec" or nothing, after a, mx and ptr; `at` is where `rest`
// starts in the term.
outcome optional_domain(std::string_view rest, std::size_t at, spf_term& t) {
  if (rest.empty()) return std::nullopt;
  if (rest[0] != ':')
    return fail(at, std::string(kind_name(t.kind)) + " takes \":domain\"" +
                        (t.kind == spf_kind::ptr ? "" : " and \"/prefix\"") + ", not " +
                        quoted(rest));
  t.target = std::string(rest.substr(1));
  if (auto f = check_domain_spec(t.target, std::string(kind_name(t.kind)) + ":"))
    return fail(at + 1 + f->at, f->message);
  return std::nullopt;
}

outcome parse_ip(std::string_view rest, std::size_t at, spf_term& t) {
  const bool v4 = t.kind == spf_kind::ip4;
  const char* example = v4 ? "ip4:192.0.2.0/24" : "ip6:2001:db8::/32";
  if (rest.size() < 2 || rest[0] != ':')
    return fail(at, std::string(kind_name(t.kind)) + " needs a network, as in " + example);
  std::string_view net = rest.substr(1);
  const auto slash = net.find('/');
  if (slash != std::string_view::npos) {
    auto& prefix = v4 ? t.ip4_prefix : t.ip6_prefix;
    if (auto f = read_prefix(net.substr(slash + 1), v4 ? 32 : 128, prefix))
      return fail(at + 1 + slash, f->message);
    net = net.substr(0, slash);
  }
  if (v4 ? !is_ip4(net) : !is_ip6(net))
    return fail(at + 1, quoted(net) + " is not an " + (v4 ? "IPv4" : "IPv6") + " address, as in " +
                            example);
  t.target = std::string(net);
  return std::nullopt;
}

// A mechanism: `body` is the term without its qualifier, `name` its
// lower-case name.
outcome parse_mechanism(std::string_view body, const std::string& name, spf_term& t) {
  static constexpr std::pair<std::string_view, spf_kind> mechanisms[] = {
      {"all", spf_kind::all}, {"include", spf_kind::include}, {"a", spf_kind::a},
      {"mx", spf_kind::mx},   {"ptr", spf_kind::ptr},         {"ip4", spf_kind::ip4},
      {"ip6", spf_kind::ip6}, {"exists", spf_kind::exists},
  };
  const auto* m = std::find_if(std::begin(mechanisms), std::end(mechanisms),
                               [&](const auto& e) { return e.first == name; });
  if (m == std::end(mechanisms))
    return fail(0, quoted(name) +
                       " is not a mechanism (all, include, a, mx, ptr, ip4, ip6, exists) and, "
                       "without \"=\", not a modifier either");
  t.kind = m->second;
  std::string_view rest = body.substr(name.size());
  const std::size_t at = name.size();
  switch (t.kind) {
    case spf_kind::all:
      if (!rest.empty()) return fail(at, "all takes nothing after it, not " + quoted(rest));
      return std::nullopt;
    case spf_kind::include:
    case spf_kind::exists:
      if (rest.empty() || rest[0] != ':')
        return fail(at, std::string(kind_name(t.kind)) + " needs a domain, as in " +
                            kind_name(t.kind) + ":_spf.example.com");
      t.target = std::string(rest.substr(1));
      if (auto f = check_domain_spec(t.target, std::string(kind_name(t.kind)) + ":"))
        return fail(at + 1 + f->at, f->message);
      return std::nullopt;
    case spf_kind::a:
    case spf_kind::mx:
      if (auto f = take_dual_cidr(rest, t)) return fail(at + f->at, f->message);
      return optional_domain(rest, at, t);
    case spf_kind::ptr:
      return optional_domain(rest, at, t);
    default:
      return parse_ip(rest, at, t);
  }
}

// A modifier: `name` is its lower-case name, `value` what follows "=".
outcome parse_modifier(const std::string& name, std::string_view value, spf_term& t) {
  if (!alpha(name[0]) || !std::all_of(name.begin(), name.end(), [](char c) {
        return alphanum(c) || c == '-' || c == '_' || c == '.';
      }))
    return fail(
        0, quoted(name) + " is not a modifier name: a letter, then letters, digits, - _ and .");
  const std::size_t at = name.size() + 1;
  t.target = std::string(value);
  if (name == "redirect" || name == "exp") {
    t.kind = name == "redirect" ? spf_kind::redirect : spf_kind::exp;
    if (auto f = check_domain_spec(value, name + "=")) return fail(at + f->at, f->message);
    return std::nullopt;
  }
  t.kind = spf_kind::unknown_modifier;
  t.modifier = name;
  bool ends_in_macro = false;
  if (auto f = check_macro_string(value, ends_in_macro)) return fail(at + f->at, f->message);
  return std::nullopt;
}

outcome parse_term(std::string_view text, spf_term& t) {
  t.text = std::string(text);
  // RFC 7208 §12: terms are visible ASCII, separated by spaces only.
  for (std::size_t i = 0; i < text.size(); ++i)
    if (text[i] < 0x21 || text[i] > 0x7e)
      return fail(i, octet_name(text[i]) + " is not allowed in a record");
  std::string_view body = text;
  const bool qualified = std::string_view("+-~?").find(text[0]) != std::string_view::npos;
  if (qualified) {
    t.qualifier = static_cast<spf_qualifier>(text[0]);
    body.remove_prefix(1);
  }
  const std::size_t skip = qualified ? 1 : 0;
  const auto end = body.find_first_of(":/=");
  const std::string name = ascii_lowered(body.substr(0, end));
  if (name.empty())
    return fail(skip, qualified ? "a qualifier needs a mechanism after it, as in -all"
                                : "the term has no name before " + quoted(body.substr(0, 1)));
  if (end != std::string_view::npos && body[end] == '=') {
    if (qualified) return fail(0, "a modifier takes no qualifier: write " + quoted(body));
    auto f = parse_modifier(name, body.substr(end + 1), t);
    if (f) f->at += skip;
    return f;
  }
  auto f = parse_mechanism(body, name, t);
  if (f) f->at += skip;
  return f;
}

// The state of one check while its lookups are in flight: the records
// being evaluated, the checked domain's at the bottom, each with the next
// of its evaluated terms.
struct frame {
  std::string domain;
  std::unique_ptr<spf_record> record;  // not moved: `terms` point into it
  std::vector<const spf_term*> terms;
  std::size_t next = 0;
};

struct run {
  resolver& r;
  spf_options opt;
  spf_check::callback done;
  spf_report report;
  std::vector<frame> stack;

  std::vector<std::string> path() const {
    std::vector<std::string> out;
    for (const frame& f : stack) out.push_back(f.domain);
    return out;
  }

  // Starts evaluating `record` of `domain`, and looks for the include in
  // it first: an include written directly is found even past the limit.
  void push(std::string domain, spf_record record) {
    frame f{std::move(domain), std::make_unique<spf_record>(std::move(record)), {}, 0};
    f.terms = evaluated_terms(*f.record);
    stack.push_back(std::move(f));
    if (opt.include_name.empty() || report.include_term) return;
    const std::string wanted = spf_name(opt.include_name);
    for (const spf_term* t : stack.back().terms) {
      if (t->kind == spf_kind::include && spf_name(t->target) == wanted) {
        report.include_term = *t;
        report.include_path = path();
        return;
      }
    }
  }
};

void advance(const std::shared_ptr<run>& st);

// What the TXT lookup of an include or redirect target found.
void followed(const std::shared_ptr<run>& st, spf_problem p, const lookup_result& txt) {
  using kind = spf_problem::kind;
  const std::vector<std::string> records = spf_records(txt);
  std::optional<spf_record> record;
  if (txt.status == lookup_status::servfail || txt.status == lookup_status::timeout ||
      txt.status == lookup_status::error) {
    p.what = kind::lookup_failed;
    p.detail = std::string(status_name(txt.status)) + (txt.detail.empty() ? "" : ": " + txt.detail);
  } else if (records.empty()) {
    p.what = kind::no_record;
    p.detail = status_name(txt.status);
  } else if (records.size() > 1) {
    p.what = kind::multiple;
    for (const auto& r : records) p.detail += (p.detail.empty() ? "" : " | ") + r;
  } else if (record = parse_spf(records[0]); record->error) {
    p.what = kind::syntax;
    p.detail = "term " + std::to_string(record->error->term) + " " + quoted(record->error->text) +
               ": " + record->error->message;
  }
  if (record && !record->error)
    st->push(p.domain, std::move(*record));
  else
    st->report.problems.push_back(std::move(p));
  advance(st);
}

// Follows an include or redirect: false when it cannot (a problem), true
// when its lookup is in flight.
bool follow(const std::shared_ptr<run>& st, const spf_term& t) {
  spf_problem p{spf_problem::kind::macros, spf_name(t.target), st->path(), t.text, ""};
  if (t.has_macros()) {
    st->report.problems.push_back(std::move(p));
    return false;
  }
  // RFC 7208 4.6.4 ends a loop at the limit; naming it says more.
  const auto& stack = st->stack;
  if (std::any_of(stack.begin(), stack.end(),
                  [&](const frame& f) { return f.domain == p.domain; })) {
    p.what = spf_problem::kind::loop;
    st->report.problems.push_back(std::move(p));
    return false;
  }
  const std::string target = p.domain;
  st->r.lookup(target, rr_type::txt,
               [st, p = std::move(p)](const lookup_result& txt) { followed(st, p, txt); });
  return true;
}

// Carries the evaluation on, depth first, until a lookup is in flight or
// it is over (done is called then).
void advance(const std::shared_ptr<run>& st) {
  while (!st->stack.empty()) {
    frame& f = st->stack.back();
    if (f.next == f.terms.size()) {
      st->stack.pop_back();
      continue;
    }
    const spf_term& t = *f.terms[f.next++];
    if (!t.queries_dns()) continue;
    if (++st->report.lookups > st->opt.max_lookups) {
      st->report.over_limit = true;
      st->report.limit_term = t.text;
      st->report.limit_path = st->path();
      break;
    }
    if ((t.kind == spf_kind::include || t.kind == spf_kind::redirect) && follow(st, t)) return;
  }
  st->stack.clear();
  st->done(st->report);
}

}  // namespace

const char* kind_name(spf_kind k) {
  static constexpr const char* names[] = {
      "all", "include",          "a", "mx", "ptr", "ip4", "ip6", "exists", "redirect",
      "exp", "unknown modifier",
  };
  return names[static_cast<std::size_t>(k)];
}

bool spf_term::queries_dns() const {
  switch (kind) {
    case spf_kind::include:
    case spf_kind::a:
    case spf_kind::mx:
    case spf_kind::ptr:
    case spf_kind::exists:
    case spf_kind::redirect:
      return true;
    default:
      return false;
  }
}

bool is_spf(std::string_view txt) {
  return txt.size() >= 6 && ascii_lowered(txt.substr(0, 6)) == "v=spf1" &&
         (txt.size() == 6 || txt[6] == ' ');
}

std::vector<std::string> spf_records(const lookup_result& txt) {
  std::vector<std::string> out;
  for (const record* r : txt.of_type(rr_type::txt))
    if (is_spf(r->text)) out.push_back(r->text);
  return out;
}

spf_record parse_spf(std::string_view text) {
  spf_record out;
  if (!is_spf(text)) {
    out.error = spf_syntax_error{0, 0, "", "the record does not start with \"v=spf1\" and a space"};
    return out;
  }
  std::size_t pos = 6;
  std::size_t number = 0;
  bool redirect = false;
  bool exp = false;
  while (pos < text.size()) {
    while (pos < text.size() && text[pos] == ' ') ++pos;
    if (pos == text.size()) break;
    const auto end = std::min(text.find(' ', pos), text.size());
    const std::string_view word = text.substr(pos, end - pos);
    ++number;
    spf_term t;
    outcome f = parse_term(word, t);
    // RFC 7208 §6: redirect and exp at most once each.
    bool& seen = t.kind == spf_kind::redirect ? redirect : exp;
    if (!f && (t.kind == spf_kind::redirect || t.kind == spf_kind::exp) && seen)
      f = failure{0, std::string(kind_name(t.kind)) + "= appears more than once (RFC 7208 6)"};
    if (f) {
      out.error = spf_syntax_error{number, pos + f->at, std::string(word), f->message};
      return out;
    }
    if (t.kind == spf_kind::redirect || t.kind == spf_kind::exp) seen = true;
    out.terms.push_back(std::move(t));
    pos = end;
  }
  return out;
}

std::vector<const spf_term*> evaluated_terms(const spf_record& r) {
  std::vector<const spf_term*> out;
  const spf_term* redirect = nullptr;
  bool all = false;
  for (const spf_term& t : r.terms) {
    if (t.kind == spf_kind::redirect) redirect = &t;
    if (!t.is_mechanism() || all) continue;
    out.push_back(&t);
    all = t.kind == spf_kind::all;
  }
  if (redirect && !all) out.push_back(redirect);
  return out;
}

std::vector<const spf_term*> ignored_terms(const spf_record& r) {
  const auto reached = evaluated_terms(r);
  std::vector<const spf_term*> out;
  for (const spf_term& t : r.terms)
    if ((t.is_mechanism() || t.kind == spf_kind::redirect) &&
        std::find(reached.begin(), reached.end(), &t) == reached.end())
      out.push_back(&t);
  return out;
}

unsigned own_lookups(const spf_record& r) {
  const auto reached = evaluated_terms(r);
  return static_cast<unsigned>(std::count_if(reached.begin(), reached.end(),
                                             [](const spf_term* t) { return t->queries_dns(); }));
}

std::string spf_name(std::string_view domain) {
  if (domain.ends_with('.')) domain.remove_suffix(1);
  return ascii_lowered(domain);
}

spf_report spf_start(std::string_view domain, const lookup_result& txt) {
  spf_report r;
  r.domain = spf_name(domain);
  if (txt.status == lookup_status::servfail || txt.status == lookup_status::timeout ||
      txt.status == lookup_status::error) {
    r.presence = spf_presence::lookup_failed;
    r.detail = std::string(status_name(txt.status)) + (txt.detail.empty() ? "" : ": " + txt.detail);
    return r;
  }
  r.records = spf_records(txt);
  r.detail = status_name(txt.status);
  if (r.records.empty()) {
    r.presence = spf_presence::none;
  } else if (r.records.size() > 1) {
    r.presence = spf_presence::multiple;
  } else {
    r.presence = spf_presence::found;
    r.parsed = parse_spf(r.records[0]);
  }
  return r;
}

void spf_check::check(std::string_view domain, callback done) {
  auto st = std::make_shared<run>(run{_resolver, _opt, std::move(done), {}, {}});
  const std::string name = spf_name(domain);
  _resolver.lookup(name, rr_type::txt, [st, name](const lookup_result& txt) {
    st->report = spf_start(name, txt);
    if (st->report.presence != spf_presence::found || st->report.parsed.error) {
      st->done(st->report);
      return;
    }
    st->push(name, st->report.parsed);
    advance(st);
  });
}

}  // namespace ringrelay::dns
