#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cstring>
#include <ringrelay/log/log.hh>
#include <ringrelay/net/listener.hh>
#include <stdexcept>

namespace ringrelay::net {
namespace {

enum op : std::uint8_t { op_accept = 1, op_cancel = 2 };

}  // namespace

bool parse_endpoint(const std::string& text, sockaddr_storage& out, socklen_t& len) {
  std::string host = text;
  std::string port = "25";
  if (!text.empty() && text[0] == '[') {
    auto close = text.find(']');
    if (close == std::string::npos) return false;
    host = text.substr(1, close - 1);
    if (close + 1 < text.size()) {
      if (text[close + 1] != ':') return false;
      port = text.substr(close + 2);
    }
  } else if (auto colon = text.rfind(':'); colon != std::string::npos && text.find(':') == colon) {
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  char* end = nullptr;
  long p = strtol(port.c_str(), &end, 10);
  if (port.empty() || *end || p <= 0 || p > 65535) return false;
  std::memset(&out, 0, sizeof out);
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<std::uint16_t>(p));
    len = sizeof(sockaddr_in);
    return true;
  }
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<std::uint16_t>(p));
    len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

int open_listener(const std::string& address, std::uint16_t port, int backlog) {
  sockaddr_storage ss;
  socklen_t len;
  std::string where = address + ":" + std::to_string(port);
  if (!parse_endpoint(address.find(':') != std::string::npos
                          ? "[" + address + "]:" + std::to_string(port)
                          : where,
                      ss, len))
    throw std::runtime_error("listener " + where + ": not a numeric IP address");
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("listener " + where + ": socket: " + strerror(errno));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  // One socket per shard on the same port: the kernel load-balances new
  // connections across them (SO_REUSEPORT), so accepts never contend.
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  // "::" serves IPv6 only, so "0.0.0.0" and "::" on one port can both be
  // listed (and a dual-stack listener never shadows an IPv4 one).
  if (ss.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) < 0) {
    int e = errno;
    ::close(fd);
    throw std::runtime_error("listener " + where + ": bind: " + strerror(e) +
                             (e == EACCES ? " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
                              : e == EADDRINUSE ? " (another process uses this port)"
                                                : ""));
  }
  if (listen(fd, backlog) < 0) {
    int e = errno;
    ::close(fd);
    throw std::runtime_error("listener " + where + ": listen: " + strerror(e));
  }
  return fd;
}

std::string format_address(const sockaddr* sa) {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (sa->sa_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, buf, sizeof buf);
  } else if (sa->sa_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(sa);
    if (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr))
      inet_ntop(AF_INET, &v6->sin6_addr.s6_addr[12], buf, sizeof buf);
    else
      inet_ntop(AF_INET6, &v6->sin6_addr, buf, sizeof buf);
  }
  return buf;
}

acceptor::acceptor(reactor::loop& loop, int listen_fd, handler on_accept)
    : _loop(loop), _fd(listen_fd), _on_accept(std::move(on_accept)), _slot(loop.add_owner(this)) {}

acceptor::~acceptor() {
  _loop.remove_owner(_slot);
  if (_fd >= 0) ::close(_fd);
}

void acceptor::start() {
  io_uring_sqe* s = _loop.sqe();
  io_uring_prep_multishot_accept(s, _fd, nullptr, nullptr, SOCK_CLOEXEC);
  io_uring_sqe_set_data64(s, _loop.token(_slot, op_accept));
}

void acceptor::stop() {
  if (_stopped) return;
  _stopped = true;
  io_uring_sqe* s = _loop.sqe();
  io_uring_prep_cancel64(s, _loop.token(_slot, op_accept), 0);
  io_uring_sqe_set_data64(s, _loop.token(_slot, op_cancel));
  // Closing our listening socket makes the kernel send new connections for
  // this port to the shards that still listen (SO_REUSEPORT group).
  ::close(_fd);
  _fd = -1;
}

void acceptor::on_completion(std::uint8_t op, const io_uring_cqe& cqe) {
  if (op != op_accept) return;
  if (cqe.res >= 0) {
    if (_stopped) {
      ::close(cqe.res);
    } else {
      _on_accept(cqe.res);
    }
  } else if (cqe.res != -ECANCELED) {
    RR_WARN("accept failed: %s", strerror(-cqe.res));
  }
  if (!(cqe.flags & IORING_CQE_F_MORE) && !_stopped) start();
}

}  // namespace ringrelay::net
