// config/relayhost — delivery.relayhost: "host", "host:port", "[host]:port".
//
// The port defaults to 25. Brackets are required around an IPv6 address
// and allowed around anything (Postfix's spelling; the relay host is never
// looked up by MX either way). The host is resolved once, with
// getaddrinfo, when the config is loaded: the first address it returns is
// used, IPv4 or IPv6. Private to the config module; startup code only.
#pragma once

#include <sys/socket.h>

#include <string>
#include <string_view>

namespace ringrelay::config::detail {

// Resolves `text` into `addr`/`len`; on failure returns what is wrong
// (an empty string on success).
std::string resolve_relayhost(std::string_view text, sockaddr_storage& addr, socklen_t& len);

}  // namespace ringrelay::config::detail
