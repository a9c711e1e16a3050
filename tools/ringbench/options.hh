// ringbench/options — the command lines of `ringbench send` and `ringbench
// sink`, their help texts, and the value syntaxes they share (sizes, mixes,
// durations).
//
// Parsing never throws and never exits: it returns an empty string on
// success or one line that names the option, what was wrong and what to
// write instead. Main thread only (startup).
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ringrelay::ringbench {

// One entry of a weighted mix: "1k:70" (a size) or "451:1" (a reply code).
struct weighted_value {
  std::uint64_t value = 0;
  std::uint32_t weight = 1;
};

enum class auth_mechanism { none, plain, login };

// How `ringbench send` speaks TLS: not at all, STARTTLS after the first
// EHLO (RFC 3207), or from the connect on (implicit TLS, RFC 8314).
enum class tls_mode { none, starttls, implicit };

struct send_options {
  std::string server;
  sockaddr_storage server_addr{};
  socklen_t server_addr_len = 0;
  std::uint32_t connections = 10;
  std::uint64_t messages = 0;  // 0: bounded by the duration only
  double duration_s = 0;       // 0: bounded by the message count (and max_unbounded_s)
  std::vector<weighted_value> sizes{{1024, 1}};
  std::uint32_t rcpts = 1;
  bool pipelining = true;
  std::uint32_t reuse = 0;  // messages per connection, 0: unlimited
  std::string from = "ringbench@example.com";
  std::string to_domain = "example.net";
  std::string ehlo = "ringbench.localdomain";
  auth_mechanism auth = auth_mechanism::none;
  std::string user;
  std::string password;
  unsigned threads = 0;   // 0: one per CPU
  double timeout_s = 30;  // a reply, or a connect, not coming within this fails the connection
  tls_mode tls = tls_mode::none;
  std::string tls_ca;  // --tls-verify: PEM CA file the server's chain must lead to
  double rate = 0;     // messages per second over all connections, 0: as fast as replies come
  bool json = false;
  bool quiet = false;
};

struct sink_options {
  std::string listen;
  std::string listen_host;
  std::uint16_t listen_port = 0;
  unsigned threads = 0;  // 0: one per CPU
  std::vector<weighted_value> replies{{250, 1}};
  std::uint32_t delay_ms = 0;
  bool auth_accept = false;
  bool chunking = false;
  std::string tls_cert;  // PEM chain and key: STARTTLS is offered (or implicit TLS)
  std::string tls_key;
  bool implicit_tls = false;
  bool json = false;
  bool quiet = false;
  double duration_s = 0;  // 0: until SIGINT/SIGTERM (or --expect)
  std::uint64_t expect = 0;
};

// A run given only --messages still stops after this long.
inline constexpr double max_unbounded_s = 3600;
// The longest --duration accepted.
inline constexpr double max_duration_s = 86400;
// The highest --rate accepted (messages per second).
inline constexpr double max_rate = 10000000;

extern const char* const main_help;
extern const char* const send_help;
extern const char* const sink_help;

// "1024", "1k" (1,024), "100k", "10m" (10 × 1,048,576). Returns false when
// the text is not such a size or is 0.
bool parse_size(std::string_view text, std::uint64_t& out);
// "20", "20s", "1.5s", "5m", "1h": seconds.
bool parse_duration(std::string_view text, double& out);
// "1k:70,100k:25,10m:5", or a single size ("1k", weight 1).
std::string parse_size_mix(std::string_view text, std::vector<weighted_value>& out);
// "250:98,451:1,550:1", or a single code; codes 200..599.
std::string parse_reply_mix(std::string_view text, std::vector<weighted_value>& out);

// Parses the arguments after "send" / "sink". `help` is set when --help was
// asked (the caller prints the help and exits 0).
std::string parse_send(int argc, char** argv, send_options& out, bool& help);
std::string parse_sink(int argc, char** argv, sink_options& out, bool& help);

}  // namespace ringrelay::ringbench
