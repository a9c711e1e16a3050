// accounts/policy — see the header for the contract.
#include <ringrelay/accounts/policy.hh>

namespace ringrelay::accounts {
namespace {

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

// `listed` is already lower case (the loader folded it).
bool same_domain(std::string_view listed, std::string_view domain) {
  if (listed.size() != domain.size()) return false;
  for (std::size_t i = 0; i < listed.size(); ++i)
    if (listed[i] != lower(domain[i])) return false;
  return true;
}

}  // namespace

bool sender_domain_allowed(const account& a, std::string_view domain) {
  if (a.sender_domains.empty()) return true;
  // "acme.example." is the same name as "acme.example" (RFC 1034 3.1).
  if (domain.ends_with('.')) domain.remove_suffix(1);
  for (const auto& listed : a.sender_domains)
    if (same_domain(listed, domain)) return true;
  return false;
}

}  // namespace ringrelay::accounts
