// Fuzz target: dns::parse_spf on what a domain might publish in TXT (any
// octets: a TXT string is not limited to ASCII), then the counting steps.
//
// The input is the record. Beyond never reading outside it (ASan) and
// always ending, the parser must keep what it promises: an error names a
// term that exists, an offset inside the record and a message, and keeps
// only the terms before it; is_spf agrees with the version check; a record
// without an error has terms of visible ASCII with their parts filled in
// (a domain for include, exists and redirect, prefixes within 32 and 128,
// redirect and exp at most once each), and writing its terms back gives a
// record that parses to the same terms. Evaluation reaches each term at
// most once, ignores the others, and counts no more than it reaches.
#include <cstddef>
#include <cstdint>
#include <ringrelay/dns/spf.hh>
#include <string>
#include <string_view>

#include "fuzz_input.hh"

namespace ringrelay::dns {
namespace {

using fuzz::check;

void check_term(const spf_term& t) {
  check(!t.text.empty());
  for (char c : t.text) check(c > 0x20 && c < 0x7f);
  if (t.kind == spf_kind::include || t.kind == spf_kind::exists || t.kind == spf_kind::redirect ||
      t.kind == spf_kind::exp || t.kind == spf_kind::ip4 || t.kind == spf_kind::ip6)
    check(!t.target.empty());
  check(!t.ip4_prefix || *t.ip4_prefix <= 32);
  check(!t.ip6_prefix || *t.ip6_prefix <= 128);
  check(t.kind != spf_kind::ip4 || !t.ip6_prefix);
  check(t.kind != spf_kind::ip6 || !t.ip4_prefix);
  check((t.kind == spf_kind::unknown_modifier) == !t.modifier.empty());
  check(t.is_mechanism() || t.qualifier == spf_qualifier::pass);
}

bool same_terms(const spf_record& a, const spf_record& b) {
  if (a.terms.size() != b.terms.size()) return false;
  for (std::size_t i = 0; i < a.terms.size(); ++i) {
    const spf_term &x = a.terms[i], &y = b.terms[i];
    if (x.kind != y.kind || x.qualifier != y.qualifier || x.text != y.text ||
        x.target != y.target || x.modifier != y.modifier || x.ip4_prefix != y.ip4_prefix ||
        x.ip6_prefix != y.ip6_prefix)
      return false;
  }
  return true;
}

void play(std::string_view in) {
  const spf_record r = parse_spf(in);
  check(is_spf(in) == (!r.error || r.error->term != 0));
  if (r.error) {
    check(r.terms.size() + 1 == r.error->term || (r.error->term == 0 && r.terms.empty()));
    check(r.error->offset <= in.size());
    check(!r.error->message.empty());
    check(r.error->term == 0 || in.find(r.error->text) != std::string_view::npos);
  }
  int redirects = 0;
  int exps = 0;
  for (const spf_term& t : r.terms) {
    check_term(t);
    redirects += t.kind == spf_kind::redirect;
    exps += t.kind == spf_kind::exp;
  }
  if (r.error) return;
  check(redirects <= 1 && exps <= 1);

  std::string again = "v=spf1";
  for (const spf_term& t : r.terms) again += " " + t.text;
  const spf_record r2 = parse_spf(again);
  check(!r2.error && same_terms(r, r2));

  const auto reached = evaluated_terms(r);
  const auto ignored = ignored_terms(r);
  check(reached.size() + ignored.size() <= r.terms.size());
  for (std::size_t i = 0; i < reached.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) check(reached[i] != reached[j]);
    for (const spf_term* u : ignored) check(reached[i] != u);
  }
  check(own_lookups(r) <= reached.size());
}

}  // namespace
}  // namespace ringrelay::dns

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ringrelay::dns::play(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
