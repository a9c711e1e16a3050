// delivery/service — a shard's outbound queue and its upstream connections.
//
// Committed messages arrive from the shard's SMTP server (and from spool
// recovery at start). Their recipients are grouped by destination: the
// recipient's domain when routing by MX (`delivery.relayhost` ""), or the
// one relay host. Each group is a job, queued at its destination. A
// destination resolves its route (delivery/route: MX hosts in preference
// order, their addresses, or a permanent/temporary failure) when it needs a
// connection and holds a pool of reused connections (at most
// `connections_per_host`, each carrying at most `messages_per_connection`).
// A connection failure, or a 4xx/5xx at the greeting or EHLO, moves on to the
// route's next target; when every target has failed the destination rests
// for the retry delay while its jobs wait (and still expire).
//
// Per connection: `upstream_session` speaks the protocol; the body goes from
// the spool file to the socket with splice (file → pipe → socket, no
// user-space copy; through a 1 MiB pipe, one or two pairs of splices per body
// record) and the Received header is sent in front of it. TLS links read the
// body in 64 KiB parts and encrypt them.
//
// Results per recipient: 2xx → a done record; 4xx or a lost connection →
// the job is retried after `retry_schedule[attempt]` (the last step repeats)
// until `max_age`; 5xx, expiry, or a route that fails for good → a failed
// record and a bounce (delivery/bounce) to the sender, committed to the spool
// with the null sender and queued like any message. Every outcome is logged
// with the queue ID, the upstream and its reply. A message is released once
// all its jobs are done; its deferred records list every recipient still
// pending, so recovery requeues them all.
//
// Shard-local: all calls on the shard's thread.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <ringrelay/config/config.hh>
#include <ringrelay/delivery/route.hh>
#include <ringrelay/reactor/loop.hh>
#include <ringrelay/spool/writer.hh>
#include <ringrelay/tls/tls.hh>
#include <string>
#include <unordered_map>
#include <vector>

namespace ringrelay::dns {
class resolver;
}

namespace ringrelay::delivery {

class upstream;
struct destination;
struct message_state;
struct queued;
struct recipient_result;

// Composes the Received header (SPEC.md §6) for a stored message. Client
// text (HELO, addresses) is neutralised so it cannot add lines or break
// the header's syntax. Pure; exposed for tests.
std::string received_header(const spool::stored_message& m, std::string_view hostname);

class service {
 public:
  // `resolver` routes by MX; it may be null when `delivery.relayhost` is set.
  service(reactor::loop& loop, spool::writer& spool, const config::server_config& cfg,
          dns::resolver* resolver);
  ~service();

  // Where bounces get their queue IDs (the shard's SMTP server's generator,
  // so IDs never repeat). Without it no bounce is sent.
  void set_queue_ids(std::function<util::queue_id()> next) { _next_id = std::move(next); }

  void enqueue(spool::stored_message&& m);
  void tick(std::int64_t now_ms);

  // Graceful stop: no new transactions; `idle()` once none is in flight.
  void shutdown();
  bool idle() const;
  void close_all();

  std::size_t queued_count() const;

 private:
  friend class upstream;
  struct bounce_write;

  destination& destination_for(const std::string& key);
  void add_job(std::unique_ptr<queued> q);
  void dispatch();
  void dispatch(destination& d);
  void need_route(destination& d);
  void route_ready(destination& d, struct route r);
  void fail_jobs(destination& d, std::string_view enhanced, std::string_view text, bool permanent);
  void finished(std::unique_ptr<queued> q, const std::vector<recipient_result>& results,
                const std::string& relay, const std::string& remote);
  void retry_later(std::unique_ptr<queued> q, std::string_view why);
  void job_done(queued& q);
  void release_if_done(message_state& m);
  void fail_recipients(queued& q, const std::vector<std::uint32_t>& idx,
                       std::vector<struct bounced_recipient> failed);
  void send_bounce(queued& q, std::vector<struct bounced_recipient> failed);
  void target_failed(destination& d, std::size_t target, std::string_view why);
  bool use_starttls(const destination& d) const;
  void tls_failed(destination& d, std::string_view why);
  void connection_gone(upstream* u);
  std::uint32_t retry_delay(std::uint32_t attempts) const;

  reactor::loop& _loop;
  spool::writer& _spool;
  const config::server_config& _cfg;
  dns::resolver* _resolver;
  self_addresses _self;
  std::mt19937 _rng;
  std::function<util::queue_id()> _next_id;
  std::unordered_map<std::string, std::unique_ptr<destination>> _destinations;
  destination* _relay_destination = nullptr;  // the relay host's, when one is set
  std::multimap<std::int64_t, std::unique_ptr<queued>> _deferred;  // by wall seconds
  std::vector<std::unique_ptr<bounce_write>> _bounces;
  std::int64_t _last_expiry_check_ms = 0;
  bool _stopping = false;
  std::unique_ptr<tls::context> _tls_client;  // null: delivery.starttls off
};

}  // namespace ringrelay::delivery
