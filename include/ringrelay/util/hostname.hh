// util/hostname — the RFC 1123 2.1 host-name check shared by the config
// (`hostname`) and the accounts (`sender_domains`).
//
// Dot-separated labels of letters, digits and hyphens, not starting or
// ending with a hyphen, 63 octets a label, 253 in all (IDNs in A-label
// form). Pure; any thread.
#pragma once

#include <string_view>

namespace ringrelay::util {

bool valid_hostname(std::string_view name);

}  // namespace ringrelay::util
