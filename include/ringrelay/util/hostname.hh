// util/hostname — name checks and ASCII case folding shared by the config,
// the accounts, the DNS module and delivery.
//
// valid_hostname (RFC 1123 2.1; the config's `hostname`, the accounts'
// `sender_domains`): dot-separated labels of letters, digits and hyphens,
// not starting or ending with a hyphen, 63 octets a label, 253 in all
// (IDNs in A-label form).
// valid_dns_name: what ringrelay may put in a DNS query: labels of letters,
// digits, "-" and "_" (service names such as "_spf", RFC 8552), 1 to 63
// octets a label, 253 in all, no final dot.
// Pure; any thread.
#pragma once

#include <string>
#include <string_view>

namespace ringrelay::util {

bool valid_hostname(std::string_view name);
bool valid_dns_name(std::string_view name);

// ASCII letters to lower case; other octets (UTF-8 included) unchanged.
inline char ascii_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}
std::string ascii_lowered(std::string_view s);

}  // namespace ringrelay::util
