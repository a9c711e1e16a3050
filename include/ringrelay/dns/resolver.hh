// dns/resolver — a shard's DNS resolver: c-ares on the shard's ring, with a
// cache in front.
//
// c-ares builds the queries, picks the servers and retries; its sockets
// never block the shard: c-ares reports which sockets it wants to read or
// write through its socket-state callback, the resolver polls them through
// the ring (one-shot IORING_OP_POLL_ADD per socket, re-armed after each
// readiness) and calls ares_process_fd when one is ready. While queries are
// outstanding a ring timeout, at most 100 ms long, lets c-ares retry on time
// and ends lookups at their deadline. The answer buffer c-ares returns is
// read by dns/answer, ours.
//
// `lookup` answers from the cache when it can (dns/cache: positive answers
// for their TTL, negative ones for the SOA's negative TTL, failures never),
// joins a query already in flight for the same name and type, or sends one.
// Every lookup ends within `timeout_ms` (give or take the 100 ms timer),
// all servers and tries included: status timeout after that. A SERVFAIL,
// NOTIMP or REFUSED answer ends the lookup too (see resolver.cc for why the
// next server is not asked then).
//
// Callbacks run after the completion batch, never inside `lookup` nor
// inside c-ares, in the order the answers came. Lookups still in flight when
// the resolver is destroyed never call back. Do not destroy the resolver
// inside one of its callbacks: use loop.defer (CONVENTIONS.md §8).
//
// Shard-local: one resolver per shard, created, used and destroyed on the
// loop's thread; the loop must outlive it. The constructor throws
// std::runtime_error (startup: c-ares cannot start, a server is not an
// "ip:port"); after that, errors arrive as results.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <ringrelay/dns/answer.hh>
#include <ringrelay/dns/cache.hh>
#include <ringrelay/reactor/loop.hh>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

// c-ares's channel, without its header here.
struct ares_channeldata;

namespace ringrelay::dns {

struct resolver_options {
  // "192.0.2.1:53", "[2001:db8::1]:5353", "127.0.0.1" (port 53); empty =
  // the system's /etc/resolv.conf.
  std::vector<std::string> servers;
  std::uint32_t timeout_ms = 5000;  // the longest one lookup may take
  // Attempts per server. c-ares doubles its wait after each round, so the
  // first attempt gets timeout_ms / (2^tries - 1).
  unsigned tries = 2;
  cache_limits cache;
};

// Counters for tests and metrics.
struct resolver_stats {
  std::uint64_t lookups = 0;     // calls to lookup
  std::uint64_t cache_hits = 0;  // answered from the cache
  std::uint64_t joined = 0;      // joined a query already in flight
  std::uint64_t queries = 0;     // handed to c-ares
};

using lookup_callback = std::function<void(const lookup_result&)>;

class resolver final : public reactor::owner {
 public:
  resolver(reactor::loop& loop, const resolver_options& opt);
  ~resolver();
  resolver(const resolver&) = delete;
  resolver& operator=(const resolver&) = delete;

  // Looks up the records of `type` at `name` (case and a final dot do not
  // matter). A name that is not a valid DNS name (empty, a label over 63
  // octets, octets other than letters, digits, "-", "_") gets status error
  // without a query.
  void lookup(std::string_view name, rr_type type, lookup_callback cb);

  reactor::loop& loop() { return _loop; }
  const resolver_stats& stats() const { return _stats; }
  std::size_t cached() const { return _cache.size(); }

  void on_completion(std::uint8_t op, const io_uring_cqe& cqe) override;

 private:
  struct query;
  class socket_watch;
  struct ready_callback {
    lookup_callback cb;
    lookup_result result;
  };

  static void on_socket_state(void* self, int fd, int readable, int writable);
  static void on_answer(void* arg, int status, int timeouts, unsigned char* abuf, int alen);

  void socket_state(int fd, bool readable, bool writable);
  void watch(int fd, bool readable, bool writable);
  void retire(int fd);
  void socket_ready(socket_watch& w, int res);
  void answered(query& q, int status, const unsigned char* abuf, int alen);
  void arm_timer();
  void expire(std::int64_t now_ms);
  void deliver(lookup_callback cb, lookup_result r);
  void schedule_run();
  void run_ready();

  reactor::loop& _loop;
  std::uint32_t _slot = 0;
  std::uint32_t _timeout_ms;
  ares_channeldata* _channel = nullptr;
  dns::cache _cache;
  resolver_stats _stats;
  // Queries c-ares has not called back yet, by cache key; a query that
  // passed its deadline leaves this map but lives on until c-ares ends it.
  std::unordered_map<std::string, query*> _inflight;
  std::size_t _outstanding = 0;  // queries c-ares still holds, expired ones included
  std::unordered_map<int, std::unique_ptr<socket_watch>> _watches;
  std::vector<std::unique_ptr<socket_watch>> _retired;  // freed after the batch
  std::vector<ready_callback> _ready;
  bool _run_scheduled = false;
  bool _timer_armed = false;
  __kernel_timespec _timer_ts{};
  // Deferred work checks this first: the resolver may be gone by then.
  std::shared_ptr<char> _alive = std::make_shared<char>();
};

}  // namespace ringrelay::dns
