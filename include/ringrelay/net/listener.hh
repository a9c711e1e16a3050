// net/listener — listening sockets and multishot accept on a shard's ring.
//
// Every shard opens its own socket per configured listener with
// SO_REUSEPORT, so the kernel spreads new connections over the shards and no
// accept is ever shared between threads. `acceptor` keeps one multishot
// accept armed and hands each new socket to its callback; it re-arms when
// the kernel ends the multishot (e.g. after an error).
//
// `open_listener` and `format_address` may block/allocate: startup only or
// per connection, never per byte. Errors: open_listener throws with the
// address in the message; the acceptor logs accept errors and goes on.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <ringrelay/reactor/loop.hh>
#include <string>

namespace ringrelay::net {

// Creates, binds and listens (SO_REUSEPORT, SO_REUSEADDR, CLOEXEC).
int open_listener(const std::string& address, std::uint16_t port, int backlog = 4096);

// "192.0.2.1" / "2001:db8::1" (IPv4-mapped IPv6 shown as IPv4).
std::string format_address(const sockaddr* sa);

// Parses "1.2.3.4:25", "[::1]:25", "host:25" (numeric only) into `out`.
bool parse_endpoint(const std::string& text, sockaddr_storage& out, socklen_t& len);

class acceptor final : public reactor::owner {
 public:
  using handler = std::function<void(int fd)>;
  acceptor(reactor::loop& loop, int listen_fd, handler on_accept);
  ~acceptor();

  void start();
  // Stops accepting: cancels the multishot accept and closes the socket.
  void stop();

  void on_completion(std::uint8_t op, const io_uring_cqe& cqe) override;

 private:
  reactor::loop& _loop;
  int _fd;
  handler _on_accept;
  std::uint32_t _slot;
  bool _stopped = false;
};

}  // namespace ringrelay::net
