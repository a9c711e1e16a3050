#include <wolfssl/options.h>
// options.h must come first: it carries the library's build configuration.
#include <fcntl.h>
#include <unistd.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <ringrelay/tls/tls.hh>
#include <stdexcept>
#include <system_error>

namespace ringrelay::tls {

// Forward-secret AEAD suites only for TLS 1.2; TLS 1.3 suites are all AEAD.
constexpr const char* cipher_list =
    "TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384:TLS13-CHACHA20-POLY1305-SHA256:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

int recv_callback(WOLFSSL*, char* buf, int size, void* ctx) {
  auto* s = static_cast<session*>(ctx);
  std::size_t avail = s->_in.size() - s->_in_pos;
  if (avail == 0) return WOLFSSL_CBIO_ERR_WANT_READ;
  std::size_t n = std::min<std::size_t>(avail, static_cast<std::size_t>(size));
  std::memcpy(buf, s->_in.data() + s->_in_pos, n);
  s->_in_pos += n;
  if (s->_in_pos == s->_in.size()) {
    s->_in.clear();
    s->_in_pos = 0;
  }
  return static_cast<int>(n);
}

int send_callback(WOLFSSL*, char* buf, int size, void* ctx) {
  auto* s = static_cast<session*>(ctx);
  s->_out.append(buf, static_cast<std::size_t>(size));
  return size;
}

void thread_cleanup() {
#ifdef FP_ECC
  wc_ecc_fp_free();
#endif
}

void init() {
  static std::once_flag once;
  std::call_once(once, [] { wolfSSL_Init(); });
}

namespace {

WOLFSSL_CTX* new_ctx(bool server) {
  init();
  WOLFSSL_CTX* ctx =
      wolfSSL_CTX_new(server ? wolfSSLv23_server_method() : wolfSSLv23_client_method());
  if (!ctx) throw std::runtime_error("TLS: cannot create a wolfSSL context");
  // TLS 1.2 is the floor (RFC 8996 deprecates 1.0 and 1.1).
  wolfSSL_CTX_SetMinVersion(ctx, WOLFSSL_TLSV1_2);
  if (wolfSSL_CTX_set_cipher_list(ctx, cipher_list) != WOLFSSL_SUCCESS) {
    wolfSSL_CTX_free(ctx);
    throw std::runtime_error("TLS: the cipher list is not supported by this wolfSSL");
  }
  wolfSSL_CTX_SetIORecv(ctx, recv_callback);
  wolfSSL_CTX_SetIOSend(ctx, send_callback);
  return ctx;
}

// wolfSSL says only that loading failed. When the file cannot be opened,
// the reason (with a hint for the missing file of a first run) says more.
[[noreturn]] void load_failed(WOLFSSL_CTX* ctx, const char* key, const std::string& file,
                              const char* otherwise) {
  wolfSSL_CTX_free(ctx);
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  int err = fd < 0 ? errno : 0;
  if (fd >= 0) ::close(fd);
  std::string text = std::string(key) + " " + file + ": ";
  if (err == 0)
    text += otherwise;
  else
    text += std::generic_category().message(err);
  if (err == ENOENT) text += " (tools/run makes a self-signed pair in conf/tls/)";
  throw std::runtime_error(text);
}

}  // namespace

std::unique_ptr<context> context::server(const std::string& cert_file,
                                         const std::string& key_file) {
  WOLFSSL_CTX* ctx = new_ctx(true);
  if (wolfSSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != WOLFSSL_SUCCESS)
    load_failed(ctx, "tls.cert", cert_file, "cannot load the certificate chain (PEM expected)");
  if (wolfSSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), WOLFSSL_FILETYPE_PEM) !=
      WOLFSSL_SUCCESS)
    load_failed(ctx, "tls.key", key_file,
                "cannot load the private key (PEM expected, matching tls.cert)");
  return std::unique_ptr<context>(new context(ctx, true));
}

std::unique_ptr<context> context::client() {
  WOLFSSL_CTX* ctx = new_ctx(false);
  // Opportunistic TLS (RFC 7435): encrypt even when the peer's certificate
  // cannot be verified; an unencrypted fallback would be worse.
  wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, nullptr);
  return std::unique_ptr<context>(new context(ctx, false));
}

context::~context() {
  wolfSSL_CTX_free(_ctx);
}

session::session(const context& ctx) {
  _ssl = wolfSSL_new(ctx.native());
  if (!_ssl) {
    _error = "cannot create a TLS session (out of memory)";
    return;
  }
  wolfSSL_SetIOReadCtx(_ssl, this);
  wolfSSL_SetIOWriteCtx(_ssl, this);
}

session::~session() {
  if (_ssl) wolfSSL_free(_ssl);
}

void session::push_ciphertext(std::span<const char> bytes) {
  if (_in_pos > 0 && _in_pos == _in.size()) {
    _in.clear();
    _in_pos = 0;
  }
  _in.append(bytes.data(), bytes.size());
}

status session::fail(int rc, const char* what) {
  int err = wolfSSL_get_error(_ssl, rc);
  if (err == WOLFSSL_ERROR_WANT_READ || err == WOLFSSL_ERROR_WANT_WRITE) return status::want;
  if (err == WOLFSSL_ERROR_ZERO_RETURN) return status::closed;
  char text[WOLFSSL_MAX_ERROR_SZ];
  wolfSSL_ERR_error_string_n(static_cast<unsigned long>(err), text, sizeof text);
  _error = std::string(what) + ": " + text;
  return status::error;
}

status session::handshake() {
  if (!_ssl) return status::error;
  if (_established) return status::ok;
  int rc = wolfSSL_negotiate(_ssl);
  if (rc == WOLFSSL_SUCCESS) {
    _established = true;
    return status::ok;
  }
  return fail(rc, "TLS handshake failed");
}

status session::read(char* out, std::size_t cap, std::size_t& n) {
  n = 0;
  if (!_ssl) return status::error;
  int rc = wolfSSL_read(_ssl, out, static_cast<int>(cap));
  if (rc > 0) {
    n = static_cast<std::size_t>(rc);
    return status::ok;
  }
  return fail(rc, "TLS read failed");
}

status session::write(std::span<const char> plain) {
  if (!_ssl) return status::error;
  std::size_t off = 0;
  while (off < plain.size()) {
    int rc = wolfSSL_write(_ssl, plain.data() + off, static_cast<int>(plain.size() - off));
    if (rc <= 0) return fail(rc, "TLS write failed");
    off += static_cast<std::size_t>(rc);
  }
  return status::ok;
}

void session::shutdown() {
  if (_ssl) wolfSSL_shutdown(_ssl);
}

std::string session::version() const {
  if (!_ssl || !_established) return {};
  const char* v = wolfSSL_get_version(_ssl);
  return v ? v : "";
}

std::string session::cipher() const {
  if (!_ssl || !_established) return {};
  const char* c = wolfSSL_get_cipher_name(_ssl);
  return c ? c : "";
}

}  // namespace ringrelay::tls
