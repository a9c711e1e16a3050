// config — conf/ringrelay.json into an immutable snapshot.
//
// `load` reads the file (simdjson On Demand, into a small owned JSON tree),
// applies `--set KEY=VALUE` overrides by dotted path on that tree, fills
// defaults, validates every value and returns a plain struct. Any problem —
// unreadable file, bad JSON, unknown key, wrong type, out-of-range value,
// unresolvable relay host — throws `config_error` whose message names the
// file (or the `--set` that caused it) and the dotted key and says what is
// expected, e.g.
//   conf/ringrelay.json: limits.recipients: expected an integer from 1 to 100000, got "abc"
//   --set limits.recipients=0: expected an integer from 1 to 100000, got 0
// Unknown keys are errors everywhere, except inside the top-level section
// reserved for a later module (`admin`), which must be an object and is
// otherwise ignored for now.
//
// Startup and reload code only: it allocates, throws, calls gethostname and
// getaddrinfo (which may block on DNS). Shards get a
// `std::shared_ptr<const server_config>` and never see a half-built one.
// Every key, its type, range and default: docs/configuration.md.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace ringrelay::config {

class config_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class tls_mode { none, starttls, implicit };

struct listener {
  std::string address;  // an IP literal: "0.0.0.0", "127.0.0.1", "::", "::1"
  std::uint16_t port = 25;
  tls_mode tls = tls_mode::starttls;
};

// An IPv4 or IPv6 network ("127.0.0.0/8", "::1/128", "10.1.2.3"). For
// AF_INET the address is in addr[0..3]. IPv4-mapped IPv6 networks with a
// prefix of 96 or more ("::ffff:10.0.0.0/104") are stored as the IPv4
// network they denote.
struct network {
  int family = AF_INET;
  std::uint8_t addr[16] = {};
  unsigned prefix = 32;
  // True when `sa` (AF_INET or AF_INET6; anything else or null is false)
  // lies in this network. An IPv4-mapped IPv6 address (::ffff:a.b.c.d, as
  // a dual-stack listener reports IPv4 clients) is matched as the IPv4
  // address it carries, so it matches IPv4 networks and no IPv6 network.
  bool contains(const sockaddr* sa) const;
};

struct limits_config {
  std::uint32_t command_line = 512;       // octets including CRLF
  std::uint32_t text_line = 1000;         // octets including CRLF
  std::uint32_t recipients = 1000;        // per message
  std::uint64_t message_size = 52428800;  // RFC 1870 size, octets
  std::uint32_t hops = 50;                // Received: headers a message may carry
  std::uint32_t idle_timeout = 300;       // seconds
  std::uint32_t sessions_per_shard = 10000;
};

struct spool_config {
  std::string dir = "/var/spool/ringrelay";
  std::uint64_t segment_size = 64ull << 20;  // bytes, preallocated, multiple of 4096
};

struct delivery_config {
  std::string relayhost;  // as written: "host", "host:port", "[host]:port"; "" = route by MX
  sockaddr_storage relayhost_addr{};  // resolved at load time when relayhost is set
  socklen_t relayhost_addr_len = 0;   // 0 when relayhost is ""
  std::uint16_t mx_port = 25;         // the port of MX hosts (tests move it)
  std::vector<std::uint32_t> retry_schedule = {60,   300,  900,  1800,
                                               3600, 7200, 14400};  // seconds; last one repeats
  std::uint32_t max_age = 5 * 86400;                                // seconds
  std::uint32_t connect_timeout = 30;                               // seconds
  std::uint32_t command_timeout = 300;                              // seconds
  std::uint32_t connections_per_host = 20;
  std::uint32_t messages_per_connection = 1000;
  bool starttls = true;       // opportunistic STARTTLS to upstreams that offer it
  bool tls_fallback = false;  // after a failed handshake, plaintext for an hour
};

struct io_config {
  std::uint32_t ring_entries = 4096;       // power of two
  std::uint32_t recv_buffers = 2048;       // per shard, power of two
  std::uint32_t recv_buffer_size = 16384;  // bytes
  // Per shard: small bodies kept in memory for their first delivery attempt.
  std::uint64_t body_copy_budget = 8ull << 20;  // bytes
};

struct tls_config {
  std::string cert;                      // PEM certificate chain; "" = no TLS offered
  std::string key;                       // PEM private key
  std::uint32_t handshake_timeout = 30;  // seconds
};

struct auth_config {
  bool require_tls = false;            // AUTH only after TLS (538 5.7.11 before)
  std::uint32_t max_failures = 10;     // per client address in failure_window
  std::uint32_t failure_window = 600;  // seconds
  std::uint32_t workers = 2;           // password-hashing threads
};

struct accounts_config {
  std::string file = "conf/users.json";
  std::uint32_t activation_delay = 900;  // seconds after created_at
  // The account that mail from trusted_networks is recorded (and later
  // charged) to; "" = none.
  std::string trusted_account;
};

struct quota_config {
  std::string time_zone = "UTC";  // daily quotas reset at 00:00 here (IANA name)
};

struct dns_config {
  // Resolvers to ask, in canonical form: "192.0.2.53:53", "[2001:db8::53]:53"
  // (the file may leave the port out); empty = the system's
  // /etc/resolv.conf.
  std::vector<std::string> servers;
  std::uint32_t timeout = 5;  // seconds one lookup may take, every server and try included
};

// SPEC.md §4: the checks MAIL FROM makes (dns/sender_check.hh).
struct sender_verify_config {
  bool enabled = true;
  // Reserved suffixes accepted anyway ("test", "corp.example"): lower case,
  // without a leading dot.
  std::vector<std::string> allow_reserved;
  // The name customers include in their SPF record ("spf.relay.example"),
  // checked by `ringrelayctl check-domain`; "" = not checked.
  std::string spf_include;
};

struct control_config {
  std::string socket = "/run/ringrelay/control.sock";
};

struct server_config {
  std::string source;    // the file it came from, for messages
  unsigned shards = 0;   // 0 in the file = one per CPU (at most 64); resolved here, so >= 1
  std::string hostname;  // "" in the file = gethostname(); resolved here, so never ""
  std::vector<listener> listeners;             // at least one, no duplicate address:port
  std::vector<network> trusted_networks = {};  // key absent: 127.0.0.0/8 and ::1/128
  limits_config limits;
  spool_config spool;
  delivery_config delivery;
  dns_config dns;
  sender_verify_config sender_verify;
  io_config io;
  tls_config tls;
  auth_config auth;
  accounts_config accounts;
  control_config control;
  quota_config quota;
  std::string log_level = "info";     // debug | info | warn | error
  std::uint32_t shutdown_grace = 30;  // seconds
};

// Loads `path`, then applies each "dotted.key=value" override in order (the
// value is parsed as JSON when it parses, else taken as a string). Throws
// config_error.
server_config load(const std::string& path, const std::vector<std::string>& overrides);

// Same as `load` with the file's contents already in memory; `source` names
// them in messages. For tests and for callers that read the file themselves.
server_config from_json(std::string_view json, const std::string& source,
                        const std::vector<std::string>& overrides = {});

// Parses a duration: a JSON number of seconds, or a string "30s", "15m",
// "2h", "5d" (a bare "30" is seconds too). Exposed for other modules' keys
// (accounts.activation_delay). `where` prefixes the error message
// ("conf/ringrelay.json: accounts.activation_delay").
std::uint32_t parse_duration(std::string_view text, const std::string& where);

// Parses "ADDRESS" or "ADDRESS/PREFIX" (IPv4 or IPv6). Host bits after the
// prefix are refused ("10.1.2.3/8": the message suggests "10.0.0.0/8").
// Exposed for other modules' keys (trusted networks mapped to accounts).
network parse_network(std::string_view text, const std::string& where);

}  // namespace ringrelay::config
