#include <fcntl.h>
#include <simdjson.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ringrelay/accounts/usage_ledger.hh>
#include <ringrelay/config/config.hh>
#include <ringrelay/config/json_text.hh>

namespace ringrelay::accounts {
namespace {

constexpr std::uint64_t ledger_version = 1;

[[noreturn]] void bad(const std::string& source, const std::string& what) {
  throw config::config_error(source + ": " + what +
                             " (the usage snapshot is written by ringrelay; move the damaged file "
                             "away to start from the spool's commit records alone)");
}

std::uint64_t unsigned_field(simdjson::dom::object o, std::string_view key,
                             const std::string& source, const std::string& where) {
  std::uint64_t v = 0;
  if (o[key].get_uint64().get(v) != simdjson::SUCCESS)
    bad(source, where + std::string(key) + ": expected a non-negative integer");
  return v;
}

}  // namespace

void usage_ledger::add(std::string_view account, std::uint32_t day, std::uint64_t quota_relays,
                       std::uint64_t block_relays, std::uint64_t sequence) {
  auto it = _accounts.find(account);
  if (it == _accounts.end()) it = _accounts.emplace(std::string(account), account_usage{}).first;
  account_usage& u = it->second;
  if (day > u.day) {
    u.day = day;
    u.quota = quota_relays;
  } else if (day == u.day) {
    u.quota += quota_relays;
  }
  u.blocks_used += block_relays;
  _sequence = std::max(_sequence, sequence);
}

std::string usage_ledger::encode(unsigned shard) const {
  std::string out = "{\"version\": " + std::to_string(ledger_version) +
                    ", \"shard\": " + std::to_string(shard) +
                    ", \"sequence\": " + std::to_string(_sequence) + ", \"accounts\": {";
  bool first = true;
  for (const auto& [name, u] : _accounts) {
    if (!first) out += ", ";
    first = false;
    out += "\n  " + config::json_quote(name) + ": {\"day\": " + std::to_string(u.day) +
           ", \"quota\": " + std::to_string(u.quota) +
           ", \"blocks_used\": " + std::to_string(u.blocks_used) + "}";
  }
  out += "}}\n";
  return out;
}

usage_ledger usage_ledger::decode(std::string_view json, const std::string& source) {
  simdjson::dom::parser parser;
  simdjson::padded_string text(json);
  simdjson::dom::object root;
  if (auto e = parser.parse(text).get(root))
    bad(source, std::string("not a JSON object: ") + simdjson::error_message(e));
  if (unsigned_field(root, "version", source, "") != ledger_version)
    bad(source, "version: expected " + std::to_string(ledger_version));
  usage_ledger l;
  l._sequence = unsigned_field(root, "sequence", source, "");
  simdjson::dom::object accounts;
  if (root["accounts"].get(accounts) != simdjson::SUCCESS)
    bad(source, "accounts: expected an object");
  for (auto field : accounts) {
    std::string name(field.key);
    std::string where = "accounts." + name + ".";
    simdjson::dom::object o;
    if (field.value.get(o) != simdjson::SUCCESS) bad(source, where + ": expected an object");
    account_usage u;
    std::uint64_t day = unsigned_field(o, "day", source, where);
    if (day > max_day) bad(source, where + "day: out of range");
    u.day = static_cast<std::uint32_t>(day);
    u.quota = unsigned_field(o, "quota", source, where);
    u.blocks_used = unsigned_field(o, "blocks_used", source, where);
    l._accounts[name] = u;
  }
  return l;
}

usage_ledger usage_ledger::load(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return {};
    throw config::config_error(path + ": cannot read: " + std::strerror(errno));
  }
  std::string text;
  char chunk[16384];
  for (;;) {
    ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      throw config::config_error(path + ": cannot read: " + std::strerror(e));
    }
    if (n == 0) break;
    text.append(chunk, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return decode(text, path);
}

std::string usage_snapshot_path(const std::string& spool_dir, unsigned shard) {
  return spool_dir + "/shard" + std::to_string(shard) + "/usage.json";
}

void restore(counter_slot& slot, std::uint32_t today, const account_usage& u) {
  if (u.day == today && u.quota != 0) {
    std::uint64_t word = slot.usage_word.load(std::memory_order_relaxed);
    for (;;) {
      std::uint32_t day = packed_day(word);
      if (day > today) break;
      std::uint64_t used = day == today ? packed_usage(word) : 0;
      std::uint64_t next = pack_usage(today, std::min(max_usage, used + u.quota));
      if (slot.usage_word.compare_exchange_weak(word, next, std::memory_order_acq_rel,
                                                std::memory_order_relaxed))
        break;
    }
  }
  if (u.blocks_used != 0)
    add_blocks(slot, -static_cast<std::int64_t>(std::min<std::uint64_t>(
                         u.blocks_used, static_cast<std::uint64_t>(INT64_MAX))));
}

}  // namespace ringrelay::accounts
