// dns/spf — a domain's SPF record (RFC 7208): is there exactly one, does it
// parse, how many DNS-querying terms does its evaluation take, and does it
// include a given name.
//
// `parse_spf` reads one record by the grammar of RFC 7208 §12: the version
// "v=spf1", then terms separated by spaces — mechanisms (all, include, a,
// mx, ptr, ip4, ip6, exists) with an optional qualifier (+ - ~ ?), and
// modifiers (redirect=, exp=, and unknown name=value ones, which are kept
// and ignored). Domain-specs are checked as macro-strings (RFC 7208 §7.1)
// ending in a top-level label or a macro; a macro-free one must also be a
// usable DNS name. The first error is reported with the term it is in and
// what is wrong; a record with an error is a permerror (RFC 7208 4.6).
// Nothing is evaluated: no sender, no IP address, no macro expansion.
//
// `spf_check` drives the rest over a resolver: the TXT lookup of the
// domain, exactly one record starting "v=spf1" (RFC 7208 4.5: none is
// "none", more than one a permerror), and then, depth first in evaluation
// order, the records of every include: and redirect= it reaches, counting
// the terms that cause DNS queries (include, a, mx, ptr, exists, redirect)
// against the limit of 10 (RFC 7208 4.6.4). It stops following once the
// count is over the limit. What it cannot follow is a problem, not an
// error: an included domain without an SPF record (a permerror, RFC 7208
// 5.2), with several or with a syntax error, a lookup that failed (a
// temperror), an include back to a domain already being evaluated (a
// loop), a domain-spec with macros (it depends on the sender). The lookups
// a/mx/ptr/exists would make are counted, not made.
//
// The pure steps are exposed for tests. `spf_check` is shard-local like the
// resolver it uses: all calls on the loop's thread. Errors are findings in
// the report; nothing throws.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <ringrelay/dns/cache.hh>
#include <ringrelay/dns/resolver.hh>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ringrelay::dns {

enum class spf_qualifier : char {
  pass = '+',
  fail = '-',
  softfail = '~',
  neutral = '?',
};

enum class spf_kind : std::uint8_t {
  all,
  include,
  a,
  mx,
  ptr,
  ip4,
  ip6,
  exists,
  redirect,
  exp,
  unknown_modifier,
};

// "include", "redirect", ...; "unknown modifier" for the last.
const char* kind_name(spf_kind k);

struct spf_term {
  spf_kind kind = spf_kind::all;
  spf_qualifier qualifier = spf_qualifier::pass;  // mechanisms; "+" when none is written
  std::string text;                               // as written: "-include:_spf.example.com"
  // The domain-spec (include, exists, redirect, exp; a, mx, ptr when one
  // is given), the network of ip4 and ip6, the value of an unknown
  // modifier; "" when absent.
  std::string target;
  std::string modifier;                // an unknown modifier's name, lower case
  std::optional<unsigned> ip4_prefix;  // "/24" of ip4, a, mx
  std::optional<unsigned> ip6_prefix;  // "/64" of ip6, "//64" of a, mx
  bool is_mechanism() const { return kind <= spf_kind::exists; }
  // RFC 7208 4.6.4: include, a, mx, ptr, exists and redirect count
  // against the limit of 10.
  bool queries_dns() const;
  bool has_macros() const { return target.find('%') != std::string::npos; }
};

struct spf_syntax_error {
  std::size_t term = 0;    // which term, from 1; 0 for the version
  std::size_t offset = 0;  // octet of the record where the problem is
  std::string text;        // the term as written ("" for the version)
  std::string message;     // what is wrong, in words
};

struct spf_record {
  std::vector<spf_term> terms;  // after the version, in order (those before an error)
  std::optional<spf_syntax_error> error;
};

// RFC 7208 4.5: the text starts with "v=spf1" (in any case) followed by a
// space or its end.
bool is_spf(std::string_view txt);

// The texts of the SPF records among the TXT records of `txt`, in answer
// order.
std::vector<std::string> spf_records(const lookup_result& txt);

spf_record parse_spf(std::string_view text);

// The terms evaluation can reach, in the order it reaches them: the
// mechanisms up to and including the first "all" (RFC 7208 5.1: the
// rest are never tested), then the redirect= when there is no "all"
// (RFC 7208 6.1).
std::vector<const spf_term*> evaluated_terms(const spf_record& r);

// The terms evaluation never reaches: mechanisms after the first "all",
// and redirect= when there is an "all".
std::vector<const spf_term*> ignored_terms(const spf_record& r);

// The evaluated terms of `r` itself that count against the limit.
unsigned own_lookups(const spf_record& r);

// A domain name as compared here: lower case, without a final dot.
std::string spf_name(std::string_view domain);

// Something the check could not follow, where it found it.
struct spf_problem {
  enum class kind : std::uint8_t {
    no_record,      // the target has no SPF record (or does not exist)
    multiple,       // the target has more than one
    syntax,         // the target's record does not parse
    lookup_failed,  // the target's TXT lookup failed (temporary)
    loop,           // the target is already being evaluated
    macros,         // the target has macros: it depends on the sender
  };
  kind what = kind::no_record;
  std::string domain;             // the target, as looked up
  std::vector<std::string> path;  // the domains whose records led there, the checked one first
  std::string term;               // the include: or redirect= term, as written
  std::string detail;             // lookup status, syntax message, the records found
};

struct spf_options {
  std::string include_name;  // the include to look for; "" = none
  unsigned max_lookups = 10;
};

enum class spf_presence : std::uint8_t {
  found,          // exactly one record
  none,           // no TXT record starts with "v=spf1" (or no such domain)
  multiple,       // more than one: permerror
  lookup_failed,  // the TXT lookup failed: temporary
};

struct spf_report {
  std::string domain;  // lower case, no final dot
  spf_presence presence = spf_presence::none;
  std::string detail;                // none, lookup_failed: the lookup's status
  std::vector<std::string> records;  // the SPF records at the domain
  spf_record parsed;                 // found: the one record

  // Counted when the record parses: the DNS-querying terms of every record
  // evaluation reaches; stops at max_lookups + 1.
  unsigned lookups = 0;
  bool over_limit = false;
  std::string limit_term;               // over the limit: the term that went over, as written
  std::vector<std::string> limit_path;  // and the domains whose records led there
  std::vector<spf_problem> problems;    // in the order they were found

  // Whether include:<include_name> is among the terms evaluation reaches,
  // in the checked record or in one it leads to (checked even past the
  // limit for the records read).
  std::optional<spf_term> include_term;   // the first one found
  std::vector<std::string> include_path;  // the domains whose records led to it
};

// The report once the domain's TXT lookup answered, with the record parsed
// when there is exactly one.
spf_report spf_start(std::string_view domain, const lookup_result& txt);

class spf_check {
 public:
  using callback = std::function<void(const spf_report&)>;

  spf_check(resolver& r, spf_options opt) : _resolver(r), _opt(std::move(opt)) {}

  // Checks `domain` and calls `done` once with the report, after the
  // current batch of completions. The check carries on if this object is
  // destroyed first; it is dropped silently if the resolver is.
  void check(std::string_view domain, callback done);

 private:
  resolver& _resolver;
  spf_options _opt;
};

}  // namespace ringrelay::dns
