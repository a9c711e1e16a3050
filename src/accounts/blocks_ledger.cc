// accounts/blocks_ledger — see the header for the contract; the format is
// in docs/accounts.md ("Blocks added").
//
// The file is small (one entry per account that was ever given blocks) and
// read once, at startup, so the reader favours clear messages: each value
// is checked as it is met and quoted back when it is wrong. It is written
// whole on every `add`, the way ringrelayctl writes users.json: a reader,
// or a crash, sees the old file or the new one, never a mix.
#include <fcntl.h>
#include <simdjson.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <ringrelay/accounts/blocks_ledger.hh>
#include <ringrelay/config/config.hh>
#include <ringrelay/config/json_text.hh>
#include <ringrelay/log/log.hh>
#include <ringrelay/util/file.hh>
#include <stdexcept>

namespace ringrelay::accounts {
namespace {

namespace od = simdjson::ondemand;
using config::config_error;
using config::json_quote;

constexpr std::int64_t int64_max = std::numeric_limits<std::int64_t>::max();
constexpr const char* shape = R"({"version": 1, "added": {"USER": BLOCKS, ...}})";

class reader {
 public:
  reader(const std::string& path, std::string_view text) : _path(path), _input(text) {}

  std::map<std::string, std::int64_t, std::less<>> read();

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw config_error(_path + ": " + what + " (the ledger of ringrelayctl blocks add: " + shape +
                       ", docs/accounts.md)");
  }
  void check(simdjson::error_code e) const {
    if (e != simdjson::SUCCESS)
      fail("invalid JSON (" + std::string(simdjson::error_message(e)) + ")");
  }
  od::json_type type_of(od::value& v) const {
    od::json_type t{};
    check(v.type().get(t));
    return t;
  }
  // The value as the message quotes it.
  std::string got(od::value& v) const;
  // An integer from `min` to INT64_MAX, else nullopt.
  std::optional<std::int64_t> integer(od::value& v, std::int64_t min) const;
  void read_version(od::value& v) const;
  std::map<std::string, std::int64_t, std::less<>> read_added(od::value& v) const;

  std::string _path;
  simdjson::padded_string _input;
};

std::string reader::got(od::value& v) const {
  const auto t = type_of(v);
  if (t == od::json_type::object) return "an object";
  if (t == od::json_type::array) return "an array";
  std::string_view token = v.raw_json_token();
  while (!token.empty() && std::strchr(" \t\r\n", token.back())) token.remove_suffix(1);
  return token.size() > 60 ? std::string(token.substr(0, 60)) + "..." : std::string(token);
}

std::optional<std::int64_t> reader::integer(od::value& v, std::int64_t min) const {
  if (type_of(v) != od::json_type::number) return std::nullopt;
  od::number_type nt{};
  check(v.get_number_type().get(nt));
  std::int64_t n = 0;
  if (nt != od::number_type::signed_integer || v.get_int64().get(n) != simdjson::SUCCESS || n < min)
    return std::nullopt;
  return n;
}

void reader::read_version(od::value& v) const {
  if (integer(v, 1) != 1)
    fail("version: expected 1, got " + got(v) +
         " (a ledger written by a newer ringrelay? run that version)");
}

std::map<std::string, std::int64_t, std::less<>> reader::read_added(od::value& v) const {
  if (type_of(v) != od::json_type::object)
    fail("added: expected an object of usernames and block totals, got " + got(v));
  od::object object;
  check(v.get_object().get(object));
  std::map<std::string, std::int64_t, std::less<>> out;
  for (auto field : object) {
    std::string_view key;
    check(field.unescaped_key().get(key));
    std::string user(key);
    if (user.empty()) fail("added: an empty username");
    if (out.contains(user)) fail("added: user " + json_quote(user) + " repeated");
    od::value total;
    check(field.value().get(total));
    auto n = integer(total, 0);
    if (!n)
      fail("added: user " + json_quote(user) + ": expected an integer from 0 to " +
           std::to_string(int64_max) + ", got " + got(total));
    out.emplace(std::move(user), *n);
  }
  return out;
}

std::map<std::string, std::int64_t, std::less<>> reader::read() {
  od::parser parser;
  od::document doc;
  check(parser.iterate(_input).get(doc));
  od::json_type t{};
  check(doc.type().get(t));
  if (t != od::json_type::object) fail("expected an object at the top level");
  od::object top;
  check(doc.get_object().get(top));
  bool seen_version = false;
  bool seen_added = false;
  std::map<std::string, std::int64_t, std::less<>> out;
  for (auto field : top) {
    std::string_view key;
    check(field.unescaped_key().get(key));
    if (key != "version" && key != "added")
      fail("unknown key " + json_quote(key) + " (the top level has version, added)");
    bool& seen = key == "version" ? seen_version : seen_added;
    if (seen) fail("key " + json_quote(key) + " repeated");
    seen = true;
    od::value v;
    check(field.value().get(v));
    if (key == "version")
      read_version(v);
    else
      out = read_added(v);
  }
  if (!seen_version) fail("\"version\" is required");
  if (!seen_added) fail("\"added\" is required");
  // On Demand stops after the first value: anything but whitespace after
  // it leaves the cursor inside the input.
  const char* at = nullptr;
  if (doc.current_location().get(at) == simdjson::SUCCESS) check(simdjson::TRAILING_CONTENT);
  return out;
}

// The file's text, or nullopt when there is no file.
std::optional<std::string> read_text(const std::string& path) {
  std::unique_ptr<std::FILE, decltype(&std::fclose)> f(std::fopen(path.c_str(), "rb"), std::fclose);
  if (!f && errno == ENOENT) return std::nullopt;
  if (!f) throw config_error(path + ": cannot open: " + std::strerror(errno));
  std::string text;
  char buf[65536];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f.get())) > 0) text.append(buf, n);
  if (std::ferror(f.get())) throw config_error(path + ": cannot read: " + std::strerror(errno));
  return text;
}

std::string render(const std::map<std::string, std::int64_t, std::less<>>& added) {
  std::string out = "{\n  \"version\": 1,\n  \"added\": {";
  const char* separator = "\n";
  for (const auto& [user, n] : added) {
    out += separator + std::string("    ") + json_quote(user) + ": " + std::to_string(n);
    separator = ",\n";
  }
  return out + (added.empty() ? "}\n}\n" : "\n  }\n}\n");
}

}  // namespace

std::unique_ptr<blocks_ledger> blocks_ledger::load(const std::string& path) {
  auto text = read_text(path);
  totals added = text ? reader(path, *text).read() : totals{};
  return std::unique_ptr<blocks_ledger>(new blocks_ledger(path, std::move(added)));
}

std::int64_t blocks_ledger::add(std::string_view username, std::int64_t n) {
  if (username.empty()) throw std::invalid_argument("blocks ledger: a username is required");
  if (n < 1 || n > max_blocks_added)
    throw std::invalid_argument("blocks ledger: " + std::to_string(n) + " blocks: expected 1 to " +
                                std::to_string(max_blocks_added));
  std::lock_guard lock(_mutex);
  auto it = _added.find(username);
  const std::int64_t before = it == _added.end() ? 0 : it->second;
  if (before > int64_max - n)
    throw std::invalid_argument("blocks ledger: user " + json_quote(username) + " has " +
                                std::to_string(before) + " blocks added; " + std::to_string(n) +
                                " more would pass " + std::to_string(int64_max));
  // The file gets the new totals first: memory changes only once they are
  // on disk, so a failed write leaves both as they were.
  totals next = _added;
  next[std::string(username)] = before + n;
  // After the rename a failed directory fsync is only logged: the new file
  // is in place, and what the server holds must match it.
  if (!util::write_file_atomically(_path, render(next)))
    RR_WARN(
        "blocks ledger %s: saved, but the fsync of its directory failed: %s; the addition "
        "may not survive a crash",
        _path.c_str(), std::strerror(errno));
  _added = std::move(next);
  return before + n;
}

std::int64_t blocks_ledger::added(std::string_view username) const {
  std::lock_guard lock(_mutex);
  auto it = _added.find(username);
  return it == _added.end() ? 0 : it->second;
}

std::vector<std::pair<std::string, std::int64_t>> blocks_ledger::all() const {
  std::lock_guard lock(_mutex);
  return {_added.begin(), _added.end()};
}

}  // namespace ringrelay::accounts
