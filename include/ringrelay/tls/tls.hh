// tls — wolfSSL over memory buffers: ciphertext in, plaintext out, and back.
//
// The ring does all socket I/O (DESIGN.md §4): a `tls::session` never
// touches a socket. The glue pushes the ciphertext it received with
// `push_ciphertext`, drives `handshake`/`read`/`write`, and sends whatever
// `ciphertext()` holds afterwards. wolfSSL's I/O callbacks only move bytes
// between these buffers and answer "want read" when the input is empty.
//
// A `context` holds the certificate, key and protocol settings: TLS 1.2 and
// 1.3 only, with a modern cipher list. Create one per shard and role
// (server listeners, upstream client); sessions are shard-local too.
//
// Errors: `context` constructors throw std::runtime_error naming the file
// (startup and reload only). Session calls return a status; `error_text`
// says what went wrong.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>

struct WOLFSSL_CTX;
struct WOLFSSL;

namespace ringrelay::tls {

// Initialises the library once per process (any thread, idempotent).
void init();

// Frees what this thread's handshakes left in wolfSSL's per-thread caches
// (the ECC fixed-point table). Call it as a thread that used TLS ends.
void thread_cleanup();

class context {
 public:
  // A server context with a PEM certificate chain and private key.
  static std::unique_ptr<context> server(const std::string& cert_file, const std::string& key_file);
  // A client context for opportunistic TLS upstream: it does not verify the
  // peer (RFC 7435 opportunistic security; MTA-STS/DANE come later).
  static std::unique_ptr<context> client();
  ~context();
  context(const context&) = delete;
  context& operator=(const context&) = delete;

  WOLFSSL_CTX* native() const { return _ctx; }
  bool is_server() const { return _server; }

 private:
  context(WOLFSSL_CTX* ctx, bool server) : _ctx(ctx), _server(server) {}
  WOLFSSL_CTX* _ctx;
  bool _server;
};

enum class status {
  ok,      // done (handshake finished, or bytes produced)
  want,    // needs more ciphertext from the peer
  closed,  // the peer sent close_notify
  error,   // fatal: see error_text()
};

class session {
 public:
  explicit session(const context& ctx);
  ~session();
  session(const session&) = delete;
  session& operator=(const session&) = delete;

  void push_ciphertext(std::span<const char> bytes);
  // Ciphertext waiting to be sent; the glue sends it and clears it.
  std::string& ciphertext() { return _out; }

  status handshake();
  bool established() const { return _established; }

  // Decrypts into `out` (at most `cap` octets); `n` is how many.
  status read(char* out, std::size_t cap, std::size_t& n);
  // Encrypts all of `plain` into ciphertext().
  status write(std::span<const char> plain);
  // Queues close_notify.
  void shutdown();

  // "TLSv1.3", "TLS_AES_128_GCM_SHA256"; empty before the handshake.
  std::string version() const;
  std::string cipher() const;
  const std::string& error_text() const { return _error; }
  // Ciphertext pushed but not yet consumed by wolfSSL.
  std::size_t pending_input() const { return _in.size() - _in_pos; }

 private:
  friend int recv_callback(WOLFSSL*, char*, int, void*);
  friend int send_callback(WOLFSSL*, char*, int, void*);
  status fail(int rc, const char* what);

  WOLFSSL* _ssl = nullptr;
  std::string _in;
  std::size_t _in_pos = 0;
  std::string _out;
  std::string _error;
  bool _established = false;
};

}  // namespace ringrelay::tls
