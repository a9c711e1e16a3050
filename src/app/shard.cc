#include "shard.hh"

#include <pthread.h>
#include <sched.h>

#include <cstring>
#include <future>
#include <ringrelay/accounts/usage_ledger.hh>
#include <ringrelay/delivery/service.hh>
#include <ringrelay/dns/resolver.hh>
#include <ringrelay/dns/sender_check.hh>
#include <ringrelay/log/log.hh>
#include <ringrelay/net/listener.hh>
#include <ringrelay/reactor/buffer_pool.hh>
#include <ringrelay/reactor/loop.hh>
#include <ringrelay/smtp/server.hh>
#include <ringrelay/spool/writer.hh>
#include <ringrelay/tls/tls.hh>
#include <ringrelay/util/clock.hh>
#include <ringrelay/util/file.hh>
#include <stdexcept>
#include <string>

#include "file_saver.hh"
#include "sender_verifier.hh"

namespace ringrelay::app {
namespace {

// How often a shard writes its usage snapshot while charges come in.
constexpr std::int64_t usage_snapshot_interval_ms = 2000;

}  // namespace

void startup_gate::arrive() {
  std::lock_guard lock(_mutex);
  if (_waiting > 0 && --_waiting == 0) _changed.notify_all();
}

bool startup_gate::wait() {
  std::unique_lock lock(_mutex);
  _changed.wait(lock, [this] { return _waiting == 0 || _abandoned; });
  return !_abandoned;
}

void startup_gate::abandon() {
  std::lock_guard lock(_mutex);
  _abandoned = true;
  _changed.notify_all();
}

struct shard::state {
  std::promise<void> started;
  std::unique_ptr<reactor::loop> loop;
  std::function<void()> stop_hook;  // runs on the shard's thread
  smtp::server* server = nullptr;   // for reloads, on the shard's thread
};

shard::shard(unsigned index, std::shared_ptr<const config::server_config> cfg,
             std::vector<int> listen_fds, std::shared_ptr<const accounts::table> accounts,
             auth::verifier* verifier, auth::shared_failure_limiter* limiter,
             const accounts::quota_clock* quota_clock, accounts::counter_store* counters,
             startup_gate* gate)
    : _index(index),
      _cfg(std::move(cfg)),
      _listen_fds(std::move(listen_fds)),
      _accounts(std::move(accounts)),
      _verifier(verifier),
      _limiter(limiter),
      _quota_clock(quota_clock),
      _counters(counters),
      _gate(gate),
      _state(std::make_unique<state>()) {}

shard::~shard() {
  join();
}

void shard::start() {
  auto ready = _state->started.get_future();
  _thread = std::thread([this] { run(); });
  ready.get();  // rethrows a startup failure of the shard
}

void shard::request_stop() {
  if (_state->loop)
    _state->loop->post([s = _state.get()] {
      if (s->stop_hook) s->stop_hook();
    });
}

void shard::set_accounts(std::shared_ptr<const accounts::table> table) {
  if (_state->loop)
    _state->loop->post([s = _state.get(), table = std::move(table)]() mutable {
      if (s->server) s->server->set_accounts(std::move(table));
    });
}

void shard::join() {
  if (_thread.joinable()) _thread.join();
}

// Adds the usage this shard's ledger records to the shared counters.
void shard::restore_usage(const accounts::usage_ledger& ledger) {
  if (ledger.accounts().empty() || !_counters || !_quota_clock) return;
  std::uint32_t today = _quota_clock->day_number(util::wall_seconds());
  for (const auto& [name, usage] : ledger.accounts()) {
    const accounts::account* a = _accounts ? _accounts->find(name) : nullptr;
    accounts::counter_slot& slot = a ? *a->counters : _counters->slot_for(name, 0);
    accounts::restore(slot, today, usage);
  }
  RR_INFO("usage restored accounts=%zu through_sequence=%llu", ledger.accounts().size(),
          static_cast<unsigned long long>(ledger.sequence()));
}

void shard::run() {
  static thread_local char name[16];
  snprintf(name, sizeof name, "shard%u", _index);
  log::set_thread_name(name);
  pthread_setname_np(pthread_self(), name);

  // Pin to one CPU: the shard's caches, its ring's task work and its
  // memory stay on that core.
  unsigned cpus = std::thread::hardware_concurrency();
  if (cpus > 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(_index % cpus, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
  }

  const config::server_config& cfg = *_cfg;
  std::unique_ptr<reactor::buffer_pool> buffers;
  std::unique_ptr<spool::writer> spool;
  // Destroyed after the delivery service: lookups it started never call
  // back into a service that is gone.
  std::unique_ptr<dns::resolver> resolver;
  std::unique_ptr<delivery::service> deliver;
  std::unique_ptr<dns::sender_check> sender_check;
  std::unique_ptr<smtp::server> server;
  // Destroyed before the server: its pending answers are dropped with the
  // connections waiting for them.
  std::unique_ptr<dns_sender_verifier> sender_verifier;
  std::unique_ptr<tls::context> tls_server;
  std::vector<std::unique_ptr<net::acceptor>> acceptors;
  std::vector<spool::stored_message> recovered;
  std::unique_ptr<file_saver> saver;
  accounts::usage_ledger ledger;
  const std::string ledger_path = accounts::usage_snapshot_path(cfg.spool.dir, _index);
  std::uint64_t saved_sequence = 0;
  std::int64_t next_snapshot_ms = 0;
  bool stopping = false;
  std::int64_t grace_deadline = 0;

  try {
    _state->loop = std::make_unique<reactor::loop>(reactor::loop_options{cfg.io.ring_entries, 100});
    auto& loop = *_state->loop;
    buffers = std::make_unique<reactor::buffer_pool>(loop.ring(), 0, cfg.io.recv_buffers,
                                                     cfg.io.recv_buffer_size);
    spool = std::make_unique<spool::writer>(loop, cfg.spool.dir, _index, cfg.spool.segment_size,
                                            cfg.io.body_copy_budget);
    // Usage: the last snapshot plus the charges of the commits after it.
    ledger = accounts::usage_ledger::load(ledger_path);
    saved_sequence = ledger.sequence();
    std::vector<spool::charge> charges;
    recovered = spool->open(ledger.sequence(), &charges);
    for (const auto& c : charges)
      ledger.add(c.account, c.day, c.quota_relays, c.block_relays, c.sequence);
    spool->charges_saved(saved_sequence);
    restore_usage(ledger);
    saver = std::make_unique<file_saver>(loop);
    dns::resolver_options dns_opt;
    dns_opt.servers = cfg.dns.servers;
    dns_opt.timeout_ms = cfg.dns.timeout * 1000;
    resolver = std::make_unique<dns::resolver>(loop, dns_opt);
    deliver = std::make_unique<delivery::service>(loop, *spool, cfg, resolver.get());
    if (cfg.sender_verify.enabled) {
      sender_check = std::make_unique<dns::sender_check>(
          *resolver, dns::sender_check_options{cfg.sender_verify.allow_reserved});
      sender_verifier = std::make_unique<dns_sender_verifier>(*sender_check);
    }

    if (!cfg.tls.cert.empty()) tls_server = tls::context::server(cfg.tls.cert, cfg.tls.key);
    smtp::server_options opt;
    opt.tls = tls_server.get();
    opt.tls_handshake_timeout_ms = cfg.tls.handshake_timeout * 1000;
    opt.session.auth = _accounts != nullptr && _verifier != nullptr;
    opt.session.auth_require_tls = cfg.auth.require_tls;
    opt.verifier = _verifier;
    opt.activation_delay = cfg.accounts.activation_delay;
    opt.trusted_account = cfg.accounts.trusted_account;
    opt.quota_clock = _quota_clock;
    opt.limiter = _limiter;
    opt.session.verify_sender = sender_verifier != nullptr;
    opt.sender_check = sender_verifier.get();
    opt.session.hostname = cfg.hostname;
    opt.session.limits.command_line = cfg.limits.command_line;
    opt.session.limits.text_line = cfg.limits.text_line;
    opt.session.limits.recipients = cfg.limits.recipients;
    opt.session.limits.message_size = cfg.limits.message_size;
    opt.session.limits.hops = cfg.limits.hops;
    opt.idle_timeout_ms = cfg.limits.idle_timeout * 1000;
    opt.max_sessions = cfg.limits.sessions_per_shard;
    opt.shard = _index;
    auto cfg_ref = _cfg;
    server = std::make_unique<smtp::server>(
        loop, *buffers, *spool, opt,
        [cfg_ref](const sockaddr* peer) {
          for (const auto& n : cfg_ref->trusted_networks)
            if (n.contains(peer)) return true;
          return false;
        },
        [&deliver, &ledger](spool::stored_message&& m) {
          const auto& e = m.env;
          if (!e.account.empty() && (e.quota_relays != 0 || e.block_relays != 0))
            ledger.add(e.account, e.day, e.quota_relays, e.block_relays, m.commit_sequence);
          deliver->enqueue(std::move(m));
        });
    server->set_accounts(_accounts);
    deliver->set_queue_ids([&server] { return server->new_queue_id(); });
    // After the server's turn end, which may resume sessions that append
    // body octets: every piece is written in the turn it arrived in.
    loop.on_turn_end([&spool] { spool->flush(); });
    _state->server = server.get();
    for (std::size_t i = 0; i < _listen_fds.size(); ++i) {
      smtp::listener_kind kind = smtp::listener_kind::plain;
      if (cfg.listeners[i].tls == config::tls_mode::starttls) kind = smtp::listener_kind::starttls;
      if (cfg.listeners[i].tls == config::tls_mode::implicit) kind = smtp::listener_kind::implicit;
      acceptors.push_back(std::make_unique<net::acceptor>(
          loop, _listen_fds[i], [&server, kind](int client) { server->accept(client, kind); }));
    }
    _listen_fds.clear();
  } catch (...) {
    _state->started.set_exception(std::current_exception());
    return;
  }

  auto& loop = *_state->loop;
  _gate->arrive();
  _state->started.set_value();
  if (!_gate->wait()) {
    tls::thread_cleanup();
    return;
  }
  for (auto& m : recovered) deliver->enqueue(std::move(m));
  recovered.clear();
  for (auto& a : acceptors) a->start();

  auto save_usage = [&](std::int64_t now) {
    if (ledger.sequence() <= saved_sequence || saver->busy() || now < next_snapshot_ms) return;
    next_snapshot_ms = now + usage_snapshot_interval_ms;
    std::uint64_t sequence = ledger.sequence();
    saver->save(ledger_path, ledger.encode(_index), [&, sequence](const std::string& error) {
      if (!error.empty()) {
        RR_ERROR("usage snapshot not saved (the spool keeps the charges; retrying): %s",
                 error.c_str());
        return;
      }
      saved_sequence = sequence;
      spool->charges_saved(sequence);
    });
  };
  loop.on_tick([&](std::int64_t now) {
    spool->tick(now);
    deliver->tick(now);
    save_usage(now);
    if (!stopping) return;
    bool done = server->idle() && deliver->idle();
    if (!done && now >= grace_deadline) {
      RR_WARN("grace period over: closing %zu session(s)", server->sessions());
      server->close_all();
      deliver->close_all();
      done = true;
    }
    if (done) loop.stop();
  });
  _state->stop_hook = [&] {
    if (stopping) return;
    stopping = true;
    grace_deadline = loop.now_ms() + std::int64_t{cfg.shutdown_grace} * 1000;
    RR_INFO("stopping: no new connections, %zu session(s) finishing", server->sessions());
    for (auto& a : acceptors) a->stop();
    server->shutdown();
    deliver->shutdown();
  };

  RR_INFO("shard started listeners=%zu", acceptors.size());
  loop.run();

  spool->close_all();
  saver.reset();
  if (ledger.sequence() > saved_sequence) {
    try {
      if (!util::write_file_atomically(ledger_path, ledger.encode(_index)))
        RR_ERROR("usage snapshot %s: fsync of its directory failed (the spool keeps the charges)",
                 ledger_path.c_str());
    } catch (const std::exception& e) {
      RR_ERROR("usage snapshot not saved at exit (the spool keeps the charges): %s", e.what());
    }
  }
  tls::thread_cleanup();
  RR_INFO("shard stopped");
}

}  // namespace ringrelay::app
