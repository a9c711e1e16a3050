#include "check_domain.hh"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <ringrelay/dns/sender_check.hh>
#include <ringrelay/dns/spf.hh>
#include <ringrelay/reactor/loop.hh>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ringrelay::ctl {
namespace {

using dns::lookup_result;
using dns::lookup_status;
using dns::rr_type;

// As many MX targets as sender verification checks (sender_check_options).
constexpr std::size_t max_targets = 10;
// RFC 7208 4.6.4.
constexpr unsigned max_lookups = 10;

// One MX record and, for the first `max_targets` host names, the A and
// AAAA lookups of its target.
struct mx_target {
  std::uint16_t preference = 0;
  std::string name;
  bool looked_up = false;
  lookup_result a, aaaa;
};

// What the report says about the domain's mail servers.
struct mx_facts {
  lookup_result mx;
  std::vector<mx_target> targets;  // by preference
  bool implicit = false;           // no MX record: the domain's own A and AAAA
  lookup_result a, aaaa;           // implicit: those
};

struct facts {
  std::optional<dns::sender_verdict> verdict;
  mx_facts mx;
  dns::spf_report spf;
  bool looked_up = false;  // false: the domain is not public, nothing was asked
};

struct finding {
  bool ok = true;
  std::string text;
};

bool failed(const lookup_result& r) {
  return r.status == lookup_status::servfail || r.status == lookup_status::timeout ||
         r.status == lookup_status::error;
}

std::string status_words(const lookup_result& r) {
  switch (r.status) {
    case lookup_status::servfail:
      return "the DNS server answered SERVFAIL";
    case lookup_status::timeout:
      return "no answer in time";
    case lookup_status::nxdomain:
      return "no such domain (NXDOMAIN)";
    default:
      return std::string(dns::status_name(r.status)) + (r.detail.empty() ? "" : ": " + r.detail);
  }
}

// The MX answer, then the lookups it calls for, all at once; `done` when
// the last one answered.
void gather_mx(dns::resolver& r, const std::string& domain, facts& f, std::function<void()> done) {
  r.lookup(domain, rr_type::mx, [&r, domain, &f, done = std::move(done)](const lookup_result& mx) {
    mx_facts& m = f.mx;
    m.mx = mx;
    auto records = mx.of_type(rr_type::mx);
    std::stable_sort(records.begin(), records.end(),
                     [](const auto* a, const auto* b) { return a->preference < b->preference; });
    std::size_t hosts = 0;
    for (const dns::record* rec : records) {
      mx_target t{rec->preference, rec->target, false, {}, {}};
      const bool seen = std::any_of(m.targets.begin(), m.targets.end(),
                                    [&](const mx_target& o) { return o.name == t.name; });
      t.looked_up = !seen && !t.name.empty() && !dns::is_ip_literal(t.name) && hosts < max_targets;
      hosts += t.looked_up;
      m.targets.push_back(std::move(t));
    }
    std::vector<std::pair<std::string, lookup_result*>> lookups;
    for (auto& t : m.targets) {
      if (!t.looked_up) continue;
      lookups.emplace_back(t.name, &t.a);
      lookups.emplace_back(t.name, &t.aaaa);
    }
    if (mx.status == lookup_status::nodata && records.empty()) {
      m.implicit = true;
      lookups.emplace_back(domain, &m.a);
      lookups.emplace_back(domain, &m.aaaa);
    }
    if (lookups.empty()) return done();
    auto pending = std::make_shared<std::size_t>(lookups.size());
    for (std::size_t i = 0; i < lookups.size(); ++i) {
      lookup_result* out = lookups[i].second;
      r.lookup(lookups[i].first, i % 2 ? rr_type::aaaa : rr_type::a,
               [out, pending, done](const lookup_result& res) {
                 *out = res;
                 if (--*pending == 0) done();
               });
    }
  });
}

// "A 192.0.2.10, AAAA 2001:db8::10", after "a CNAME for NAME: " when the
// target is an alias.
std::string address_text(const std::string& name, const lookup_result& a,
                         const lookup_result& aaaa) {
  std::string cname;
  std::string addresses;
  for (const lookup_result* r : {&a, &aaaa}) {
    for (const dns::record& rec : r->records) {
      if (rec.type == rr_type::cname && rec.name == name && cname.empty())
        cname = "a CNAME for " + rec.target;
      if (rec.type == rr_type::a || rec.type == rr_type::aaaa)
        addresses += (addresses.empty() ? "" : ", ") + std::string(dns::type_name(rec.type)) + " " +
                     rec.address_text();
    }
  }
  if (addresses.empty()) {
    const lookup_result& why = failed(a) ? a : aaaa;
    addresses = failed(why) ? "address lookup failed: " + status_words(why) : "no A or AAAA record";
  }
  return cname.empty() ? addresses : cname + ": " + addresses;
}

std::vector<finding> mx_lines(const std::string& domain, const mx_facts& m) {
  if (failed(m.mx)) return {{true, "MX: lookup failed: " + status_words(m.mx)}};
  if (m.mx.status == lookup_status::nxdomain)
    return {{true, "MX: none: " + domain + " does not exist in DNS (NXDOMAIN)"}};
  const bool answered = !failed(m.a) && !failed(m.aaaa);
  if (m.implicit && answered && m.a.status != lookup_status::ok &&
      m.aaaa.status != lookup_status::ok)
    return {{true, "MX: none, and no A or AAAA record to take its place"}};
  if (m.implicit)
    return {{true, "MX: none; mail goes to the domain's own address (" +
                       address_text(domain, m.a, m.aaaa) + ")"}};
  std::vector<finding> out;
  for (const mx_target& t : m.targets) {
    std::string line =
        "MX: " + std::to_string(t.preference) + " " + (t.name.empty() ? "." : t.name);
    if (t.name.empty())
      line += " (a null MX: the domain accepts no mail, RFC 7505)";
    else if (dns::is_ip_literal(t.name))
      line += " (an IP address, not a host name)";
    else if (t.looked_up)
      line += " (" + address_text(t.name, t.a, t.aaaa) + ")";
    out.push_back({true, line});
  }
  return out;
}

// "servfail", "timeout: ..." (a status and its detail) in words.
std::string failure_words(const std::string& status) {
  if (status.starts_with("servfail")) return "the DNS server answered SERVFAIL";
  if (status.starts_with("timeout")) return "no answer in time";
  return status;
}

std::string without_prefix(const std::string& s, std::string_view prefix) {
  return s.starts_with(prefix) ? s.substr(prefix.size()) : s;
}

// A verdict's detail for one lookup ("MX example.com: timeout") in words;
// others as they are.
std::string lookup_words(const std::string& detail) {
  const auto space = detail.find(' ');
  const auto colon = detail.find(": ");
  if (space == std::string::npos || colon == std::string::npos || colon < space ||
      detail.starts_with("no MX"))
    return detail;
  const std::string type = detail.substr(0, space);
  const std::string name = detail.substr(space + 1, colon - space - 1);
  return "the " + type + " lookup of " + name + ": " + failure_words(detail.substr(colon + 2));
}

// What went wrong in words, and what to do about it.
std::string verdict_advice(const dns::sender_verdict& v, const check_domain_options& opt) {
  using dns::sender_status;
  const std::string& d = v.domain;
  switch (v.status) {
    case sender_status::not_public:
      return d +
             " is a single label or under a reserved suffix (.local, .localhost, .invalid, .test, "
             ".example, ...); send from a public domain, or add the suffix to "
             "sender_verify.allow_reserved";
    case sender_status::no_mx:
      // after_mx decides no_mx on an NXDOMAIN ("MX d: nxdomain"),
      // after_address on A and AAAA ("no MX; A d: ...").
      return (v.detail.starts_with("MX ") ? d + " does not exist in DNS"
                                          : d + " has neither an MX nor an A or AAAA record") +
             "; publish an MX record (or an A record) for " + d + ", or check the spelling";
    case sender_status::mx_ip:
      return without_prefix(v.detail, "MX target ") +
             " is an IP address, and an MX must name a host (RFC 5321 5.1)" +
             "; point the MX at a host name that has an A or AAAA record";
    case sender_status::mx_cname: {
      // "MX target mx.example.com is a CNAME for real.example.net"
      const std::string what = without_prefix(v.detail, "MX target ");
      return what + ", and an MX must not name an alias (RFC 2181 10.3); point the MX at " +
             what.substr(what.rfind(' ') + 1) + " instead";
    }
    case sender_status::null_mx:
      return "remove the null MX (\"0 .\") if " + d + " should receive replies and bounces";
    case sender_status::servfail:
    case sender_status::timeout:
    case sender_status::dns_error:
      return lookup_words(v.detail) + "; check " + d + "'s name servers" +
             (opt.resolver.servers.empty() ? "" : " and dns.servers") +
             ", then run the check again";
    default:
      return v.detail;
  }
}

finding verdict_line(const dns::sender_verdict& v, const check_domain_options& opt) {
  if (v.accepted())
    return {true, "sender verification: passes (MAIL FROM from this domain is accepted)"};
  const bool temporary = v.status == dns::sender_status::servfail ||
                         v.status == dns::sender_status::timeout ||
                         v.status == dns::sender_status::dns_error;
  return {false, std::string("sender verification: fails") + (temporary ? " (temporary)" : "") +
                     ": " + v.reply() + " (" + verdict_advice(v, opt) + ")"};
}

// "\"include:c.example\" in the record of b.example, reached through
// a.example"
std::string where(const std::string& term, const std::vector<std::string>& path) {
  std::string out = "\"" + term + "\" in the record of " + path.back();
  if (path.size() > 1) {
    std::string via;
    for (std::size_t i = 0; i + 1 < path.size(); ++i) via += (via.empty() ? "" : ", ") + path[i];
    out += ", reached through " + via;
  }
  return out;
}

finding problem_line(const dns::spf_problem& p, unsigned max) {
  using kind = dns::spf_problem::kind;
  const std::string at = where(p.term, p.path);
  const bool redirect = p.term.find('=') != std::string::npos;
  const char* rfc = redirect ? "RFC 7208 6.1" : "RFC 7208 5.2";
  switch (p.what) {
    case kind::no_record:
      return {false, "SPF: " + at + ": " + p.domain +
                         (p.detail == "nxdomain" ? " does not exist" : " has no SPF record") +
                         " (a permerror, " + rfc +
                         "); remove the term, or publish an SPF record at " + p.domain};
    case kind::multiple:
      return {false, "SPF: " + at + ": " + p.domain +
                         " has more than one SPF record (a permerror, RFC 7208 4.5): " + p.detail +
                         "; merge them into one"};
    case kind::syntax:
      return {false, "SPF: " + at + ": the record of " + p.domain + " does not parse: " + p.detail +
                         " (a permerror); fix it there"};
    case kind::lookup_failed:
      return {false, "SPF: " + at + ": the TXT lookup of " + p.domain +
                         " failed (temporary: " + failure_words(p.detail) +
                         "); its terms are not counted; check its name servers, then "
                         "run the check again"};
    case kind::loop: {
      std::string chain;
      for (const auto& d : p.path) chain += d + " -> ";
      return {false, "SPF: include loop: " + chain + p.domain + " (" + at +
                         "): evaluation would go round until it passes " + std::to_string(max) +
                         " DNS-querying terms (a permerror); remove the term that points back"};
    }
    case kind::macros:
      return {true, "SPF: note: " + at +
                        " has macros, so it depends on the sender; its terms are "
                        "not counted"};
  }
  return {false, "SPF: " + at};
}

std::string example_record(const check_domain_options& opt) {
  return opt.spf_include.empty() ? "\"v=spf1 mx -all\""
                                 : "\"v=spf1 include:" + opt.spf_include + " -all\"";
}

std::vector<finding> spf_presence_lines(const dns::spf_report& r, const check_domain_options& opt) {
  switch (r.presence) {
    case dns::spf_presence::lookup_failed:
      return {{false, "SPF: the TXT lookup of " + r.domain +
                          " failed (temporary: " + failure_words(r.detail) +
                          "); check the domain's name servers, then run the check again"}};
    case dns::spf_presence::none:
      return {{false, "SPF: no SPF record: " +
                          (r.detail == "nxdomain"
                               ? r.domain + " does not exist in DNS"
                               : "no TXT record of " + r.domain + " starts with \"v=spf1\"") +
                          "; publish one, e.g. " + example_record(opt)}};
    case dns::spf_presence::multiple: {
      std::string all;
      for (const auto& rec : r.records) all += (all.empty() ? "\"" : ", \"") + rec + "\"";
      return {{false, "SPF: " + std::to_string(r.records.size()) +
                          " SPF records, and there must be one (a permerror, RFC 7208 4.5): " +
                          all + "; merge them into one TXT record"}};
    }
    case dns::spf_presence::found:
      break;
  }
  std::vector<finding> out = {{true, "SPF: " + r.records[0]}};
  if (const auto& e = r.parsed.error)
    out.push_back({false, "SPF: syntax error in term " + std::to_string(e->term) + " \"" + e->text +
                              "\" (octet " + std::to_string(e->offset + 1) + "): " + e->message +
                              " (a permerror, RFC 7208 4.6); fix that term"});
  return out;
}

finding count_line(const dns::spf_report& r, unsigned max) {
  const std::string limit = std::to_string(max);
  if (r.over_limit)
    return {false, "SPF: more than " + limit + " DNS-querying terms: number " +
                       std::to_string(r.lookups) + " is " + where(r.limit_term, r.limit_path) +
                       " (a permerror, RFC 7208 4.6.4); replace includes by the ip4: and ip6: "
                       "networks they stand for, or drop some"};
  const bool partial = !r.problems.empty();
  return {true, "SPF: " + std::string(partial ? "at least " : "") + std::to_string(r.lookups) +
                    " of " + limit + " DNS-querying terms" +
                    (partial ? " (some records could not be read: below)" : "")};
}

finding include_line(const dns::spf_report& r, const check_domain_options& opt) {
  const std::string& name = opt.spf_include;
  if (name.empty())
    return {true,
            "SPF: includes: not checked: no include name given (--spf-include NAME or "
            "sender_verify.spf_include)"};
  const std::string head = "SPF: includes " + name + ": ";
  if (r.presence != dns::spf_presence::found || r.parsed.error)
    return {true, head + "not checked: there is no usable SPF record (above)"};
  if (const auto& t = r.include_term) {
    const std::string via =
        r.include_path.size() > 1 ? " (" + where(t->text, r.include_path) + ")" : "";
    if (t->qualifier == dns::spf_qualifier::pass) return {true, head + "yes" + via};
    return {false, head + "with the qualifier \"" +
                       std::string(1, static_cast<char>(t->qualifier)) + "\"" + via +
                       ", so mail through the relay does not pass SPF; write \"include:" + name +
                       "\" without it"};
  }
  for (const dns::spf_term* t : dns::ignored_terms(r.parsed))
    if (t->kind == dns::spf_kind::include && dns::spf_name(t->target) == dns::spf_name(name))
      return {false, head + "no: \"" + t->text +
                         "\" comes after the all term, where evaluation never gets (RFC 7208 "
                         "5.1); move it before all"};
  return {false, head + "no" + (r.over_limit ? " (not before the limit stopped evaluation)" : "") +
                     "; add \"include:" + name + "\" before the all term"};
}

std::vector<finding> spf_lines(const dns::spf_report& r, const check_domain_options& opt,
                               unsigned max) {
  std::vector<finding> out = spf_presence_lines(r, opt);
  if (r.presence == dns::spf_presence::found && !r.parsed.error) {
    out.push_back(count_line(r, max));
    for (const auto& p : r.problems) out.push_back(problem_line(p, max));
    for (const dns::spf_term* t : dns::ignored_terms(r.parsed))
      out.push_back(
          {true, "SPF: note: \"" + t->text + "\" is never evaluated: " +
                     (t->kind == dns::spf_kind::redirect
                          ? "redirect= is ignored in a record with an all term (RFC 7208 6.1)"
                          : "it comes after the all term (RFC 7208 5.1)")});
  }
  out.push_back(include_line(r, opt));
  return out;
}

// The lookups, all at once on a loop of their own.
facts gather(const check_domain_options& opt) {
  facts f;
  const std::string sender = "postmaster@" + opt.domain;
  if (auto v = dns::precheck(sender, opt.allow_reserved)) {
    f.verdict = *v;
    return f;
  }
  f.looked_up = true;
  reactor::loop loop(reactor::loop_options{256, 100});
  dns::resolver resolver(loop, opt.resolver);
  dns::sender_check sender_check(resolver, {opt.allow_reserved, max_targets});
  dns::spf_check spf_check(resolver, {opt.spf_include, max_lookups});
  int pending = 3;
  auto one_done = [&] {
    if (--pending == 0) loop.stop();
  };
  sender_check.check(sender, [&](const dns::sender_verdict& v) {
    f.verdict = v;
    one_done();
  });
  gather_mx(resolver, opt.domain, f, one_done);
  spf_check.check(opt.domain, [&](const dns::spf_report& r) {
    f.spf = r;
    one_done();
  });
  loop.run();
  return f;
}

}  // namespace

int check_domain(const check_domain_options& opt) {
  const facts f = gather(opt);
  std::vector<finding> lines;
  if (f.looked_up) lines = mx_lines(opt.domain, f.mx);
  lines.push_back(verdict_line(*f.verdict, opt));
  if (!opt.sender_verify_enabled)
    lines.push_back({true,
                     "sender verification: note: sender_verify.enabled is false in the "
                     "configuration, so the server does not check MAIL FROM now"});
  if (f.looked_up) {
    for (auto& l : spf_lines(f.spf, opt, max_lookups)) lines.push_back(std::move(l));
  } else {
    lines.push_back({false, "SPF: not checked: " + opt.domain + " is not a public domain"});
  }
  const auto failing =
      std::count_if(lines.begin(), lines.end(), [](const finding& l) { return !l.ok; });
  for (const auto& l : lines) std::printf("%s\n", l.text.c_str());
  if (failing == 0)
    std::printf("%s: every check passes\n", opt.domain.c_str());
  else
    std::printf("%s: %ld %s to fix (above)\n", opt.domain.c_str(), static_cast<long>(failing),
                failing == 1 ? "finding" : "findings");
  return failing == 0 ? 0 : 1;
}

}  // namespace ringrelay::ctl
