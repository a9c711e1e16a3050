#include "relayhost.hh"

#include <netdb.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "json_tree.hh"

namespace ringrelay::config::detail {
namespace {

struct host_port {
  std::string host;
  std::string port = "25";
};

// Splits `text`; returns why it cannot be split ("" when it can).
std::string split(std::string_view text, host_port& out) {
  std::string_view host = text;
  std::string_view port;
  bool has_port = false;
  if (text.starts_with('[')) {
    auto close = text.find(']');
    if (close == std::string_view::npos) return "\"[\" without \"]\"";
    host = text.substr(1, close - 1);
    auto rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') return "\":PORT\" or nothing expected after \"]\"";
      port = rest.substr(1);
      has_port = true;
    }
  } else if (auto colon = text.find(':'); colon != std::string_view::npos) {
    if (text.find(':', colon + 1) != std::string_view::npos)
      return "an IPv6 address must be in brackets, as in \"[::1]:25\"";
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    has_port = true;
  }
  if (host.empty()) return "the host is empty";
  out.host = std::string(host);
  if (!has_port) return "";
  unsigned value = 0;
  bool ok = !port.empty() && port.size() <= 5;
  for (char c : port) {
    ok = ok && c >= '0' && c <= '9';
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (!ok || value < 1 || value > 65535) return "the port must be a number from 1 to 65535";
  out.port = std::to_string(value);
  return "";
}

}  // namespace

std::string resolve_relayhost(std::string_view text, sockaddr_storage& addr, socklen_t& len) {
  host_port hp;
  if (auto problem = split(text, hp); !problem.empty()) {
    return "expected \"host\", \"host:port\" or \"[host]:port\", got " + quote(text) + " (" +
           problem + ")";
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  int rc = getaddrinfo(hp.host.c_str(), hp.port.c_str(), &hints, &found);
  if (rc != 0) {
    return "cannot resolve " + quote(hp.host) + " (" +
           (rc == EAI_SYSTEM ? std::strerror(errno) : gai_strerror(rc)) + ")";
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> owner(found, freeaddrinfo);
  std::memcpy(&addr, found->ai_addr, found->ai_addrlen);
  len = found->ai_addrlen;
  return "";
}

}  // namespace ringrelay::config::detail
