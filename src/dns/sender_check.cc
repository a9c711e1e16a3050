#include <arpa/inet.h>

#include <algorithm>
#include <memory>
#include <ringrelay/dns/sender_check.hh>
#include <ringrelay/util/hostname.hh>

namespace ringrelay::dns {
namespace {

// Names that are never a public mail domain: RFC 6761 §6 (localhost,
// invalid, test, example), RFC 6762 (local, mDNS), RFC 7686 (onion),
// RFC 9476 (alt), RFC 3172 (arpa, home.arpa of RFC 8375 included), the
// private-use "internal" ICANN reserved in 2024, and the "localdomain"
// many systems put in /etc/hosts.
constexpr std::string_view reserved_suffixes[] = {
    "localhost", "local", "invalid", "test",     "example",
    "onion",     "alt",   "arpa",    "internal", "localdomain",
};

bool under(std::string_view domain, std::string_view suffix) {
  return domain == suffix || (domain.size() > suffix.size() && domain.ends_with(suffix) &&
                              domain[domain.size() - suffix.size() - 1] == '.');
}

sender_verdict verdict(sender_status s, std::string_view domain, std::string detail = {}) {
  return {s, std::string(domain), std::move(detail)};
}

// The verdict a failed lookup stands for; nullopt when it answered.
std::optional<sender_status> failure_of(const lookup_result& r) {
  switch (r.status) {
    case lookup_status::servfail:
      return sender_status::servfail;
    case lookup_status::timeout:
      return sender_status::timeout;
    case lookup_status::error:
      return sender_status::dns_error;
    default:
      return std::nullopt;
  }
}

std::string describe_lookup(const char* type, std::string_view name, const lookup_result& r) {
  std::string s = std::string(type) + " " + std::string(name) + ": " + status_name(r.status);
  if (!r.detail.empty()) s += " (" + r.detail + ")";
  return s;
}

bool digit(char c) {
  return c >= '0' && c <= '9';
}

// Undoes the \DDD escapes of dns/answer names.
std::string unescape(std::string_view name) {
  std::string out;
  for (std::size_t i = 0; i < name.size(); ++i) {
    if (name[i] == '\\' && i + 3 < name.size() && digit(name[i + 1]) && digit(name[i + 2]) &&
        digit(name[i + 3])) {
      const int value = (name[i + 1] - '0') * 100 + (name[i + 2] - '0') * 10 + (name[i + 3] - '0');
      out.push_back(static_cast<char>(value));
      i += 3;
    } else {
      out.push_back(name[i]);
    }
  }
  return out;
}

// The state of one check while its lookups are in flight.
struct run {
  resolver& r;
  std::size_t max_targets;
  std::string domain;
  sender_check::callback done;
};

void check_targets(const std::shared_ptr<run>& st, std::vector<std::string> targets) {
  if (targets.empty()) {  // max_mx_targets 0: nothing to look up
    st->done(after_targets(st->domain, {}, {}));
    return;
  }
  auto results = std::make_shared<std::vector<lookup_result>>(targets.size());
  auto pending = std::make_shared<std::size_t>(targets.size());
  auto names = std::make_shared<std::vector<std::string>>(std::move(targets));
  for (std::size_t i = 0; i < names->size(); ++i) {
    st->r.lookup((*names)[i], rr_type::a, [st, results, pending, names, i](const lookup_result& a) {
      (*results)[i] = a;
      if (--*pending == 0) st->done(after_targets(st->domain, *names, *results));
    });
  }
}

void check_address(const std::shared_ptr<run>& st) {
  auto results = std::make_shared<std::vector<lookup_result>>(2);
  auto pending = std::make_shared<int>(2);
  const rr_type types[] = {rr_type::a, rr_type::aaaa};
  for (std::size_t i = 0; i < 2; ++i) {
    st->r.lookup(st->domain, types[i], [st, results, pending, i](const lookup_result& r) {
      (*results)[i] = r;
      if (--*pending == 0) st->done(after_address(st->domain, (*results)[0], (*results)[1]));
    });
  }
}

}  // namespace

std::string sender_verdict::reply() const {
  switch (status) {
    case sender_status::ok:
    case sender_status::null_sender:
      return "";
    case sender_status::bad_domain:
    case sender_status::no_mx:
      return "451 4.1.8 Sender verify failed: domain has no MX or A record";
    case sender_status::not_public:
      return "451 4.1.8 Sender verify failed: domain is not a public domain";
    case sender_status::mx_ip:
      return "451 4.1.8 Sender verify failed: MX points to an IP address";
    case sender_status::mx_cname:
      return "451 4.1.8 Sender verify failed: MX points to a CNAME";
    case sender_status::servfail:
    case sender_status::timeout:
      return "451 4.4.3 Temporary local error: DNS lookup failed (SERVFAIL)";
    case sender_status::dns_error:
      return "451 4.4.3 Temporary local error: DNS lookup failed";
    case sender_status::null_mx:
      return "550 5.7.27 Sender domain accepts no mail (null MX): " + domain +
             " publishes a null MX (RFC 7505), so replies and bounces could not reach the "
             "sender; use an address whose domain receives mail";
  }
  return "";
}

std::string sender_verdict::log_field() const {
  static constexpr const char* names[] = {
      "ok",    "null_sender", "bad_domain", "not_public", "no_mx",     "null_mx",
      "mx_ip", "mx_cname",    "servfail",   "timeout",    "dns_error",
  };
  return std::string("sender_verify=") + names[static_cast<std::size_t>(status)];
}

std::string sender_domain(std::string_view sender) {
  const auto at = sender.rfind('@');
  if (at == std::string_view::npos) return "";
  std::string_view d = sender.substr(at + 1);
  if (d.ends_with('.')) d.remove_suffix(1);
  std::string out(d);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

bool is_reserved(std::string_view domain, const std::vector<std::string>& allow) {
  for (const auto& a : allow)
    if (under(domain, a)) return false;
  if (domain.find('.') == std::string_view::npos) return true;
  return std::any_of(std::begin(reserved_suffixes), std::end(reserved_suffixes),
                     [&](std::string_view s) { return under(domain, s); });
}

bool is_ip_literal(std::string_view target) {
  std::string raw = unescape(target);
  if (raw.size() >= 2 && raw.front() == '[' && raw.back() == ']')
    raw = raw.substr(1, raw.size() - 2);
  if (raw.find('\0') != std::string::npos) return false;
  unsigned char buf[16];
  return inet_pton(AF_INET, raw.c_str(), buf) == 1 || inet_pton(AF_INET6, raw.c_str(), buf) == 1;
}

std::optional<sender_verdict> precheck(std::string_view sender,
                                       const std::vector<std::string>& allow_reserved) {
  if (sender.empty()) return verdict(sender_status::null_sender, "");
  const std::string domain = sender_domain(sender);
  // An address literal ("user@[192.0.2.1]") names a host, not a domain.
  if (domain.starts_with('[')) return verdict(sender_status::not_public, domain, "address literal");
  if (!util::valid_hostname(domain)) return verdict(sender_status::bad_domain, domain);
  if (is_reserved(domain, allow_reserved)) return verdict(sender_status::not_public, domain);
  return std::nullopt;
}

mx_step after_mx(std::string_view domain, const lookup_result& mx, std::size_t max_targets) {
  mx_step step;
  if (auto f = failure_of(mx)) {
    step.verdict = verdict(*f, domain, describe_lookup("MX", domain, mx));
    return step;
  }
  if (mx.status == lookup_status::nxdomain) {
    step.verdict = verdict(sender_status::no_mx, domain, describe_lookup("MX", domain, mx));
    return step;
  }
  auto records = mx.of_type(rr_type::mx);
  if (records.empty()) {
    step.address_fallback = true;
    return step;
  }
  // RFC 7505 §3: a null MX must stand alone; one that does not still says
  // the domain takes no mail, and a root target cannot receive any either.
  for (const record* r : records) {
    if (r->target.empty()) {
      step.verdict = verdict(sender_status::null_mx, domain);
      return step;
    }
  }
  std::stable_sort(records.begin(), records.end(),
                   [](const record* a, const record* b) { return a->preference < b->preference; });
  for (const record* r : records) {
    if (is_ip_literal(r->target)) {
      step.verdict = verdict(sender_status::mx_ip, domain, "MX target " + r->target);
      return step;
    }
  }
  for (const record* r : records) {
    if (step.targets.size() < max_targets &&
        std::find(step.targets.begin(), step.targets.end(), r->target) == step.targets.end())
      step.targets.push_back(r->target);
  }
  return step;
}

sender_verdict after_targets(std::string_view domain, const std::vector<std::string>& targets,
                             const std::vector<lookup_result>& a) {
  std::optional<sender_verdict> failed;
  for (std::size_t i = 0; i < targets.size() && i < a.size(); ++i) {
    for (const record& r : a[i].records) {
      if (r.type == rr_type::cname && r.name == targets[i])
        return verdict(sender_status::mx_cname, domain,
                       "MX target " + targets[i] + " is a CNAME for " + r.target);
    }
    if (auto f = failure_of(a[i]); f && !failed)
      failed = verdict(*f, domain, describe_lookup("A", targets[i], a[i]));
  }
  return failed ? *failed : verdict(sender_status::ok, domain);
}

sender_verdict after_address(std::string_view domain, const lookup_result& a,
                             const lookup_result& aaaa) {
  if (a.status == lookup_status::ok || aaaa.status == lookup_status::ok)
    return verdict(sender_status::ok, domain, "no MX, has an address");
  const std::string detail =
      "no MX; " + describe_lookup("A", domain, a) + "; " + describe_lookup("AAAA", domain, aaaa);
  if (auto f = failure_of(a)) return verdict(*f, domain, detail);
  if (auto f = failure_of(aaaa)) return verdict(*f, domain, detail);
  return verdict(sender_status::no_mx, domain, detail);
}

void sender_check::check(std::string_view sender, callback done) {
  if (auto v = precheck(sender, _opt.allow_reserved)) {
    _resolver.loop().defer([done = std::move(done), v = std::move(*v)] { done(v); });
    return;
  }
  auto st = std::make_shared<run>(
      run{_resolver, _opt.max_mx_targets, sender_domain(sender), std::move(done)});
  _resolver.lookup(st->domain, rr_type::mx, [st](const lookup_result& mx) {
    mx_step step = after_mx(st->domain, mx, st->max_targets);
    if (step.verdict)
      st->done(*step.verdict);
    else if (step.address_fallback)
      check_address(st);
    else
      check_targets(st, std::move(step.targets));
  });
}

}  // namespace ringrelay::dns
