#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <ringrelay/config/config.hh>
#include <string>
#include <vector>

namespace ringrelay::config {
namespace {

const std::string one_listener =
    R"("listeners": [{"address": "127.0.0.1", "port": 2525, "tls": "none"}])";

// A config with one listener plus `fragment` (top-level members), unless
// the fragment brings its own listeners.
std::string config_with(const std::string& fragment) {
  if (fragment.empty()) return "{" + one_listener + "}";
  if (fragment.find("\"listeners\"") != std::string::npos) return "{" + fragment + "}";
  return "{" + one_listener + ", " + fragment + "}";
}

sockaddr_storage address_of(const std::string& text) {
  sockaddr_storage ss{};
  auto* in = reinterpret_cast<sockaddr_in*>(&ss);
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, text.c_str(), &in->sin_addr) == 1) {
    in->sin_family = AF_INET;
  } else if (inet_pton(AF_INET6, text.c_str(), &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
  } else {
    ADD_FAILURE() << "bad test address " << text;
  }
  return ss;
}

std::string address_text(const network& n) {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(n.family, n.addr, buf, sizeof buf);
  return buf;
}

std::uint16_t port_of(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&ss)->sin_port);
  return ntohs(reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port);
}

class config_test : public ::testing::Test {
 protected:
  void SetUp() override {
    auto base = std::filesystem::temp_directory_path() / "rr-config-XXXXXX";
    std::string pattern = base.string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    _dir = pattern;
    _file = (_dir / "ringrelay.json").string();
  }
  void TearDown() override { std::filesystem::remove_all(_dir); }

  const std::string& file() const { return _file; }

  std::string write(const std::string& text) {
    std::ofstream(_file, std::ios::binary | std::ios::trunc) << text;
    return _file;
  }

  server_config load_text(const std::string& text, const std::vector<std::string>& overrides = {}) {
    return load(write(text), overrides);
  }

  // The config_error message for `text` with `overrides`; fails the test
  // when it loads.
  std::string error_of(const std::string& text, const std::vector<std::string>& overrides = {}) {
    try {
      load_text(text, overrides);
    } catch (const config_error& e) {
      return e.what();
    }
    ADD_FAILURE() << "loaded without error: " << text;
    return "";
  }

 private:
  std::filesystem::path _dir;
  std::string _file;
};

void expect_default_values(const server_config& c) {
  const limits_config limits;
  EXPECT_EQ(c.limits.command_line, limits.command_line);
  EXPECT_EQ(c.limits.text_line, limits.text_line);
  EXPECT_EQ(c.limits.recipients, limits.recipients);
  EXPECT_EQ(c.limits.message_size, limits.message_size);
  EXPECT_EQ(c.limits.idle_timeout, limits.idle_timeout);
  EXPECT_EQ(c.limits.sessions_per_shard, limits.sessions_per_shard);
  const spool_config spool;
  EXPECT_EQ(c.spool.dir, spool.dir);
  EXPECT_EQ(c.spool.segment_size, spool.segment_size);
  const delivery_config delivery;
  EXPECT_EQ(c.delivery.retry_schedule, delivery.retry_schedule);
  EXPECT_EQ(c.delivery.max_age, delivery.max_age);
  EXPECT_EQ(c.delivery.connect_timeout, delivery.connect_timeout);
  EXPECT_EQ(c.delivery.command_timeout, delivery.command_timeout);
  EXPECT_EQ(c.delivery.connections_per_host, delivery.connections_per_host);
  EXPECT_EQ(c.delivery.messages_per_connection, delivery.messages_per_connection);
  EXPECT_TRUE(c.dns.servers.empty());
  EXPECT_EQ(c.dns.timeout, 5u);
  EXPECT_TRUE(c.sender_verify.enabled);
  EXPECT_TRUE(c.sender_verify.allow_reserved.empty());
  const io_config io;
  EXPECT_EQ(c.io.ring_entries, io.ring_entries);
  EXPECT_EQ(c.io.recv_buffers, io.recv_buffers);
  EXPECT_EQ(c.io.recv_buffer_size, io.recv_buffer_size);
  EXPECT_EQ(c.io.body_copy_budget, 8u << 20);
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.shutdown_grace, 30u);
  ASSERT_EQ(c.trusted_networks.size(), 2u);
  EXPECT_EQ(address_text(c.trusted_networks[0]), "127.0.0.0");
  EXPECT_EQ(c.trusted_networks[0].prefix, 8u);
  EXPECT_EQ(address_text(c.trusted_networks[1]), "::1");
  EXPECT_EQ(c.trusted_networks[1].prefix, 128u);
  EXPECT_GE(c.shards, 1u);
  EXPECT_LE(c.shards, 64u);
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  EXPECT_EQ(c.hostname, host);
}

TEST_F(config_test, shipped_config_loads_and_states_the_defaults) {
  auto c = load(RR_SOURCE_ROOT "/conf/ringrelay.json", {});
  EXPECT_EQ(c.source, RR_SOURCE_ROOT "/conf/ringrelay.json");
  ASSERT_EQ(c.listeners.size(), 5u);
  std::uint16_t ports[] = {25, 2525, 10025, 465, 10465};
  for (std::size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(c.listeners[i].address, "0.0.0.0");
    EXPECT_EQ(c.listeners[i].port, ports[i]);
    EXPECT_EQ(c.listeners[i].tls, i < 3 ? tls_mode::starttls : tls_mode::implicit);
  }
  EXPECT_EQ(c.tls.cert, "conf/tls/cert.pem");
  EXPECT_EQ(c.tls.key, "conf/tls/key.pem");
  EXPECT_EQ(c.delivery.relayhost, "127.0.0.1:10026");
  ASSERT_EQ(c.delivery.relayhost_addr.ss_family, AF_INET);
  EXPECT_EQ(c.delivery.relayhost_addr_len, sizeof(sockaddr_in));
  EXPECT_EQ(port_of(c.delivery.relayhost_addr), 10026);
  expect_default_values(c);
}

TEST_F(config_test, minimal_config_gets_every_default) {
  auto c = load_text(config_with(""));
  EXPECT_EQ(c.source, file());
  ASSERT_EQ(c.listeners.size(), 1u);
  EXPECT_EQ(c.listeners[0].address, "127.0.0.1");
  EXPECT_EQ(c.listeners[0].port, 2525);
  EXPECT_EQ(c.listeners[0].tls, tls_mode::none);
  EXPECT_EQ(c.delivery.relayhost, "");
  EXPECT_EQ(c.delivery.relayhost_addr_len, 0u);
  expect_default_values(c);
}

TEST_F(config_test, from_json_reads_text_in_memory) {
  auto c = from_json(config_with(R"("shards": 3)"), "inline", {"hostname=relay.example.com"});
  EXPECT_EQ(c.source, "inline");
  EXPECT_EQ(c.shards, 3u);
  EXPECT_EQ(c.hostname, "relay.example.com");
  try {
    from_json("[]", "inline");
    FAIL();
  } catch (const config_error& e) {
    EXPECT_STREQ(e.what(), "inline: expected an object at the top level, got []");
  }
}

TEST_F(config_test, every_key_is_read) {
  auto c = load_text(config_with(R"(
    "shards": 2, "hostname": "relay.example.com",
    "trusted_networks": ["10.0.0.0/8"],
    "limits": {"command_line": 1024, "text_line": 2000, "recipients": 50, "message_size": 1048576,
               "idle_timeout": "1m", "sessions_per_shard": 7},
    "spool": {"dir": "spool", "segment_size": 1048576},
    "delivery": {"relayhost": "[127.0.0.1]:2526", "retry_schedule": [10, "1m"], "max_age": "1h",
                 "connect_timeout": 5, "command_timeout": "10s", "connections_per_host": 3,
                 "messages_per_connection": 4},
    "dns": {"servers": ["127.0.0.1:5353", "[::1]:53"], "timeout": "2s"},
    "sender_verify": {"enabled": false, "allow_reserved": ["test", "corp.example"]},
    "io": {"ring_entries": 256, "recv_buffers": 64, "recv_buffer_size": 8192,
           "body_copy_budget": 0},
    "log": {"level": "debug"}, "shutdown_grace": 0)"));
  EXPECT_EQ(c.shards, 2u);
  EXPECT_EQ(c.hostname, "relay.example.com");
  ASSERT_EQ(c.trusted_networks.size(), 1u);
  EXPECT_EQ(c.trusted_networks[0].prefix, 8u);
  EXPECT_EQ(c.limits.command_line, 1024u);
  EXPECT_EQ(c.limits.text_line, 2000u);
  EXPECT_EQ(c.limits.recipients, 50u);
  EXPECT_EQ(c.limits.message_size, 1048576u);
  EXPECT_EQ(c.limits.idle_timeout, 60u);
  EXPECT_EQ(c.limits.sessions_per_shard, 7u);
  EXPECT_EQ(c.spool.dir, "spool");
  EXPECT_EQ(c.spool.segment_size, 1048576u);
  EXPECT_EQ(port_of(c.delivery.relayhost_addr), 2526);
  EXPECT_EQ(c.delivery.retry_schedule, (std::vector<std::uint32_t>{10, 60}));
  EXPECT_EQ(c.delivery.max_age, 3600u);
  EXPECT_EQ(c.delivery.connect_timeout, 5u);
  EXPECT_EQ(c.delivery.command_timeout, 10u);
  EXPECT_EQ(c.delivery.connections_per_host, 3u);
  EXPECT_EQ(c.delivery.messages_per_connection, 4u);
  EXPECT_EQ(c.dns.servers, (std::vector<std::string>{"127.0.0.1:5353", "[::1]:53"}));
  EXPECT_EQ(c.dns.timeout, 2u);
  EXPECT_FALSE(c.sender_verify.enabled);
  EXPECT_EQ(c.sender_verify.allow_reserved, (std::vector<std::string>{"test", "corp.example"}));
  EXPECT_EQ(c.io.ring_entries, 256u);
  EXPECT_EQ(c.io.recv_buffers, 64u);
  EXPECT_EQ(c.io.recv_buffer_size, 8192u);
  EXPECT_EQ(c.io.body_copy_budget, 0u);
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.shutdown_grace, 0u);
}

struct error_case {
  std::string fragment;  // top-level members added to a one-listener config
  std::string message;   // expected message after "FILE: "
};

TEST_F(config_test, wrong_types_and_ranges_name_the_file_and_key) {
  const std::string duration_forms = R"((seconds, or a string such as "30s", "15m", "2h", "5d"))";
  const std::string hostname_forms =
      R"("" or a host name (letters, digits, hyphens and dots) such as "relay.example.com")";
  const error_case cases[] = {
      {R"("shards": -1)", "shards: expected an integer from 0 to 64, got -1"},
      {R"("shards": 65)", "shards: expected an integer from 0 to 64, got 65"},
      {R"("shards": "4")", R"(shards: expected an integer from 0 to 64, got "4")"},
      {R"("shards": 1.0)", "shards: expected an integer from 0 to 64, got 1.0"},
      {R"("shards": 18446744073709551615)",
       "shards: expected an integer from 0 to 64, got 18446744073709551615"},
      {R"("hostname": 5)", "hostname: expected a string, got 5"},
      {R"("hostname": null)", "hostname: expected a string, got null"},
      {R"("hostname": "bad host")", "hostname: expected " + hostname_forms + R"(, got "bad host")"},
      {R"("hostname": "-a.example")",
       "hostname: expected " + hostname_forms + R"(, got "-a.example")"},
      {R"("hostname": "a..example")",
       "hostname: expected " + hostname_forms + R"(, got "a..example")"},
      {R"("hostname": "a.example.")",
       "hostname: expected " + hostname_forms + R"(, got "a.example.")"},
      {R"("hostname": "a-.example")",
       "hostname: expected " + hostname_forms + R"(, got "a-.example")"},
      {R"("hostname": ")" + std::string(64, 'a') + R"(")",
       "hostname: expected " + hostname_forms + R"(, got ")" + std::string(59, 'a') + "..."},
      {R"("listeners": [])", "listeners: expected a non-empty array of listeners, got []"},
      {R"("listeners": {})", "listeners: expected a non-empty array of listeners, got {}"},
      {R"("listeners": [5])", "listeners.0: expected an object, got 5"},
      {R"("listeners": [{"port": 25}])",
       R"(listeners.0: "address" is required, as in {"address": "0.0.0.0", "port": 25, "tls": "starttls"})"},
      {R"("listeners": [{"address": "::"}])",
       R"(listeners.0: "port" is required, as in {"address": "0.0.0.0", "port": 25, "tls": "starttls"})"},
      {R"("listeners": [{"address": "localhost", "port": 25}])",
       R"(listeners.0.address: expected an IPv4 or IPv6 address such as "0.0.0.0", "127.0.0.1" or "::", got "localhost")"},
      {R"("listeners": [{"address": 0, "port": 25}])",
       "listeners.0.address: expected a string, got 0"},
      {R"("listeners": [{"address": "::", "port": 0}])",
       "listeners.0.port: expected an integer from 1 to 65535, got 0"},
      {R"("listeners": [{"address": "::", "port": 65536}])",
       "listeners.0.port: expected an integer from 1 to 65535, got 65536"},
      {R"("listeners": [{"address": "::", "port": "25"}])",
       R"(listeners.0.port: expected an integer from 1 to 65535, got "25")"},
      {R"("listeners": [{"address": "::", "port": 25, "tls": "ssl"}])",
       R"(listeners.0.tls: expected one of "none", "starttls", "implicit", got "ssl")"},
      {R"("trusted_networks": "127.0.0.1")",
       R"(trusted_networks: expected an array of networks, got "127.0.0.1")"},
      {R"("trusted_networks": [5])", "trusted_networks.0: expected a string, got 5"},
      {R"("trusted_networks": ["::1", "10.0.0.0/33"])",
       R"(trusted_networks.1: expected a prefix length from 0 to 32 after "/", got "10.0.0.0/33")"},
      {R"("limits": 5)", "limits: expected an object, got 5"},
      {R"("limits": {"command_line": 511})",
       "limits.command_line: expected an integer from 512 to 65536, got 511"},
      {R"("limits": {"text_line": 999})",
       "limits.text_line: expected an integer from 1000 to 1048576, got 999"},
      {R"("limits": {"recipients": "abc"})",
       R"(limits.recipients: expected an integer from 1 to 100000, got "abc")"},
      {R"("limits": {"recipients": 0})",
       "limits.recipients: expected an integer from 1 to 100000, got 0"},
      {R"("limits": {"recipients": 100001})",
       "limits.recipients: expected an integer from 1 to 100000, got 100001"},
      {R"("limits": {"message_size": 1073741825})",
       "limits.message_size: expected an integer from 1024 to 1073741824, got 1073741825"},
      {R"("limits": {"message_size": 1023})",
       "limits.message_size: expected an integer from 1024 to 1073741824, got 1023"},
      {R"("limits": {"idle_timeout": "5x"})",
       R"(limits.idle_timeout: expected a duration from 1s to 1d )" + duration_forms +
           R"(, got "5x")"},
      {R"("limits": {"idle_timeout": 0})",
       "limits.idle_timeout: expected a duration from 1s to 1d " + duration_forms + ", got 0"},
      {R"("limits": {"sessions_per_shard": 0})",
       "limits.sessions_per_shard: expected an integer from 1 to 1000000, got 0"},
      {R"("spool": [])", "spool: expected an object, got []"},
      {R"("spool": {"dir": ""})", R"(spool.dir: expected a directory, got "")"},
      {R"("spool": {"dir": 5})", "spool.dir: expected a string, got 5"},
      {R"("spool": {"segment_size": 1048577})",
       "spool.segment_size: expected a multiple of 4096 from 1048576 to 68719476736, got 1048577"},
      {R"("spool": {"segment_size": 4096})",
       "spool.segment_size: expected a multiple of 4096 from 1048576 to 68719476736, got 4096"},
      {R"("delivery": {"relayhost": 5})", "delivery.relayhost: expected a string, got 5"},
      {R"("delivery": {"retry_schedule": []})",
       "delivery.retry_schedule: expected an array of 1 to 100 durations, got []"},
      {R"("delivery": {"retry_schedule": "1m"})",
       R"(delivery.retry_schedule: expected an array of 1 to 100 durations, got "1m")"},
      {R"("delivery": {"retry_schedule": ["1m", 0]})",
       "delivery.retry_schedule.1: expected a duration from 1s to 30d " + duration_forms +
           ", got 0"},
      {R"("delivery": {"max_age": "0s"})",
       R"(delivery.max_age: expected a duration from 1s to 365d )" + duration_forms +
           R"(, got "0s")"},
      {R"("delivery": {"max_age": 1.5})",
       "delivery.max_age: expected a duration from 1s to 365d " + duration_forms + ", got 1.5"},
      {R"("delivery": {"connect_timeout": "2h"})",
       R"(delivery.connect_timeout: expected a duration from 1s to 1h )" + duration_forms +
           R"(, got "2h")"},
      {R"("delivery": {"command_timeout": -1})",
       "delivery.command_timeout: expected a duration from 1s to 1h " + duration_forms +
           ", got -1"},
      {R"("delivery": {"connections_per_host": 0})",
       "delivery.connections_per_host: expected an integer from 1 to 10000, got 0"},
      {R"("delivery": {"messages_per_connection": true})",
       "delivery.messages_per_connection: expected an integer from 1 to 1000000, got true"},
      {R"("dns": [])", "dns: expected an object, got []"},
      {R"("dns": {"servers": "127.0.0.1"})",
       R"(dns.servers: expected an array of "ip:port", got "127.0.0.1")"},
      {R"("dns": {"servers": [53]})", "dns.servers.0: expected a string, got 53"},
      {R"("dns": {"servers": ["127.0.0.1", "localhost"]})",
       R"(dns.servers.1: expected an IP address with an optional port, such as "127.0.0.1:53" or "[::1]:5353", got "localhost")"},
      {R"("dns": {"servers": ["127.0.0.1:0"]})",
       R"(dns.servers.0: expected an IP address with an optional port, such as "127.0.0.1:53" or "[::1]:5353", got "127.0.0.1:0")"},
      {R"("dns": {"servers": ["127.0.0.1:65536"]})",
       R"(dns.servers.0: expected an IP address with an optional port, such as "127.0.0.1:53" or "[::1]:5353", got "127.0.0.1:65536")"},
      {R"("dns": {"servers": ["127.0.0.1:"]})",
       R"(dns.servers.0: expected an IP address with an optional port, such as "127.0.0.1:53" or "[::1]:5353", got "127.0.0.1:")"},
      {R"("dns": {"servers": ["[::1"]})",
       R"(dns.servers.0: expected an IP address with an optional port, such as "127.0.0.1:53" or "[::1]:5353", got "[::1")"},
      {R"("dns": {"servers": ["[::1]53"]})",
       R"(dns.servers.0: expected an IP address with an optional port, such as "127.0.0.1:53" or "[::1]:5353", got "[::1]53")"},
      {R"("dns": {"servers": ["127.0.0.1:53,10.0.0.1"]})",
       R"(dns.servers.0: expected an IP address with an optional port, such as "127.0.0.1:53" or "[::1]:5353", got "127.0.0.1:53,10.0.0.1")"},
      {R"("dns": {"timeout": 0})",
       "dns.timeout: expected a duration from 1s to 1m " + duration_forms + ", got 0"},
      {R"("dns": {"timeout": "2m"})",
       R"(dns.timeout: expected a duration from 1s to 1m )" + duration_forms + R"(, got "2m")"},
      {R"("sender_verify": true)", "sender_verify: expected an object, got true"},
      {R"("sender_verify": {"enabled": "yes"})",
       R"(sender_verify.enabled: expected true or false, got "yes")"},
      {R"("sender_verify": {"allow_reserved": "test"})",
       R"(sender_verify.allow_reserved: expected an array of domain suffixes, got "test")"},
      {R"("sender_verify": {"allow_reserved": ["test", 5]})",
       "sender_verify.allow_reserved.1: expected a string, got 5"},
      {R"("sender_verify": {"allow_reserved": ["my test"]})",
       R"(sender_verify.allow_reserved.0: expected a domain suffix such as "test" or "corp.example", got "my test")"},
      {R"("sender_verify": {"allow_reserved": [""]})",
       R"(sender_verify.allow_reserved.0: expected a domain suffix such as "test" or "corp.example", got "")"},
      {R"("sender_verify": {"allow_reserved": ["..test"]})",
       R"(sender_verify.allow_reserved.0: expected a domain suffix such as "test" or "corp.example", got "..test")"},
      {R"("io": {"ring_entries": 100})",
       "io.ring_entries: expected a power of two from 8 to 32768, got 100"},
      {R"("io": {"ring_entries": 65536})",
       "io.ring_entries: expected a power of two from 8 to 32768, got 65536"},
      {R"("io": {"recv_buffers": 3})",
       "io.recv_buffers: expected a power of two from 1 to 32768, got 3"},
      {R"("io": {"recv_buffers": 0})",
       "io.recv_buffers: expected a power of two from 1 to 32768, got 0"},
      {R"("io": {"recv_buffer_size": 4095})",
       "io.recv_buffer_size: expected an integer from 4096 to 1048576, got 4095"},
      {R"("io": {"recv_buffer_size": 1048577})",
       "io.recv_buffer_size: expected an integer from 4096 to 1048576, got 1048577"},
      {R"("io": {"body_copy_budget": 1073741825})",
       "io.body_copy_budget: expected an integer from 0 to 1073741824, got 1073741825"},
      {R"("io": {"body_copy_budget": -1})",
       "io.body_copy_budget: expected an integer from 0 to 1073741824, got -1"},
      {R"("log": {"level": "verbose"})",
       R"(log.level: expected one of "debug", "info", "warn", "error", got "verbose")"},
      {R"("log": "info")", R"(log: expected an object, got "info")"},
      {R"("shutdown_grace": "1.5s")", R"(shutdown_grace: expected a duration from 0s to 1d )" +
                                          duration_forms + R"(, got "1.5s")"},
      {R"("shutdown_grace": "2d")",
       R"(shutdown_grace: expected a duration from 0s to 1d )" + duration_forms + R"(, got "2d")"},
      {R"("accounts": [])", "accounts: expected an object, got []"},
      {R"("quota": true)", "quota: expected an object, got true"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.fragment);
    EXPECT_EQ(error_of(config_with(c.fragment)), file() + ": " + c.message);
  }
}

TEST_F(config_test, listeners_key_is_required) {
  EXPECT_EQ(error_of("{}"),
            file() + R"(: listeners: required: at least one {"address", "port", "tls"})");
}

TEST_F(config_test, unknown_keys_are_errors_at_every_level) {
  const error_case cases[] = {
      {R"("foo": 1)", R"(unknown key "foo")"},
      {R"("limit": {})", R"(unknown key "limit"; did you mean "limits"?)"},
      {R"("limits": {"recipient": 5})",
       R"(unknown key "limits.recipient"; did you mean "limits.recipients"?)"},
      {R"("limits": {"foo": 1})", R"(unknown key "limits.foo")"},
      {R"("spool": {"directory": "/x"})", R"(unknown key "spool.directory")"},
      {R"("delivery": {"relay_host": ""})",
       R"(unknown key "delivery.relay_host"; did you mean "delivery.relayhost"?)"},
      {R"("io": {"entries": 8})", R"(unknown key "io.entries")"},
      {R"("dns": {"server": []})", R"(unknown key "dns.server"; did you mean "dns.servers"?)"},
      {R"("dns": {"resolver": "127.0.0.1"})", R"(unknown key "dns.resolver")"},
      {R"("sender_verify": {"enable": true})",
       R"(unknown key "sender_verify.enable"; did you mean "sender_verify.enabled"?)"},
      {R"("log": {"levels": "info"})", R"(unknown key "log.levels"; did you mean "log.level"?)"},
      {R"("listeners": [{"address": "::", "port": 25, "host": "x"}])",
       R"(unknown key "listeners.0.host")"},
      {R"("listeners": [{"address": "::", "port": 25}, {"adress": "::", "port": 26}])",
       R"(unknown key "listeners.1.adress"; did you mean "listeners.1.address"?)"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.fragment);
    EXPECT_EQ(error_of(config_with(c.fragment)), file() + ": " + c.message);
  }
}

TEST_F(config_test, the_reserved_section_is_accepted_and_ignored) {
  EXPECT_NO_THROW(load_text(config_with(R"("admin": {"anything": [1, {"x": null}]})")));
  EXPECT_NO_THROW(load_text(config_with(""), {"admin.some.deep.key=15m"}));
  EXPECT_EQ(error_of(config_with(R"("admin": 5)")), file() + ": admin: expected an object, got 5");
}

TEST_F(config_test, dns_servers_take_the_form_c_ares_reads) {
  struct row {
    const char* written;
    const char* stored;
  };
  const row rows[] = {
      {"127.0.0.1", "127.0.0.1:53"},
      {"127.0.0.1:5353", "127.0.0.1:5353"},
      {"192.0.2.53:053", "192.0.2.53:53"},
      {"[127.0.0.1]:5353", "127.0.0.1:5353"},
      {"::1", "[::1]:53"},
      {"[::1]", "[::1]:53"},
      {"[2001:db8::53]:5353", "[2001:db8::53]:5353"},
  };
  for (const auto& r : rows) {
    auto c = load_text(config_with(R"("dns": {"servers": [")" + std::string(r.written) + R"("]})"));
    ASSERT_EQ(c.dns.servers.size(), 1u) << r.written;
    EXPECT_EQ(c.dns.servers[0], r.stored) << r.written;
  }
  auto set = load_text(config_with(""), {R"(dns.servers=["127.0.0.1:5353"])", "dns.timeout=3"});
  EXPECT_EQ(set.dns.servers, (std::vector<std::string>{"127.0.0.1:5353"}));
  EXPECT_EQ(set.dns.timeout, 3u);
  EXPECT_EQ(
      error_of(config_with(""), {"dns.servers=127.0.0.1:5353"}),
      R"(--set dns.servers=127.0.0.1:5353: expected an array of "ip:port", got "127.0.0.1:5353")");
}

TEST_F(config_test, allowed_reserved_suffixes_are_kept_in_lower_case_without_a_dot) {
  auto c =
      load_text(config_with(R"("sender_verify": {"allow_reserved": [".Test", "Corp.Example"]})"));
  EXPECT_EQ(c.sender_verify.allow_reserved, (std::vector<std::string>{"test", "corp.example"}));
  auto set = load_text(config_with(""), {"sender_verify.enabled=false",
                                         R"(sender_verify.allow_reserved=["local"])"});
  EXPECT_FALSE(set.sender_verify.enabled);
  EXPECT_EQ(set.sender_verify.allow_reserved, (std::vector<std::string>{"local"}));
}

TEST_F(config_test, tls_auth_accounts_and_control_sections) {
  auto c = load_text(config_with(
      R"("tls": {"cert": "c.pem", "key": "k.pem", "handshake_timeout": "10s"},
         "auth": {"require_tls": true, "max_failures": 5, "failure_window": "1m", "workers": 3},
         "accounts": {"file": "u.json", "activation_delay": "15m"},
         "control": {"socket": "/tmp/x.sock"})"));
  EXPECT_EQ(c.tls.cert, "c.pem");
  EXPECT_EQ(c.tls.key, "k.pem");
  EXPECT_EQ(c.tls.handshake_timeout, 10u);
  EXPECT_TRUE(c.auth.require_tls);
  EXPECT_EQ(c.auth.max_failures, 5u);
  EXPECT_EQ(c.auth.failure_window, 60u);
  EXPECT_EQ(c.auth.workers, 3u);
  EXPECT_EQ(c.accounts.file, "u.json");
  EXPECT_EQ(c.accounts.activation_delay, 900u);
  EXPECT_EQ(c.control.socket, "/tmp/x.sock");
  EXPECT_EQ(load_text(config_with(R"("quota": {"time_zone": "Europe/Berlin"})")).quota.time_zone,
            "Europe/Berlin");
  EXPECT_EQ(load_text(config_with("")).quota.time_zone, "UTC");
  auto d = load_text(config_with(""));
  EXPECT_FALSE(d.auth.require_tls);
  EXPECT_EQ(d.accounts.file, "conf/users.json");
  EXPECT_EQ(d.control.socket, "/run/ringrelay/control.sock");
  EXPECT_THROW(load_text(config_with(R"("auth": {"require_tls": "yes"})")), config_error);
  EXPECT_THROW(load_text(config_with(R"("tls": {"certificate": "c.pem"})")), config_error);
}

TEST_F(config_test, bad_json_is_reported_with_its_position) {
  const std::string structure =
      "invalid JSON (The JSON document has an improper structure: missing or superfluous "
      "commas, braces, missing keys, etc.)";
  const error_case cases[] = {
      {"", "invalid JSON (Empty: no JSON found)"},
      {"   \n", "invalid JSON (Empty: no JSON found)"},
      {R"({"shards": 1,})", "line 1, column 14: " + structure},
      {"{\n  \"shards\": 1\n  \"hostname\": \"\"\n}", "line 3, column 3: " + structure},
      {"{\n  \"shards\": tru\n}",
       "line 2, column 13: invalid JSON (The JSON element does not have the requested type.)"},
      {R"({"shards": 01})", "line 1, column 12: invalid JSON (Problem while parsing a number)"},
      {R"({"shards": [1, 2})", "line 1, column 17: " + structure},
      {R"({"shards": [1, 2)",
       "invalid JSON (JSON document ended early in the middle of an object or array.)"},
      {R"({"hostname": "x)", "invalid JSON (A string is opened, but never closed.)"},
      {"{\"hostname\": \"\xff\"}", "invalid JSON (The input is not valid UTF-8)"},
      {R"({"shards": 1} {})",
       "line 1, column 15: invalid JSON (Unexpected trailing content in the JSON input.)"},
      {R"({"limits": {"recipients": 1, "recipients": 2}})", R"(duplicate key "limits.recipients")"},
      {"[1, 2]", "expected an object at the top level, got [1,2]"},
      {"\"text\"", R"(expected an object at the top level, got "text")"},
      {"null", "expected an object at the top level, got null"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.fragment);
    EXPECT_EQ(error_of(c.fragment), file() + ": " + c.message);
  }
}

TEST_F(config_test, byte_order_mark_is_skipped) {
  EXPECT_NO_THROW(load_text("\xEF\xBB\xBF" + config_with("")));
}

TEST_F(config_test, unreadable_file_is_named) {
  try {
    load(file() + ".missing", {});
    FAIL();
  } catch (const config_error& e) {
    EXPECT_EQ(std::string(e.what()), file() + ".missing: cannot open: No such file or directory");
  }
}

TEST_F(config_test, set_overrides_existing_and_absent_keys) {
  auto text = config_with(R"("limits": {"recipients": 10}, "hostname": "a.example")");
  EXPECT_EQ(load_text(text).limits.recipients, 10u);
  auto c = load_text(text, {"limits.recipients=20", "io.recv_buffers=64", "shards=2"});
  EXPECT_EQ(c.limits.recipients, 20u);
  EXPECT_EQ(c.limits.command_line, 512u);
  EXPECT_EQ(c.io.recv_buffers, 64u);
  EXPECT_EQ(c.io.ring_entries, 4096u);
  EXPECT_EQ(c.shards, 2u);
  EXPECT_EQ(load_text(text, {"limits.recipients=20", "limits.recipients=30"}).limits.recipients,
            30u);
  EXPECT_EQ(load_text(text, {R"(limits={"text_line": 2000})"}).limits.recipients, 1000u);
}

TEST_F(config_test, set_value_is_json_when_it_parses_else_a_string) {
  auto text = config_with("");
  EXPECT_EQ(load_text(text, {"hostname=mx.example.com"}).hostname, "mx.example.com");
  EXPECT_EQ(load_text(text, {R"(hostname="mx.example.com")"}).hostname, "mx.example.com");
  EXPECT_EQ(load_text(text, {"spool.dir=/tmp/spool dir"}).spool.dir, "/tmp/spool dir");
  EXPECT_EQ(load_text(text, {"log.level=warn"}).log_level, "warn");
  EXPECT_EQ(load_text(text, {"delivery.max_age=2d"}).delivery.max_age, 2u * 86400);
  EXPECT_EQ(load_text(text, {"delivery.max_age=120"}).delivery.max_age, 120u);
  EXPECT_EQ(load_text(text, {"delivery.relayhost=[::1]:2526"}).delivery.relayhost, "[::1]:2526");
  EXPECT_EQ(load_text(text, {"delivery.relayhost="}).delivery.relayhost_addr_len, 0u);
  EXPECT_EQ(load_text(text, {R"(delivery.retry_schedule=["1m", 120])"}).delivery.retry_schedule,
            (std::vector<std::uint32_t>{60, 120}));
  EXPECT_TRUE(load_text(text, {"trusted_networks=[]"}).trusted_networks.empty());
}

TEST_F(config_test, set_replaces_arrays_whole_or_one_element_by_index) {
  auto text = config_with(
      R"("listeners": [{"address": "0.0.0.0", "port": 25}, {"address": "::", "port": 25}])");
  auto whole = load_text(text, {R"(listeners=[{"address":"127.0.0.1","port":2525,"tls":"none"}])"});
  ASSERT_EQ(whole.listeners.size(), 1u);
  EXPECT_EQ(whole.listeners[0].address, "127.0.0.1");
  EXPECT_EQ(whole.listeners[0].port, 2525);
  EXPECT_EQ(whole.listeners[0].tls, tls_mode::none);

  auto one = load_text(text, {"listeners.1.port=2600", "listeners.0.tls=implicit"});
  ASSERT_EQ(one.listeners.size(), 2u);
  EXPECT_EQ(one.listeners[0].tls, tls_mode::implicit);
  EXPECT_EQ(one.listeners[1].port, 2600);

  auto appended = load_text(text, {R"(listeners.2={"address":"::1","port":2601})",
                                   "listeners.3.address=127.0.0.2", "listeners.3.port=2602"});
  ASSERT_EQ(appended.listeners.size(), 4u);
  EXPECT_EQ(appended.listeners[2].port, 2601);
  EXPECT_EQ(appended.listeners[3].address, "127.0.0.2");
  EXPECT_EQ(appended.listeners[3].tls, tls_mode::starttls);
}

TEST_F(config_test, set_errors_name_the_set) {
  auto text = config_with(
      R"("listeners": [{"address": "0.0.0.0", "port": 25}, {"address": "::", "port": 25}])");
  struct set_case {
    std::string set;
    std::string message;
  };
  const set_case cases[] = {
      {"limits.recipients=0",
       "--set limits.recipients=0: expected an integer from 1 to 100000, got 0"},
      {R"(limits.recipients="20")",
       R"(--set limits.recipients="20": expected an integer from 1 to 100000, got "20")"},
      {"limits.recipients=abc",
       R"(--set limits.recipients=abc: expected an integer from 1 to 100000, got "abc")"},
      {R"(limits={"recipients": 0})",
       R"(--set limits={"recipients": 0}: limits.recipients: expected an integer from 1 to 100000, got 0)"},
      {R"(limits={"recipients": 1, "recipients": 2})",
       R"(--set limits={"recipients": 1, "recipients": 2}: duplicate key "recipients")"},
      {"limits.foo=1", R"(--set limits.foo=1: unknown key "limits.foo")"},
      {"foo.bar=1", R"(--set foo.bar=1: unknown key "foo")"},
      {"limits.recipient=5",
       R"(--set limits.recipient=5: unknown key "limits.recipient"; did you mean "limits.recipients"?)"},
      {"limits.recipients",
       "--set limits.recipients: expected KEY=VALUE, as in --set limits.recipients=500"},
      {"=5", R"(--set =5: the key "" has an empty part)"},
      {"limits..recipients=5",
       R"(--set limits..recipients=5: the key "limits..recipients" has an empty part)"},
      {"limits.recipients.=5",
       R"(--set limits.recipients.=5: the key "limits.recipients." has an empty part)"},
      {"listeners.0.port.x=1",
       R"(--set listeners.0.port.x=1: "listeners.0.port" is an integer, not an object or array)"},
      {"shards.x=1", R"(--set shards.x=1: shards: expected an integer from 0 to 64, got {"x":1})"},
      {"listeners.5.port=1",
       R"(--set listeners.5.port=1: "listeners" is an array of 2: an index from 0 to 2 (to append) is expected, not "5")"},
      {"listeners.first.port=1",
       R"(--set listeners.first.port=1: "listeners" is an array of 2: an index from 0 to 2 (to append) is expected, not "first")"},
      {"listeners.01.port=1",
       R"(--set listeners.01.port=1: "listeners" is an array of 2: an index from 0 to 2 (to append) is expected, not "01")"},
      {"listeners.1.port=80000",
       "--set listeners.1.port=80000: expected an integer from 1 to 65535, got 80000"},
      {"listeners.1.address=0.0.0.0",
       "--set listeners.1.address=0.0.0.0: listeners.1: duplicate listener 0.0.0.0:25 (also "
       "listeners.0)"},
      {"listeners.0.address=::",
       "--set listeners.0.address=::: listeners.1: duplicate listener [::]:25 (also listeners.0)"},
      {"listeners.2.port=26",
       R"(--set listeners.2.port=26: listeners.2: "address" is required, as in {"address": "0.0.0.0", "port": 25, "tls": "starttls"})"},
      {"listeners=[]", "--set listeners=[]: expected a non-empty array of listeners, got []"},
      {"delivery.relayhost=::1:25",
       R"(--set delivery.relayhost=::1:25: expected "host", "host:port" or "[host]:port", got "::1:25" (an IPv6 address must be in brackets, as in "[::1]:25"))"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.set);
    EXPECT_EQ(error_of(text, {c.set}), c.message);
  }
}

struct relayhost_case {
  std::string value;
  int family;  // expected family, AF_UNSPEC for either (unused with an error)
  std::uint16_t port;
  std::string error;  // expected message after "FILE: delivery.relayhost: ", or "" for success
};

TEST_F(config_test, relayhost_forms) {
  const std::string forms = R"(expected "host", "host:port" or "[host]:port", got )";
  const relayhost_case cases[] = {
      {"127.0.0.1:10026", AF_INET, 10026, ""},
      {"127.0.0.1", AF_INET, 25, ""},
      {"[127.0.0.1]:2525", AF_INET, 2525, ""},
      {"[127.0.0.1]", AF_INET, 25, ""},
      {"[::1]:2526", AF_INET6, 2526, ""},
      {"[::1]", AF_INET6, 25, ""},
      {"localhost:2527", AF_UNSPEC, 2527, ""},
      {"localhost", AF_UNSPEC, 25, ""},
      {"::1:25", 0, 0,
       forms + R"("::1:25" (an IPv6 address must be in brackets, as in "[::1]:25"))"},
      {"::1", 0, 0, forms + R"("::1" (an IPv6 address must be in brackets, as in "[::1]:25"))"},
      {"host:", 0, 0, forms + R"("host:" (the port must be a number from 1 to 65535))"},
      {"host:0", 0, 0, forms + R"("host:0" (the port must be a number from 1 to 65535))"},
      {"host:65536", 0, 0, forms + R"("host:65536" (the port must be a number from 1 to 65535))"},
      {"host:25x", 0, 0, forms + R"("host:25x" (the port must be a number from 1 to 65535))"},
      {"[::1", 0, 0, forms + R"("[::1" ("[" without "]"))"},
      {"[::1]25", 0, 0, forms + R"("[::1]25" (":PORT" or nothing expected after "]"))"},
      {"[]:25", 0, 0, forms + R"("[]:25" (the host is empty))"},
      {":25", 0, 0, forms + R"(":25" (the host is empty))"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.value);
    auto text = config_with(R"("delivery": {"relayhost": ")" + c.value + "\"}");
    if (!c.error.empty()) {
      EXPECT_EQ(error_of(text), file() + ": delivery.relayhost: " + c.error);
      continue;
    }
    auto d = load_text(text).delivery;
    EXPECT_EQ(d.relayhost, c.value);
    if (c.family != AF_UNSPEC) {
      EXPECT_EQ(d.relayhost_addr.ss_family, c.family);
    }
    EXPECT_EQ(d.relayhost_addr_len,
              d.relayhost_addr.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6));
    EXPECT_EQ(port_of(d.relayhost_addr), c.port);
  }
}

TEST_F(config_test, unresolvable_relayhost_is_an_error_naming_the_key) {
  auto message = error_of(config_with(R"("delivery": {"relayhost": "nonexistent.invalid:25"})"));
  EXPECT_EQ(
      message.rfind(file() + R"(: delivery.relayhost: cannot resolve "nonexistent.invalid" ()", 0),
      0u)
      << message;
}

TEST(parse_duration, forms) {
  const std::pair<std::string, std::uint32_t> good[] = {
      {"0", 0},
      {"30", 30},
      {"30s", 30},
      {"15m", 900},
      {"2h", 7200},
      {"5d", 432000},
      {"0d", 0},
      {"4294967295", 4294967295u},
      {"49710d", 49710u * 86400},
  };
  for (const auto& [text, seconds] : good) {
    SCOPED_TRACE(text);
    EXPECT_EQ(parse_duration(text, "here"), seconds);
  }
  for (std::string text : {"", "s", "-1", "+1", "1.5s", "1w", " 1s", "1s ", "1S", "1m30s",
                           "4294967296", "49711d", "99999999999"}) {
    SCOPED_TRACE(text);
    try {
      parse_duration(text, "conf/x.json: accounts.activation_delay");
      ADD_FAILURE();
    } catch (const config_error& e) {
      EXPECT_EQ(std::string(e.what()),
                "conf/x.json: accounts.activation_delay: expected a duration (seconds, or a string "
                "such as \"30s\", \"15m\", \"2h\", \"5d\"), got \"" +
                    text + "\"");
    }
  }
}

struct network_case {
  std::string text;
  int family;
  std::string address;  // as inet_ntop prints it
  unsigned prefix;
};

TEST(parse_network, forms) {
  const network_case cases[] = {
      {"127.0.0.0/8", AF_INET, "127.0.0.0", 8},
      {"10.1.2.3", AF_INET, "10.1.2.3", 32},
      {"0.0.0.0/0", AF_INET, "0.0.0.0", 0},
      {"192.168.0.0/23", AF_INET, "192.168.0.0", 23},
      {"::1/128", AF_INET6, "::1", 128},
      {"::1", AF_INET6, "::1", 128},
      {"::/0", AF_INET6, "::", 0},
      {"2001:db8::/32", AF_INET6, "2001:db8::", 32},
      {"::ffff:10.0.0.0/104", AF_INET, "10.0.0.0", 8},
      {"::ffff:10.1.2.3", AF_INET, "10.1.2.3", 32},
      {"::ffff:0:0/96", AF_INET, "0.0.0.0", 0},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    auto n = parse_network(c.text, "here");
    EXPECT_EQ(n.family, c.family);
    EXPECT_EQ(address_text(n), c.address);
    EXPECT_EQ(n.prefix, c.prefix);
  }
}

TEST(parse_network, errors) {
  const std::string any =
      R"(expected an IPv4 or IPv6 network such as "10.0.0.0/8" or "fd00::/8", got )";
  const std::pair<std::string, std::string> cases[] = {
      {"x", any + R"("x")"},
      {"::ffff:0:0/80",
       R"("::ffff:0:0/80" has bits set after the prefix length; did you mean "::/80"?)"},
      {"", any + R"("")"},
      {"010.0.0.1", any + R"("010.0.0.1")"},
      {"10.0.0.0/8/8", R"(expected a prefix length from 0 to 32 after "/", got "10.0.0.0/8/8")"},
      {"10.0.0.0/", R"(expected a prefix length from 0 to 32 after "/", got "10.0.0.0/")"},
      {"10.0.0.0/33", R"(expected a prefix length from 0 to 32 after "/", got "10.0.0.0/33")"},
      {"10.0.0.0/-1", R"(expected a prefix length from 0 to 32 after "/", got "10.0.0.0/-1")"},
      {"::/129", R"(expected a prefix length from 0 to 128 after "/", got "::/129")"},
      {"10.1.2.3/8",
       R"("10.1.2.3/8" has bits set after the prefix length; did you mean "10.0.0.0/8"?)"},
      {"192.168.1.0/23",
       R"("192.168.1.0/23" has bits set after the prefix length; did you mean "192.168.0.0/23"?)"},
      {"2001:db8::1/32",
       R"("2001:db8::1/32" has bits set after the prefix length; did you mean "2001:db8::/32"?)"},
  };
  for (const auto& [text, message] : cases) {
    SCOPED_TRACE(text);
    try {
      parse_network(text, "f: trusted_networks.0");
      ADD_FAILURE();
    } catch (const config_error& e) {
      EXPECT_EQ(std::string(e.what()), "f: trusted_networks.0: " + message);
    }
  }
}

struct contains_case {
  std::string network;
  std::string address;
  bool inside;
};

TEST(network, contains) {
  const contains_case cases[] = {
      {"127.0.0.0/8", "127.0.0.1", true},
      {"127.0.0.0/8", "127.255.255.255", true},
      {"127.0.0.0/8", "128.0.0.1", false},
      {"127.0.0.0/8", "::ffff:127.0.0.1", true},
      {"127.0.0.0/8", "::ffff:128.0.0.1", false},
      {"127.0.0.0/8", "::1", false},
      {"10.1.2.3", "10.1.2.3", true},
      {"10.1.2.3", "10.1.2.4", false},
      {"192.168.0.0/23", "192.168.1.255", true},
      {"192.168.0.0/23", "192.168.2.0", false},
      {"0.0.0.0/0", "203.0.113.9", true},
      {"0.0.0.0/0", "::ffff:203.0.113.9", true},
      {"0.0.0.0/0", "2001:db8::1", false},
      {"::1/128", "::1", true},
      {"::1/128", "::2", false},
      {"::1/128", "127.0.0.1", false},
      {"2001:db8::/32", "2001:db8:ffff::1", true},
      {"2001:db8::/32", "2001:db9::1", false},
      {"2001:db8::/33", "2001:db8:7fff::1", true},
      {"2001:db8::/33", "2001:db8:8000::1", false},
      {"::/0", "2001:db8::1", true},
      {"::/0", "::ffff:10.0.0.1", false},
      {"::/0", "10.0.0.1", false},
      {"::ffff:10.0.0.0/104", "10.9.9.9", true},
      {"::ffff:10.0.0.0/104", "::ffff:10.1.1.1", true},
      {"::ffff:10.0.0.0/104", "11.0.0.1", false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.network + " " + c.address);
    auto n = parse_network(c.network, "here");
    auto ss = address_of(c.address);
    EXPECT_EQ(n.contains(reinterpret_cast<const sockaddr*>(&ss)), c.inside);
  }
  auto n = parse_network("0.0.0.0/0", "here");
  EXPECT_FALSE(n.contains(nullptr));
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  EXPECT_FALSE(n.contains(reinterpret_cast<const sockaddr*>(&un)));
}

TEST_F(config_test, duplicate_listeners) {
  struct listeners_case {
    std::string listeners;
    std::string error;  // after "FILE: ", or "" when they load
  };
  const listeners_case cases[] = {
      {R"([{"address": "0.0.0.0", "port": 25}, {"address": "0.0.0.0", "port": 25, "tls": "none"}])",
       "listeners.1: duplicate listener 0.0.0.0:25 (also listeners.0)"},
      {R"([{"address": "::", "port": 25}, {"address": "::1", "port": 25}, {"address": "0::0", "port": 25}])",
       "listeners.2: duplicate listener [0::0]:25 (also listeners.0)"},
      {R"([{"address": "0.0.0.0", "port": 25}, {"address": "::", "port": 25}])", ""},
      {R"([{"address": "127.0.0.1", "port": 25}, {"address": "127.0.0.1", "port": 26}])", ""},
      {R"([{"address": "127.0.0.1", "port": 25}, {"address": "127.0.0.2", "port": 25}])", ""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.listeners);
    auto text = config_with(R"("listeners": )" + c.listeners);
    if (c.error.empty()) {
      EXPECT_NO_THROW(load_text(text));
    } else {
      EXPECT_EQ(error_of(text), file() + ": " + c.error);
    }
  }
}

TEST_F(config_test, explicit_shards_and_hostname_are_kept) {
  auto c = load_text(config_with(R"("shards": 64, "hostname": "Relay-1.Example.COM")"));
  EXPECT_EQ(c.shards, 64u);
  EXPECT_EQ(c.hostname, "Relay-1.Example.COM");
}

}  // namespace
}  // namespace ringrelay::config
