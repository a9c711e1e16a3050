// dns/sender_check — SPEC.md §4: can the envelope sender's domain receive
// replies?
//
// The decision, step by step (each verdict: reply, and the log field that
// names it):
//   "<>" (null sender)                 accepted, no lookup      sender_verify=null_sender
//   no domain, or not a host name      451 4.1.8 ... no MX or A sender_verify=bad_domain
//   single label, or a reserved suffix 451 4.1.8 ... not a      sender_verify=not_public
//     (.localhost .local .invalid .test .example .onion .alt .arpa .internal
//     .localdomain) unless the domain ends in a suffix of `allow_reserved`
//   MX lookup SERVFAIL / timeout       451 4.4.3 ... (SERVFAIL) sender_verify=servfail / timeout
//   MX lookup failed otherwise         451 4.4.3 ...            sender_verify=dns_error
//   MX lookup NXDOMAIN                 451 4.1.8 ... no MX or A sender_verify=no_mx
//   a null MX (RFC 7505)               550 5.7.27               sender_verify=null_mx
//   an MX target that is an IP literal 451 4.1.8 ... IP address sender_verify=mx_ip
//   an MX target that is a CNAME       451 4.1.8 ... a CNAME    sender_verify=mx_cname
//     (RFC 2181 §10.3; found by an A lookup of each target, at most
//     `max_mx_targets` of them, whose answer holds a CNAME owned by it)
//   no MX record: A and AAAA lookups   either found: accepted (RFC 5321 5.1
//     implicit MX); both NXDOMAIN/NODATA: no_mx; else the failure's verdict
// Otherwise accepted (sender_verify=ok). A failed lookup of an MX target
// gives that failure's 451 4.4.3; a target that does not exist is not
// refused here (delivery finds out). Every lookup goes through the
// resolver, so verdicts are cached for the DNS TTLs of what they read.
//
// The pure steps are exposed for tests; `sender_check` chains them over a
// resolver. Shard-local, like the resolver it uses: all calls on the
// loop's thread. Errors are verdicts; nothing throws.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <ringrelay/dns/cache.hh>
#include <ringrelay/dns/resolver.hh>
#include <string>
#include <string_view>
#include <vector>

namespace ringrelay::dns {

enum class sender_status : std::uint8_t {
  ok,
  null_sender,
  bad_domain,
  not_public,
  no_mx,
  null_mx,
  mx_ip,
  mx_cname,
  servfail,
  timeout,
  dns_error,
};

struct sender_verdict {
  sender_status status = sender_status::ok;
  std::string domain;  // lower case, no final dot; "" for the null sender
  std::string detail;  // for the log: which lookup or target decided

  bool accepted() const {
    return status == sender_status::ok || status == sender_status::null_sender;
  }
  // The SMTP reply for MAIL FROM, without CRLF; "" when accepted.
  std::string reply() const;
  // "sender_verify=no_mx".
  std::string log_field() const;
};

struct sender_check_options {
  // Reserved suffixes that are accepted anyway ("test", "corp.example"):
  // lower case, no leading or final dot.
  std::vector<std::string> allow_reserved;
  std::size_t max_mx_targets = 10;  // MX targets checked for CNAMEs
};

// The domain after the last "@", lower case, without a final dot; "" when
// there is no "@".
std::string sender_domain(std::string_view sender);

// A single label, or a name under a reserved suffix not in `allow`.
bool is_reserved(std::string_view domain, const std::vector<std::string>& allow);

// An MX target written as an IPv4 or IPv6 address, bracketed or not, in the
// escaped form dns/answer gives names.
bool is_ip_literal(std::string_view target);

// Before any lookup: the verdict for the null sender, a domain that cannot
// be looked up and a reserved one; nullopt when DNS must decide.
std::optional<sender_verdict> precheck(std::string_view sender,
                                       const std::vector<std::string>& allow_reserved);

// What the MX answer decides: a verdict, or the targets to check for
// CNAMEs, or (no MX records) that A and AAAA decide.
struct mx_step {
  std::optional<sender_verdict> verdict;
  std::vector<std::string> targets;  // by preference, without repeats
  bool address_fallback = false;
};
mx_step after_mx(std::string_view domain, const lookup_result& mx, std::size_t max_targets);

// The verdict once `a[i]` answered the A lookup of `targets[i]`.
sender_verdict after_targets(std::string_view domain, const std::vector<std::string>& targets,
                             const std::vector<lookup_result>& a);

// The verdict for a domain without MX records once its A and AAAA lookups
// answered.
sender_verdict after_address(std::string_view domain, const lookup_result& a,
                             const lookup_result& aaaa);

class sender_check {
 public:
  using callback = std::function<void(const sender_verdict&)>;

  sender_check(resolver& r, sender_check_options opt) : _resolver(r), _opt(std::move(opt)) {}

  // Checks `sender` (the MAIL FROM address without angle brackets; "" for
  // "<>") and calls `done` once with the verdict, after the current batch
  // of completions even when no lookup was needed. The check carries on
  // (and calls back) if this object is destroyed first; it is dropped
  // silently if the resolver is.
  void check(std::string_view sender, callback done);

 private:
  resolver& _resolver;
  sender_check_options _opt;
};

}  // namespace ringrelay::dns
