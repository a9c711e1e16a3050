#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <memory>
#include <optional>
#include <ringrelay/config/config.hh>
#include <ringrelay/util/hostname.hh>
#include <span>
#include <thread>
#include <utility>

#include "json_tree.hh"
#include "override.hh"
#include "relayhost.hh"

namespace ringrelay::config {
namespace {

using detail::json_value;
using detail::quote;
using kind = json_value::kind;

// util::queue_id_generator keeps six bits of the shard number: more shards
// would make queue IDs collide.
constexpr unsigned max_shards = 64;

// Top-level sections that later modules will define. Their contents are not
// read yet; they must be objects so that a typo in a top-level key is still
// caught (it would not match any of these names).
constexpr std::string_view reserved_sections[] = {"admin"};

constexpr std::string_view duration_forms =
    "seconds, or a string such as \"30s\", \"15m\", \"2h\", \"5d\"";

std::string join(std::string_view path, std::string_view key) {
  if (path.empty()) return std::string(key);
  return std::string(path) + "." + std::string(key);
}

// "90s", "15m", "2h", "5d": the largest unit that divides evenly.
std::string format_duration(std::uint64_t seconds) {
  if (seconds != 0 && seconds % 86400 == 0) return std::to_string(seconds / 86400) + "d";
  if (seconds != 0 && seconds % 3600 == 0) return std::to_string(seconds / 3600) + "h";
  if (seconds != 0 && seconds % 60 == 0) return std::to_string(seconds / 60) + "m";
  return std::to_string(seconds) + "s";
}

std::optional<std::uint64_t> duration_seconds(std::string_view text) {
  constexpr std::string_view suffixes = "smhd";
  constexpr std::uint64_t units[] = {1, 60, 3600, 86400};
  std::uint64_t unit = 1;  // no suffix: seconds
  if (auto i = text.empty() ? std::string_view::npos : suffixes.find(text.back());
      i != std::string_view::npos) {
    unit = units[i];
    text.remove_suffix(1);
  }
  // Ten digits cannot overflow even in days; the caller checks the range.
  if (text.empty() || text.size() > 10) return std::nullopt;
  std::uint64_t n = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return n * unit;
}

// Levenshtein distance, for "did you mean" on unknown keys.
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1] ? 1 : 0)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// A known key close enough to `key` to be what was meant: same first
// letter, and at most one edit per four characters (two at most).
std::string_view closest(std::string_view key, const std::vector<std::string_view>& known) {
  std::string_view best;
  std::size_t best_distance = std::min<std::size_t>(2, key.size() / 4) + 1;
  for (auto k : known) {
    if (k.empty() || key.empty() || k[0] != key[0]) continue;
    auto d = edit_distance(key, k);
    if (d < best_distance) {
      best = k;
      best_distance = d;
    }
  }
  return best;
}

// Where each value came from: index 0 is the file, then one per --set.
struct origin {
  std::string label;  // "conf/ringrelay.json" or "--set limits.recipients=0"
  std::string key;    // the --set's own key ("" for the file)
};

class context {
 public:
  explicit context(std::vector<origin> origins) : _origins(std::move(origins)) {}

  // "FILE: KEY"; for a --set, just "--set KEY=VALUE" when the problem is
  // with that very key, else "--set KEY=VALUE: INNER.KEY".
  std::string where(const json_value& v, std::string_view path) const {
    const auto& o = _origins[v.origin];
    if (path.empty() || (v.origin != 0 && path == o.key)) return o.label;
    return o.label + ": " + std::string(path);
  }

  [[noreturn]] void fail(const json_value& v, std::string_view path,
                         const std::string& what) const {
    throw config_error(where(v, path) + ": " + what);
  }

  [[noreturn]] void expected(const json_value& v, std::string_view path,
                             const std::string& what) const {
    fail(v, path, "expected " + what + ", got " + detail::render(v));
  }

  [[noreturn]] void unknown(const json_value& v, const std::string& path,
                            const std::string& suggestion) const {
    std::string hint = suggestion.empty() ? "" : "; did you mean " + quote(suggestion) + "?";
    throw config_error(_origins[v.origin].label + ": unknown key " + quote(path) + hint);
  }

 private:
  std::vector<origin> _origins;
};

enum class shape { any, power_of_two, page_multiple };

std::int64_t read_integer(const context& ctx, const json_value& v, const std::string& path,
                          std::int64_t min, std::int64_t max, shape s = shape::any) {
  bool ok = v.type == kind::number && v.integer && *v.integer >= min && *v.integer <= max;
  if (ok && s == shape::power_of_two)
    ok = std::has_single_bit(static_cast<std::uint64_t>(*v.integer));
  if (ok && s == shape::page_multiple) ok = *v.integer % 4096 == 0;
  if (!ok) {
    std::string what = s == shape::power_of_two    ? "a power of two"
                       : s == shape::page_multiple ? "a multiple of 4096"
                                                   : "an integer";
    ctx.expected(v, path, what + " from " + std::to_string(min) + " to " + std::to_string(max));
  }
  return *v.integer;
}

std::uint32_t read_duration(const context& ctx, const json_value& v, const std::string& path,
                            std::uint32_t min, std::uint32_t max) {
  std::optional<std::uint64_t> seconds;
  if (v.type == kind::number && v.integer && *v.integer >= 0) {
    seconds = static_cast<std::uint64_t>(*v.integer);
  } else if (v.type == kind::string) {
    seconds = duration_seconds(v.text);
  }
  if (!seconds || *seconds < min || *seconds > max) {
    ctx.expected(v, path,
                 "a duration from " + format_duration(min) + " to " + format_duration(max) + " (" +
                     std::string(duration_forms) + ")");
  }
  return static_cast<std::uint32_t>(*seconds);
}

const std::string& read_string(const context& ctx, const json_value& v, const std::string& path) {
  if (v.type != kind::string) ctx.expected(v, path, "a string");
  return v.text;
}

template <class E>
E read_choice(const context& ctx, const json_value& v, const std::string& path,
              std::initializer_list<std::pair<std::string_view, E>> choices) {
  if (v.type == kind::string) {
    for (const auto& [name, value] : choices)
      if (v.text == name) return value;
  }
  std::string names;
  for (const auto& c : choices) names += (names.empty() ? "" : ", ") + quote(c.first);
  ctx.expected(v, path, "one of " + names);
}

// One JSON object read into a struct. Its keys are checked against the
// known ones first, so a misspelt key is reported as such rather than as
// a missing value elsewhere.
class section {
 public:
  section(const context& ctx, const json_value& v, std::string path,
          std::initializer_list<std::string_view> keys, std::span<const std::string_view> more = {})
      : _ctx(ctx), _value(v), _path(std::move(path)) {
    if (v.type != kind::object) ctx.expected(v, _path, "an object");
    std::vector<std::string_view> known(keys);
    known.insert(known.end(), more.begin(), more.end());
    for (const auto& m : v.members) {
      if (std::find(known.begin(), known.end(), m.key) != known.end()) continue;
      auto suggestion = closest(m.key, known);
      ctx.unknown(m.value, join(_path, m.key), suggestion.empty() ? "" : join(_path, suggestion));
    }
  }

  const json_value* get(std::string_view key) const { return _value.find(key); }
  std::string path(std::string_view key) const { return join(_path, key); }

  template <class T>
  void integer(std::string_view key, T& out, std::int64_t min, std::int64_t max,
               shape s = shape::any) const {
    if (auto* v = get(key)) out = static_cast<T>(read_integer(_ctx, *v, path(key), min, max, s));
  }

  void duration(std::string_view key, std::uint32_t& out, std::uint32_t min,
                std::uint32_t max) const {
    if (auto* v = get(key)) out = read_duration(_ctx, *v, path(key), min, max);
  }

  void string(std::string_view key, std::string& out) const {
    if (auto* v = get(key)) out = read_string(_ctx, *v, path(key));
  }

  void boolean(std::string_view key, bool& out) const {
    if (auto* v = get(key)) {
      if (v->type != kind::boolean) _ctx.expected(*v, path(key), "true or false");
      out = v->boolean;
    }
  }

 private:
  const context& _ctx;
  const json_value& _value;
  std::string _path;
};

// The machine's name, or "" when gethostname fails (errno says why).
std::string system_hostname() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "";
  return name;
}

unsigned default_shards() {
  unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
  return std::min(cpus, max_shards);
}

// A listener's address and port in binary, to find duplicates however they
// are spelt ("::" and "0::0" are the same socket).
struct endpoint {
  int family = AF_INET;
  std::uint8_t addr[16] = {};
  std::uint16_t port = 0;
  bool operator==(const endpoint& o) const {
    return family == o.family && port == o.port && std::memcmp(addr, o.addr, sizeof addr) == 0;
  }
};

listener read_listener(const context& ctx, const json_value& v, const std::string& path,
                       endpoint& ep) {
  section s(ctx, v, path, {"address", "port", "tls"});
  listener l;
  const auto* address = s.get("address");
  const auto* port = s.get("port");
  if (!address || !port) {
    ctx.fail(v, path,
             std::string(address ? "\"port\"" : "\"address\"") +
                 " is required, as in {\"address\": \"0.0.0.0\", \"port\": 25, \"tls\": "
                 "\"starttls\"}");
  }
  l.address = read_string(ctx, *address, s.path("address"));
  if (inet_pton(AF_INET, l.address.c_str(), ep.addr) == 1) {
    ep.family = AF_INET;
  } else if (inet_pton(AF_INET6, l.address.c_str(), ep.addr) == 1) {
    ep.family = AF_INET6;
  } else {
    ctx.expected(*address, s.path("address"),
                 "an IPv4 or IPv6 address such as \"0.0.0.0\", \"127.0.0.1\" or \"::\"");
  }
  l.port = static_cast<std::uint16_t>(read_integer(ctx, *port, s.path("port"), 1, 65535));
  ep.port = l.port;
  if (const auto* tls = s.get("tls")) {
    l.tls = read_choice<tls_mode>(ctx, *tls, s.path("tls"),
                                  {{"none", tls_mode::none},
                                   {"starttls", tls_mode::starttls},
                                   {"implicit", tls_mode::implicit}});
  }
  return l;
}

std::vector<listener> read_listeners(const context& ctx, const json_value& v) {
  if (v.type != kind::array || v.items.empty())
    ctx.expected(v, "listeners", "a non-empty array of listeners");
  std::vector<listener> out;
  std::vector<endpoint> seen;
  for (std::size_t i = 0; i < v.items.size(); ++i) {
    auto path = "listeners." + std::to_string(i);
    endpoint ep;
    out.push_back(read_listener(ctx, v.items[i], path, ep));
    auto earlier = std::find(seen.begin(), seen.end(), ep);
    if (earlier != seen.end()) {
      const auto& l = out.back();
      auto shown = ep.family == AF_INET6 ? "[" + l.address + "]" : l.address;
      auto index = static_cast<std::size_t>(earlier - seen.begin());
      // Blame the latest writer of either address or port: often a --set
      // that moved one listener from the file onto another.
      const json_value* blamed = &v.items[i];
      for (const auto* item : {&v.items[i], &v.items[index]}) {
        for (const auto* key : {"address", "port"})
          if (item->find(key)->origin > blamed->origin) blamed = item->find(key);
      }
      ctx.fail(*blamed, path,
               "duplicate listener " + shown + ":" + std::to_string(l.port) + " (also listeners." +
                   std::to_string(index) + ")");
    }
    seen.push_back(ep);
  }
  return out;
}

std::vector<network> read_networks(const context& ctx, const json_value& v) {
  if (v.type != kind::array) ctx.expected(v, "trusted_networks", "an array of networks");
  std::vector<network> out;
  for (std::size_t i = 0; i < v.items.size(); ++i) {
    auto path = "trusted_networks." + std::to_string(i);
    const auto& text = read_string(ctx, v.items[i], path);
    out.push_back(parse_network(text, ctx.where(v.items[i], path)));
  }
  return out;
}

limits_config read_limits(const context& ctx, const json_value& v) {
  section s(ctx, v, "limits",
            {"command_line", "text_line", "recipients", "message_size", "hops", "idle_timeout",
             "sessions_per_shard"});
  limits_config l;
  // RFC 5321 4.5.3.1.4 and 4.5.3.1.6: servers must take at least these.
  s.integer("command_line", l.command_line, 512, 65536);
  s.integer("text_line", l.text_line, 1000, 1048576);
  s.integer("recipients", l.recipients, 1, 100000);
  s.integer("message_size", l.message_size, 1024, 1073741824);
  // RFC 5321 6.3 suggests at least 100 for a final delivery MTA; a relay
  // in front of others leaves them room.
  s.integer("hops", l.hops, 10, 1000);
  s.duration("idle_timeout", l.idle_timeout, 1, 86400);
  s.integer("sessions_per_shard", l.sessions_per_shard, 1, 1000000);
  return l;
}

spool_config read_spool(const context& ctx, const json_value& v) {
  section s(ctx, v, "spool", {"dir", "segment_size"});
  spool_config sp;
  s.string("dir", sp.dir);
  if (sp.dir.empty()) ctx.expected(*s.get("dir"), s.path("dir"), "a directory");
  s.integer("segment_size", sp.segment_size, 1 << 20, 64ll << 30, shape::page_multiple);
  return sp;
}

std::vector<std::uint32_t> read_retry_schedule(const context& ctx, const json_value& v,
                                               const std::string& path) {
  if (v.type != kind::array || v.items.empty() || v.items.size() > 100)
    ctx.expected(v, path, "an array of 1 to 100 durations");
  std::vector<std::uint32_t> out;
  for (std::size_t i = 0; i < v.items.size(); ++i)
    out.push_back(read_duration(ctx, v.items[i], join(path, std::to_string(i)), 1, 30 * 86400));
  return out;
}

delivery_config read_delivery(const context& ctx, const json_value& v) {
  section s(
      ctx, v, "delivery",
      {"relayhost", "mx_port", "retry_schedule", "max_age", "connect_timeout", "command_timeout",
       "connections_per_host", "messages_per_connection", "starttls", "tls_fallback"});
  delivery_config d;
  s.string("relayhost", d.relayhost);
  if (!d.relayhost.empty()) {
    auto problem = detail::resolve_relayhost(d.relayhost, d.relayhost_addr, d.relayhost_addr_len);
    if (!problem.empty()) ctx.fail(*s.get("relayhost"), s.path("relayhost"), problem);
  }
  s.integer("mx_port", d.mx_port, 1, 65535);
  if (const auto* r = s.get("retry_schedule"))
    d.retry_schedule = read_retry_schedule(ctx, *r, s.path("retry_schedule"));
  s.duration("max_age", d.max_age, 1, 365 * 86400);
  s.duration("connect_timeout", d.connect_timeout, 1, 3600);
  s.duration("command_timeout", d.command_timeout, 1, 3600);
  s.integer("connections_per_host", d.connections_per_host, 1, 10000);
  s.integer("messages_per_connection", d.messages_per_connection, 1, 1000000);
  s.boolean("starttls", d.starttls);
  s.boolean("tls_fallback", d.tls_fallback);
  return d;
}

io_config read_io(const context& ctx, const json_value& v) {
  section s(ctx, v, "io", {"ring_entries", "recv_buffers", "recv_buffer_size", "body_copy_budget"});
  io_config io;
  // The kernel's limits: IORING_MAX_ENTRIES, and 2^15 buffers in a
  // provided-buffer ring, whose size must be a power of two.
  s.integer("ring_entries", io.ring_entries, 8, 32768, shape::power_of_two);
  s.integer("recv_buffers", io.recv_buffers, 1, 32768, shape::power_of_two);
  s.integer("recv_buffer_size", io.recv_buffer_size, 4096, 1048576);
  s.integer("body_copy_budget", io.body_copy_budget, 0, 1ll << 30);
  return io;
}

tls_config read_tls(const context& ctx, const json_value& v) {
  section s(ctx, v, "tls", {"cert", "key", "handshake_timeout"});
  tls_config t;
  s.string("cert", t.cert);
  s.string("key", t.key);
  s.duration("handshake_timeout", t.handshake_timeout, 1, 3600);
  return t;
}

auth_config read_auth(const context& ctx, const json_value& v) {
  section s(ctx, v, "auth", {"require_tls", "max_failures", "failure_window", "workers"});
  auth_config a;
  s.boolean("require_tls", a.require_tls);
  s.integer("max_failures", a.max_failures, 1, 1000);
  s.duration("failure_window", a.failure_window, 1, 86400);
  s.integer("workers", a.workers, 1, 64);
  return a;
}

accounts_config read_accounts(const context& ctx, const json_value& v) {
  section s(ctx, v, "accounts", {"file", "activation_delay", "trusted_account"});
  accounts_config a;
  s.string("file", a.file);
  if (a.file.empty()) ctx.expected(*s.get("file"), s.path("file"), "a file name");
  s.duration("activation_delay", a.activation_delay, 0, 365 * 86400);
  s.string("trusted_account", a.trusted_account);
  return a;
}

// "192.0.2.1", "192.0.2.1:5353", "2001:db8::1", "[2001:db8::1]:5353" (and
// brackets around an IPv4 address) in the form c-ares takes: "ip:port",
// "[ipv6]:port". nullopt when the text is none of these.
std::optional<std::string> dns_server(std::string_view text) {
  std::string_view host = text;
  std::string_view port = "53";
  if (text.starts_with('[')) {
    const auto close = text.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = text.substr(1, close - 1);
    const std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') return std::nullopt;
      port = rest.substr(1);
    }
  } else if (std::count(text.begin(), text.end(), ':') == 1) {
    // One colon: IPv4 and a port. More: a bare IPv6 address, port 53.
    const auto colon = text.find(':');
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  const std::string address(host);
  in6_addr buf;
  const bool v4 = inet_pton(AF_INET, address.c_str(), &buf) == 1;
  if (!v4 && inet_pton(AF_INET6, address.c_str(), &buf) != 1) return std::nullopt;
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  const int number = std::stoi(std::string(port));
  if (number < 1 || number > 65535) return std::nullopt;
  return (v4 ? address : "[" + address + "]") + ":" + std::to_string(number);
}

dns_config read_dns(const context& ctx, const json_value& v) {
  section s(ctx, v, "dns", {"servers", "timeout"});
  dns_config d;
  if (const auto* servers = s.get("servers")) {
    const auto path = s.path("servers");
    if (servers->type != kind::array) ctx.expected(*servers, path, R"(an array of "ip:port")");
    for (std::size_t i = 0; i < servers->items.size(); ++i) {
      const auto& item = servers->items[i];
      const auto item_path = join(path, std::to_string(i));
      auto server = dns_server(read_string(ctx, item, item_path));
      if (!server) {
        ctx.expected(
            item, item_path,
            R"(an IP address with an optional port, such as "127.0.0.1:53" or "[::1]:5353")");
      }
      d.servers.push_back(std::move(*server));
    }
  }
  s.duration("timeout", d.timeout, 1, 60);
  return d;
}

sender_verify_config read_sender_verify(const context& ctx, const json_value& v) {
  section s(ctx, v, "sender_verify", {"enabled", "allow_reserved", "spf_include"});
  sender_verify_config sv;
  s.boolean("enabled", sv.enabled);
  s.string("spf_include", sv.spf_include);
  if (!sv.spf_include.empty() && !util::valid_dns_name(sv.spf_include))
    ctx.fail(*s.get("spf_include"), s.path("spf_include"),
             "not a domain name (labels of letters, digits, hyphens and underscores, separated "
             "by dots, such as \"_spf.relay.example\")");
  if (const auto* allow = s.get("allow_reserved")) {
    const auto path = s.path("allow_reserved");
    if (allow->type != kind::array) ctx.expected(*allow, path, "an array of domain suffixes");
    for (std::size_t i = 0; i < allow->items.size(); ++i) {
      const auto& item = allow->items[i];
      const auto item_path = join(path, std::to_string(i));
      std::string suffix = read_string(ctx, item, item_path);
      // ".test" and "test" name the same suffix.
      if (suffix.starts_with('.')) suffix.erase(0, 1);
      std::transform(suffix.begin(), suffix.end(), suffix.begin(), [](char c) {
        return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
      });
      if (!util::valid_hostname(suffix))
        ctx.expected(item, item_path, R"(a domain suffix such as "test" or "corp.example")");
      sv.allow_reserved.push_back(std::move(suffix));
    }
  }
  return sv;
}

control_config read_control(const context& ctx, const json_value& v) {
  section s(ctx, v, "control", {"socket"});
  control_config c;
  s.string("socket", c.socket);
  if (c.socket.empty()) ctx.expected(*s.get("socket"), s.path("socket"), "a socket path");
  return c;
}

std::string read_log_level(const context& ctx, const json_value& v) {
  section s(ctx, v, "log", {"level"});
  const auto* level = s.get("level");
  if (!level) return "info";
  return std::string(read_choice<std::string_view>(
      ctx, *level, s.path("level"),
      {{"debug", "debug"}, {"info", "info"}, {"warn", "warn"}, {"error", "error"}}));
}

server_config read_server(const context& ctx, const json_value& root, const std::string& source) {
  section s(ctx, root, "",
            {"shards", "hostname", "listeners", "trusted_networks", "limits", "spool", "delivery",
             "dns", "sender_verify", "io", "log", "shutdown_grace", "tls", "auth", "accounts",
             "control", "quota"},
            reserved_sections);
  server_config c;
  c.source = source;
  for (auto name : reserved_sections) {
    if (const auto* v = s.get(name); v && v->type != kind::object)
      ctx.expected(*v, name, "an object");
  }
  s.integer("shards", c.shards, 0, max_shards);
  s.string("hostname", c.hostname);
  if (!c.hostname.empty() && !util::valid_hostname(c.hostname)) {
    ctx.expected(*s.get("hostname"), "hostname",
                 "\"\" or a host name (letters, digits, hyphens and dots) such as "
                 "\"relay.example.com\"");
  }
  const auto* listeners = s.get("listeners");
  if (!listeners)
    ctx.fail(root, "listeners", "required: at least one {\"address\", \"port\", \"tls\"}");
  c.listeners = read_listeners(ctx, *listeners);
  if (const auto* v = s.get("trusted_networks")) {
    c.trusted_networks = read_networks(ctx, *v);
  } else {
    c.trusted_networks = {parse_network("127.0.0.0/8", "default"),
                          parse_network("::1/128", "default")};
  }
  if (const auto* v = s.get("limits")) c.limits = read_limits(ctx, *v);
  if (const auto* v = s.get("spool")) c.spool = read_spool(ctx, *v);
  if (const auto* v = s.get("delivery")) c.delivery = read_delivery(ctx, *v);
  if (const auto* v = s.get("dns")) c.dns = read_dns(ctx, *v);
  if (const auto* v = s.get("sender_verify")) c.sender_verify = read_sender_verify(ctx, *v);
  if (const auto* v = s.get("io")) c.io = read_io(ctx, *v);
  if (const auto* v = s.get("log")) c.log_level = read_log_level(ctx, *v);
  if (const auto* v = s.get("tls")) c.tls = read_tls(ctx, *v);
  if (const auto* v = s.get("auth")) c.auth = read_auth(ctx, *v);
  if (const auto* v = s.get("accounts")) c.accounts = read_accounts(ctx, *v);
  if (const auto* v = s.get("control")) c.control = read_control(ctx, *v);
  if (const auto* v = s.get("quota")) {
    section q(ctx, *v, "quota", {"time_zone"});
    q.string("time_zone", c.quota.time_zone);
  }
  s.duration("shutdown_grace", c.shutdown_grace, 0, 86400);
  if (c.shards == 0) c.shards = default_shards();
  if (c.hostname.empty()) {
    c.hostname = system_hostname();
    if (c.hostname.empty()) {
      ctx.fail(root, "hostname",
               "\"\" means the system's host name, but gethostname failed (" +
                   std::string(std::strerror(errno)) + "): set a host name");
    }
  }
  return c;
}

// "line 3, column 9: " for a byte offset into `text`, or "" when unknown.
std::string location(std::string_view text, std::optional<std::size_t> offset) {
  if (!offset || *offset > text.size()) return "";
  auto before = text.substr(0, *offset);
  auto line = 1 + std::count(before.begin(), before.end(), '\n');
  auto line_start = before.rfind('\n');
  auto column = *offset - (line_start == std::string_view::npos ? 0 : line_start + 1) + 1;
  return "line " + std::to_string(line) + ", column " + std::to_string(column) + ": ";
}

std::string read_file(const std::string& path) {
  std::unique_ptr<std::FILE, decltype(&std::fclose)> f(std::fopen(path.c_str(), "rb"), std::fclose);
  if (!f) throw config_error(path + ": cannot open: " + std::strerror(errno));
  std::string data;
  char buf[65536];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f.get())) > 0) data.append(buf, n);
  if (std::ferror(f.get())) throw config_error(path + ": cannot read: " + std::strerror(errno));
  return data;
}

}  // namespace

std::uint32_t parse_duration(std::string_view text, const std::string& where) {
  auto seconds = duration_seconds(text);
  if (!seconds || *seconds > std::numeric_limits<std::uint32_t>::max()) {
    throw config_error(where + ": expected a duration (" + std::string(duration_forms) + "), got " +
                       quote(text));
  }
  return static_cast<std::uint32_t>(*seconds);
}

server_config from_json(std::string_view json, const std::string& source,
                        const std::vector<std::string>& overrides) {
  std::string text(json);
  // A UTF-8 byte order mark is not JSON, but editors add it; blanking it
  // keeps error offsets true to the file.
  if (text.starts_with("\xEF\xBB\xBF")) text.replace(0, 3, "   ");
  auto parsed = detail::parse_json(text, 0);
  if (!parsed.value) {
    throw config_error(
        source + ": " + location(text, parsed.offset) +
        (parsed.duplicate_key ? parsed.error : "invalid JSON (" + parsed.error + ")"));
  }
  json_value& root = *parsed.value;
  std::vector<origin> origins = {{source, ""}};
  if (root.type != kind::object) context(origins).expected(root, "", "an object at the top level");
  for (const auto& o : overrides) {
    auto key = detail::apply_override(root, o, static_cast<std::uint32_t>(origins.size()));
    origins.push_back({"--set " + o, key});
  }
  return read_server(context(std::move(origins)), root, source);
}

server_config load(const std::string& path, const std::vector<std::string>& overrides) {
  return from_json(read_file(path), path, overrides);
}

}  // namespace ringrelay::config
