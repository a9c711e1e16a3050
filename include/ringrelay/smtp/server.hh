// smtp/server — a shard's inbound SMTP: its listeners' connections, each
// driving a `session` over the ring.
//
// A connection arms one multishot recv on the shard's provided-buffer ring.
// Command bytes go to the session; body bytes go from the same receive
// buffer to the spool (no copy). Replies are flushed once per loop turn.
// While a message commits, later pipelined input waits in its buffers, so
// replies stay in order. Backpressure: a connection holding too many
// unprocessed buffers stops receiving until it catches up, and a recv that
// found the buffer ring empty is re-armed once buffers return, so memory
// stays bounded whatever the message sizes.
//
// Shard-local: everything here runs on the owning shard's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <ringrelay/accounts/policy.hh>
#include <ringrelay/accounts/quota.hh>
#include <ringrelay/accounts/table.hh>
#include <ringrelay/auth/failure_limiter.hh>
#include <ringrelay/auth/verification_cache.hh>
#include <ringrelay/auth/verifier.hh>
#include <ringrelay/reactor/buffer_pool.hh>
#include <ringrelay/reactor/loop.hh>
#include <ringrelay/smtp/session.hh>
#include <ringrelay/spool/writer.hh>
#include <ringrelay/tls/tls.hh>
#include <ringrelay/util/id.hh>
#include <string>
#include <vector>

namespace ringrelay::smtp {

// Sender verification at MAIL FROM (SPEC.md §4), wired by the app to the
// shard's DNS checks. `verify` takes the MAIL FROM address (never the null
// sender) and calls `done` once, on the shard's thread, before it returns
// (a cached answer) or later, with "" to accept or the refusal reply. It
// may drop a pending `done` only once the server is being destroyed.
class sender_verifier {
 public:
  using done_callback = std::function<void(std::string_view refusal)>;
  virtual void verify(std::string_view sender, done_callback done) = 0;

 protected:
  ~sender_verifier() = default;
};

struct server_options {
  session_config session;
  // TLS for STARTTLS and implicit-TLS listeners; null when no certificate
  // is configured (STARTTLS is then not offered).
  const tls::context* tls = nullptr;
  std::uint32_t tls_handshake_timeout_ms = 30000;
  std::uint32_t tls_buffers = 1024;  // plaintext buffers per shard
  // AUTH: the process's password-hashing workers (null: AUTH not offered)
  // and the account rules.
  auth::verifier* verifier = nullptr;
  std::uint32_t activation_delay = 900;  // seconds
  std::string trusted_account;  // mail from trusted networks: recorded, charged, checked at MAIL
  const accounts::quota_clock* quota_clock = nullptr;  // null: nothing is charged
  auth::shared_failure_limiter* limiter = nullptr;     // the process's; with verifier
  // Checks sender domains when session.verify_sender is on (never null then).
  sender_verifier* sender_check = nullptr;
  std::uint32_t idle_timeout_ms = 300000;
  std::uint32_t max_sessions = 10000;
  std::uint32_t max_queued_buffers = 8;  // per connection, before recv pauses
  unsigned shard = 0;
};

// Decides whether a client address may send without AUTH.
using trust_check = std::function<bool(const sockaddr* peer)>;
// Receives each message once it is durable (the shard hands it to delivery).
using accepted_sink = std::function<void(spool::stored_message&&)>;

class connection;
class session_charger;

enum class listener_kind { plain, starttls, implicit };

class server {
 public:
  server(reactor::loop& loop, reactor::buffer_pool& buffers, spool::writer& spool,
         server_options opt, trust_check trusted, accepted_sink on_accepted);
  ~server();

  // Takes a freshly accepted socket from a listener of this kind.
  void accept(int fd, listener_kind kind);
  // Graceful stop: idle sessions get 421 and close; sessions in a
  // transaction may finish it. `idle()` tells when none is left.
  void shutdown();
  bool idle() const { return _live == 0; }
  // Closes every remaining session (end of the grace period).
  void close_all();

  std::size_t sessions() const { return _live; }

  // The account table to authenticate against; replaced whole on reload.
  // Sessions already authenticated keep their account name.
  // A queue ID from the shard's generator (for messages made here, bounces).
  util::queue_id new_queue_id();
  void set_accounts(std::shared_ptr<const accounts::table> table);

 private:
  friend class connection;
  friend class session_charger;
  void tick(std::int64_t now_ms);
  void turn_end();
  void schedule_flush(connection* c);
  void destroy(connection* c);
  std::string mail_policy(std::string_view account, std::string_view sender) const;

  reactor::loop& _loop;
  reactor::buffer_pool& _buffers;
  spool::writer& _spool;
  server_options _opt;
  session_config _starttls_cfg;  // _opt.session with STARTTLS offered
  reactor::local_pool _plain;    // TLS plaintext buffers
  std::shared_ptr<const accounts::table> _accounts;
  accounts::activation _activation;
  auth::verification_cache _auth_cache;
  auth::shared_failure_limiter* _limiter;
  trust_check _trusted;
  accepted_sink _on_accepted;
  util::queue_id_generator _ids;
  std::vector<std::unique_ptr<connection>> _connections;  // index = connection's place
  std::vector<connection*> _dirty;                        // output or re-arm pending this turn
  std::vector<connection*> _starved;                      // recv ended for lack of buffers
  std::vector<connection*> _tls_waiting;                  // ciphertext waits for plaintext buffers
  std::size_t _live = 0;
  bool _stopping = false;
};

}  // namespace ringrelay::smtp
