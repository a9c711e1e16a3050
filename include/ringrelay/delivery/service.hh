// delivery/service — a shard's outbound queue and its upstream connections.
//
// Committed messages arrive from the shard's SMTP server (and from spool
// recovery at start). Each is sent to the route's host — for now always
// `delivery.relayhost`; MX routing replaces `route()` in the DNS issue —
// over a pool of reused connections (at most `connections_per_host`, each
// carrying at most `messages_per_connection`). Per connection:
// `upstream_session` speaks the protocol; the body goes from the spool file
// to the socket with splice (file → pipe → socket, no user-space copy;
// through a 1 MiB pipe, one or two pairs of splices per body record) and the
// Received header is sent in front of it. TLS links read the body in 64 KiB parts
// and encrypt them.
//
// Results per recipient: 2xx → a done record; 4xx or a lost connection →
// retried after `retry_schedule[attempt]` (the last step repeats) until
// `max_age`; 5xx or expiry → a failed record (bounces come with the DNS
// issue). Every outcome is logged with the queue ID and the upstream reply.
// When the host cannot be reached, messages wait in the queue and the host
// is retried with the same schedule.
//
// Shard-local: all calls on the shard's thread.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <ringrelay/config/config.hh>
#include <ringrelay/reactor/loop.hh>
#include <ringrelay/spool/writer.hh>
#include <ringrelay/tls/tls.hh>
#include <string>
#include <vector>

namespace ringrelay::delivery {

class upstream;

// A message in the queue, with the recipients of its current attempt.
struct queued {
  spool::stored_message msg;
  std::vector<std::uint32_t> attempt;  // recipient indexes sent this attempt
};

// Composes the Received header (SPEC.md §6) for a stored message. Client
// text (HELO, addresses) is neutralised so it cannot add lines or break
// the header's syntax. Pure; exposed for tests.
std::string received_header(const spool::stored_message& m, std::string_view hostname);

class service {
 public:
  service(reactor::loop& loop, spool::writer& spool, const config::server_config& cfg,
          unsigned shard);
  ~service();

  void enqueue(spool::stored_message&& m);
  void tick(std::int64_t now_ms);

  // Graceful stop: no new transactions; `idle()` once none is in flight.
  void shutdown();
  bool idle() const;
  void close_all();

  std::size_t queued_count() const { return _ready.size() + _deferred.size(); }

 private:
  friend class upstream;

  void dispatch();
  std::unique_ptr<queued> next_for(upstream& u);
  void finished(std::unique_ptr<queued> q, const std::vector<struct recipient_result>& results);
  void retry_later(std::unique_ptr<queued> q, std::string_view why);
  void host_failed(std::string_view why);
  void host_ok() { _host_failures = 0; }
  bool use_starttls() const;
  void tls_failed(std::string_view why);
  void connection_gone(upstream* u);
  std::uint32_t retry_delay(std::uint32_t attempts) const;

  reactor::loop& _loop;
  spool::writer& _spool;
  const config::server_config& _cfg;
  unsigned _shard;
  std::deque<std::unique_ptr<queued>> _ready;
  std::multimap<std::int64_t, std::unique_ptr<queued>> _deferred;  // by wall seconds
  std::vector<std::unique_ptr<upstream>> _connections;
  std::int64_t _host_down_until_ms = 0;
  std::uint32_t _host_failures = 0;
  std::int64_t _last_expiry_check_ms = 0;
  bool _stopping = false;
  std::unique_ptr<tls::context> _tls_client;  // null: delivery.starttls off
  std::int64_t _plaintext_until_ms = 0;       // tls_fallback after a failed handshake
};

}  // namespace ringrelay::delivery
