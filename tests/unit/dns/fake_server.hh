// fake_server — an in-test DNS responder on 127.0.0.1:<ephemeral>, UDP and
// TCP on the same port, answering from a table of canned replies on its own
// thread, so the resolver talks to real sockets through the real ring.
//
// Per (name, type): records (answer and authority sections, any rcode),
// SERVFAIL, silence (the query is read and never answered), or records that
// only fit over TCP (over UDP the reply is empty with TC set, RFC 1035
// 4.2.1, so the client asks again over TCP). A name not in the table gets
// NXDOMAIN without an SOA. Every query is counted, so tests can tell a
// cache hit or a joined lookup from a new query, and TCP from UDP.
#pragma once

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <ringrelay/dns/resolver.hh>
#include <ringrelay/reactor/loop.hh>
#include <ringrelay/util/clock.hh>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "wire.hh"

namespace ringrelay::dns::test {

// One record, its data in text: A/AAAA an address, MX "PREF EXCHANGE"
// ("0 ." is a null MX), CNAME the target, TXT the text (one string), SOA
// the MINIMUM field (the record's TTL is `ttl`).
struct rr {
  rr_type type;
  std::string owner;
  std::uint32_t ttl;
  std::string data;
};

enum class behaviour { answer, servfail, silent, tcp_only };

struct canned {
  behaviour what = behaviour::answer;
  rcode code = rcode::noerror;
  std::vector<rr> answers;
  std::vector<rr> authority;
};

inline canned records(std::vector<rr> answers) {
  return {behaviour::answer, rcode::noerror, std::move(answers), {}};
}
inline canned nxdomain(std::string zone, std::uint32_t soa_ttl = 3600,
                       std::uint32_t minimum = 300) {
  return {behaviour::answer,
          rcode::nxdomain,
          {},
          {{rr_type::soa, std::move(zone), soa_ttl, std::to_string(minimum)}}};
}
inline canned nodata(std::string zone, std::uint32_t soa_ttl = 3600, std::uint32_t minimum = 300) {
  return {behaviour::answer,
          rcode::noerror,
          {},
          {{rr_type::soa, std::move(zone), soa_ttl, std::to_string(minimum)}}};
}
inline canned servfail() {
  return {behaviour::servfail, rcode::servfail, {}, {}};
}
inline canned silent() {
  return {behaviour::silent, rcode::noerror, {}, {}};
}
inline canned tcp_only(std::vector<rr> answers) {
  return {behaviour::tcp_only, rcode::noerror, std::move(answers), {}};
}

inline void write_rr(wire& w, const rr& r) {
  switch (r.type) {
    case rr_type::a:
      w.a(r.owner, r.ttl, r.data.c_str());
      break;
    case rr_type::aaaa:
      w.aaaa(r.owner, r.ttl, r.data.c_str());
      break;
    case rr_type::mx: {
      const auto space = r.data.find(' ');
      std::string exchange = r.data.substr(space + 1);
      if (exchange == ".") exchange.clear();
      w.mx(r.owner, r.ttl, static_cast<std::uint16_t>(std::stoi(r.data.substr(0, space))),
           exchange);
      break;
    }
    case rr_type::cname:
      w.cname(r.owner, r.ttl, r.data);
      break;
    case rr_type::txt:
      w.txt(r.owner, r.ttl, {r.data});
      break;
    case rr_type::soa:
      w.soa(r.owner, r.ttl, static_cast<std::uint32_t>(std::stoul(r.data)));
      break;
    case rr_type::ns:
      break;
  }
}

class fake_server {
 public:
  fake_server() {
    // UDP on any free port, then TCP on the same one (retried when that
    // port is taken for TCP).
    for (int attempt = 0; attempt < 50 && _tcp < 0; ++attempt) {
      close_sockets();
      _udp = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      sockaddr_in sa{};
      sa.sin_family = AF_INET;
      sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      socklen_t len = sizeof sa;
      if (_udp < 0 || ::bind(_udp, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
          ::getsockname(_udp, reinterpret_cast<sockaddr*>(&sa), &len) != 0)
        continue;
      _port = ntohs(sa.sin_port);
      const int tcp = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (tcp >= 0 && ::bind(tcp, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 &&
          ::listen(tcp, 16) == 0) {
        _tcp = tcp;
      } else if (tcp >= 0) {
        ::close(tcp);
      }
    }
    if (_tcp < 0) throw std::runtime_error("fake_server: cannot bind 127.0.0.1 for UDP and TCP");
    _thread = std::thread([this] { serve(); });
  }

  ~fake_server() {
    _stop = true;
    _thread.join();
    for (const auto& c : _connections) ::close(c.fd);
    close_sockets();
  }

  fake_server(const fake_server&) = delete;
  fake_server& operator=(const fake_server&) = delete;

  std::string address() const { return "127.0.0.1:" + std::to_string(_port); }

  void set(const std::string& name, rr_type t, canned c) {
    std::lock_guard lock(_mutex);
    _table[{name, t}] = std::move(c);
  }

  int queries(const std::string& name, rr_type t) const {
    std::lock_guard lock(_mutex);
    auto it = _counts.find({name, t});
    return it == _counts.end() ? 0 : it->second;
  }

  int total_queries() const {
    std::lock_guard lock(_mutex);
    int n = 0;
    for (const auto& [key, count] : _counts) n += count;
    return n;
  }

  int tcp_queries() const {
    std::lock_guard lock(_mutex);
    return _tcp_queries;
  }

 private:
  using key = std::pair<std::string, rr_type>;

  struct connection {
    int fd;
    std::vector<std::uint8_t> in;
  };

  void close_sockets() {
    if (_udp >= 0) ::close(_udp);
    if (_tcp >= 0) ::close(_tcp);
    _udp = _tcp = -1;
  }

  void serve() {
    while (!_stop) {
      std::vector<pollfd> fds = {{_udp, POLLIN, 0}, {_tcp, POLLIN, 0}};
      for (const auto& c : _connections) fds.push_back({c.fd, POLLIN, 0});
      if (::poll(fds.data(), fds.size(), 20) <= 0) continue;
      if (fds[0].revents) serve_udp();
      if (fds[1].revents) {
        const int fd = ::accept4(_tcp, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd >= 0) _connections.push_back({fd, {}});
      }
      // Connections accepted just now are polled from the next round.
      for (std::size_t i = fds.size() - 2; i-- > 0;) {
        if (fds[i + 2].revents && !serve_tcp(_connections[i])) {
          ::close(_connections[i].fd);
          _connections.erase(_connections.begin() + static_cast<long>(i));
        }
      }
    }
  }

  void serve_udp() {
    std::uint8_t buf[4096];
    sockaddr_in peer{};
    socklen_t len = sizeof peer;
    const ssize_t n =
        ::recvfrom(_udp, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&peer), &len);
    std::vector<std::uint8_t> out;
    if (n <= 12 || !reply({buf, buf + n}, false, out)) return;
    ::sendto(_udp, out.data(), out.size(), 0, reinterpret_cast<sockaddr*>(&peer), len);
  }

  // RFC 1035 4.2.2: each message behind a two-octet length. False when the
  // connection is over.
  bool serve_tcp(connection& c) {
    std::uint8_t buf[4096];
    const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
    if (n <= 0) return false;
    c.in.insert(c.in.end(), buf, buf + n);
    while (c.in.size() >= 2) {
      const std::size_t len = (std::size_t{c.in[0]} << 8) | c.in[1];
      if (c.in.size() < 2 + len) break;
      const std::vector<std::uint8_t> q(c.in.begin() + 2,
                                        c.in.begin() + 2 + static_cast<long>(len));
      c.in.erase(c.in.begin(), c.in.begin() + 2 + static_cast<long>(len));
      std::vector<std::uint8_t> out;
      if (q.size() <= 12 || !reply(q, true, out)) continue;
      const std::uint8_t head[2] = {static_cast<std::uint8_t>(out.size() >> 8),
                                    static_cast<std::uint8_t>(out.size() & 0xff)};
      out.insert(out.begin(), head, head + 2);
      if (::send(c.fd, out.data(), out.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(out.size()))
        return false;
    }
    return true;
  }

  // False when the query goes unanswered.
  bool reply(const std::vector<std::uint8_t>& q, bool tcp, std::vector<std::uint8_t>& out) {
    std::size_t p = 12;
    std::string name;
    while (p < q.size() && q[p] != 0) {
      const std::size_t len = q[p];
      if (p + 1 + len > q.size()) return false;
      if (!name.empty()) name += '.';
      for (std::size_t i = 0; i < len; ++i) name += static_cast<char>(std::tolower(q[p + 1 + i]));
      p += 1 + len;
    }
    if (p + 5 > q.size()) return false;
    const auto type = static_cast<rr_type>((q[p + 1] << 8) | q[p + 2]);
    const std::size_t question_end = p + 5;

    canned c;
    {
      std::lock_guard lock(_mutex);
      ++_counts[{name, type}];
      if (tcp) ++_tcp_queries;
      auto it = _table.find({name, type});
      c = it == _table.end() ? canned{behaviour::answer, rcode::nxdomain, {}, {}} : it->second;
    }
    if (c.what == behaviour::silent) return false;
    const bool truncate = c.what == behaviour::tcp_only && !tcp;
    if (truncate) c.answers.clear();
    wire w;
    w.header(static_cast<std::uint16_t>((q[0] << 8) | q[1]),
             response_flags | (truncate ? flag_tc : 0) | static_cast<std::uint16_t>(c.code), 1,
             static_cast<std::uint16_t>(c.answers.size()),
             static_cast<std::uint16_t>(c.authority.size()));
    w.bytes.insert(w.bytes.end(), q.begin() + 12, q.begin() + static_cast<long>(question_end));
    for (const auto& r : c.answers) write_rr(w, r);
    for (const auto& r : c.authority) write_rr(w, r);
    out = std::move(w.bytes);
    return true;
  }

  int _udp = -1;
  int _tcp = -1;
  std::uint16_t _port = 0;
  std::vector<connection> _connections;  // the serving thread's only
  std::atomic<bool> _stop{false};
  mutable std::mutex _mutex;
  std::map<key, canned> _table;
  std::map<key, int> _counts;
  int _tcp_queries = 0;
  std::thread _thread;
};

// A test with a fake server, a loop and a way to run one asynchronous
// check to its single callback: `run` starts it, requires that the answer
// comes after the current batch (never inside the call), and fails the
// test if the loop runs 10 s without it.
class resolver_fixture : public ::testing::Test {
 protected:
  resolver_fixture() : loop(reactor::loop_options{256, 10}) {
    loop.on_tick([this](std::int64_t now) {
      if (now - _started > 10000) {
        _out_of_time = true;
        loop.stop();
      }
    });
  }

  // `start(done)` begins the check; `done(result)` is what it calls back.
  template <typename Result, typename Start>
  Result run(Start start, const std::string& what) {
    std::optional<Result> got;
    start([&](const Result& r) {
      got = r;
      loop.stop();
    });
    EXPECT_FALSE(got) << "the answer must come after the batch";
    _started = util::monotonic_ms();
    loop.run();
    EXPECT_FALSE(_out_of_time);
    EXPECT_TRUE(got) << what;
    return got.value_or(Result{});
  }

  resolver_options options() {
    resolver_options o;
    o.servers = {server.address()};
    o.timeout_ms = 400;
    return o;
  }

  fake_server server;
  reactor::loop loop;

 private:
  std::int64_t _started = 0;
  bool _out_of_time = false;
};

}  // namespace ringrelay::dns::test
