// accounts/table — see the header for the contract; the format is in
// docs/accounts.md.
//
// The file is read in one forward pass with simdjson On Demand: each value
// is checked for its type and range as it is met (so a message can quote
// it), and the checks that need the whole record (required keys, duplicate
// usernames, the password format, which names the user) run when the
// record's object ends.
#include <simdjson.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <ringrelay/accounts/table.hh>
#include <ringrelay/accounts/timestamp.hh>
#include <ringrelay/config/config.hh>
#include <ringrelay/util/hostname.hh>
#include <utility>

namespace ringrelay::accounts {
namespace {

namespace od = simdjson::ondemand;
using config::config_error;

constexpr std::size_t max_username = 255;

constexpr std::string_view user_keys[] = {"username",    "password", "created_at",    "enabled",
                                          "daily_quota", "blocks",   "sender_domains"};
constexpr std::size_t n_user_keys = std::size(user_keys);

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string known_keys() {
  std::string out;
  for (auto k : user_keys) out += (out.empty() ? "" : ", ") + std::string(k);
  return out;
}

// Usernames appear in SASL exchanges, logs and the Received header: no
// spaces, no control characters.
bool valid_username(std::string_view name) {
  if (name.empty() || name.size() > max_username) return false;
  return std::none_of(name.begin(), name.end(), [](char ch) {
    auto c = static_cast<unsigned char>(ch);
    return c <= 0x20 || c == 0x7f;
  });
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// One record while it is read: which keys it had.
struct user_fields {
  account a;
  bool seen[n_user_keys] = {};
  bool has(std::string_view key) const {
    return seen[std::find(std::begin(user_keys), std::end(user_keys), key) - std::begin(user_keys)];
  }
};

using name_index = std::unordered_map<std::string, std::size_t, name_hash, std::equal_to<>>;

struct parsed_users {
  std::vector<account> accounts;
  name_index index;
};

class reader {
 public:
  reader(std::string source, std::string_view text, password_check check)
      : _source(std::move(source)), _input(text), _check(check) {}

  parsed_users read();

 private:
  [[noreturn]] void fail(const std::string& path, const std::string& what) const {
    throw config_error(_source + ": " + path + ": " + what);
  }
  [[noreturn]] void expected(const std::string& path, od::value& v, const std::string& what);
  [[noreturn]] void invalid_json(simdjson::error_code e);
  void check(simdjson::error_code e) {
    if (e != simdjson::SUCCESS) invalid_json(e);
  }
  od::json_type type_of(od::value& v) {
    od::json_type t{};
    check(v.type().get(t));
    return t;
  }

  void read_top(parsed_users& out);
  void read_users(od::value& users, parsed_users& out);
  user_fields read_user(od::value& v, const std::string& path);
  void read_field(std::string_view key, od::value& v, const std::string& path, account& a);
  void finish_user(const std::string& path, const user_fields& u, const parsed_users& out) const;

  std::string read_string(od::value& v, const std::string& path);
  std::int64_t read_integer(od::value& v, const std::string& path, std::int64_t min,
                            std::int64_t max);
  bool read_bool(od::value& v, const std::string& path);
  std::vector<std::string> read_domains(od::value& v, const std::string& path);

  std::string _source;
  simdjson::padded_string _input;
  od::parser _parser;
  od::document _doc;
  password_check _check;
};

// "line 3, column 9: " for where simdjson stopped, when it knows.
void reader::invalid_json(simdjson::error_code e) {
  std::string where;
  const char* at = nullptr;
  // "Ended early" is found while indexing the whole input: the cursor is
  // not where the problem is, so no position rather than a wrong one.
  if (e != simdjson::INCOMPLETE_ARRAY_OR_OBJECT &&
      _doc.current_location().get(at) == simdjson::SUCCESS) {
    std::string_view before(_input.data(), static_cast<std::size_t>(at - _input.data()));
    auto line = 1 + std::count(before.begin(), before.end(), '\n');
    auto nl = before.rfind('\n');
    auto column = before.size() - (nl == std::string_view::npos ? 0 : nl + 1) + 1;
    where = "line " + std::to_string(line) + ", column " + std::to_string(column) + ": ";
  }
  throw config_error(_source + ": " + where + "invalid JSON (" + simdjson::error_message(e) + ")");
}

void reader::expected(const std::string& path, od::value& v, const std::string& what) {
  std::string got;
  auto t = type_of(v);
  if (t == od::json_type::object) {
    got = "an object";
  } else if (t == od::json_type::array) {
    got = "an array";
  } else {
    std::string_view token = v.raw_json_token();
    while (!token.empty() && std::strchr(" \t\r\n", token.back())) token.remove_suffix(1);
    got = token.size() > 60 ? std::string(token.substr(0, 60)) + "..." : std::string(token);
  }
  fail(path, "expected " + what + ", got " + got);
}

std::string reader::read_string(od::value& v, const std::string& path) {
  if (type_of(v) != od::json_type::string) expected(path, v, "a string");
  std::string_view s;
  check(v.get_string().get(s));
  return std::string(s);
}

std::int64_t reader::read_integer(od::value& v, const std::string& path, std::int64_t min,
                                  std::int64_t max) {
  bool ok = type_of(v) == od::json_type::number;
  od::number_type nt{};
  if (ok) check(v.get_number_type().get(nt));
  ok = ok && nt == od::number_type::signed_integer;
  std::int64_t n = 0;
  if (ok) check(v.get_int64().get(n));
  if (!ok || n < min || n > max)
    expected(path, v, "an integer from " + std::to_string(min) + " to " + std::to_string(max));
  return n;
}

bool reader::read_bool(od::value& v, const std::string& path) {
  bool b = false;
  // "tru" has the type of a boolean until it is read.
  if (type_of(v) != od::json_type::boolean || v.get_bool().get(b) != simdjson::SUCCESS)
    expected(path, v, "true or false");
  return b;
}

std::vector<std::string> reader::read_domains(od::value& v, const std::string& path) {
  if (type_of(v) != od::json_type::array) expected(path, v, "an array of domain names");
  od::array array;
  check(v.get_array().get(array));
  std::vector<std::string> out;
  std::size_t i = 0;
  for (auto element : array) {
    od::value item;
    check(element.get(item));
    auto item_path = path + "." + std::to_string(i++);
    std::string domain = lower(read_string(item, item_path));
    // "acme.example." names the same domain (RFC 1034 3.1).
    if (domain.ends_with('.')) domain.pop_back();
    if (!util::valid_hostname(domain))
      expected(item_path, item, "a domain name such as \"example.com\"");
    if (std::find(out.begin(), out.end(), domain) == out.end()) out.push_back(std::move(domain));
  }
  if (i == 0) fail(path, "an empty list allows no sender domain: leave the key out to allow any");
  return out;
}

void reader::read_field(std::string_view key, od::value& v, const std::string& path, account& a) {
  if (key == "username") {
    a.username = read_string(v, path);
    if (!valid_username(a.username))
      expected(path, v, "a username of 1 to 255 octets without spaces or control characters");
  } else if (key == "password") {
    a.password = read_string(v, path);  // checked once the record is read: see finish_user
  } else if (key == "created_at") {
    auto t = parse_rfc3339(read_string(v, path));
    if (!t) expected(path, v, "an RFC 3339 UTC date-time such as \"2026-11-28T12:00:00Z\"");
    a.created_at = *t;
  } else if (key == "enabled") {
    a.enabled = read_bool(v, path);
  } else if (key == "daily_quota") {
    a.daily_quota =
        static_cast<std::uint64_t>(read_integer(v, path, 0, static_cast<std::int64_t>(max_usage)));
  } else if (key == "blocks") {
    a.blocks = read_integer(v, path, 0, static_cast<std::int64_t>(max_usage));
  } else if (key == "sender_domains") {
    a.sender_domains = read_domains(v, path);
  }
}

user_fields reader::read_user(od::value& v, const std::string& path) {
  if (type_of(v) != od::json_type::object) expected(path, v, "an object (one account)");
  od::object object;
  check(v.get_object().get(object));
  user_fields u;
  for (auto field : object) {
    std::string_view key;
    check(field.unescaped_key().get(key));
    auto known = std::find(std::begin(user_keys), std::end(user_keys), key);
    std::string key_path = path + "." + std::string(key);
    if (known == std::end(user_keys)) {
      throw config_error(_source + ": unknown key " + quote(key_path) + " (an account has " +
                         known_keys() + ")");
    }
    auto index = static_cast<std::size_t>(known - std::begin(user_keys));
    if (u.seen[index]) fail(key_path, "key repeated");
    u.seen[index] = true;
    od::value child;
    check(field.value().get(child));
    read_field(key, child, key_path, u.a);
  }
  return u;
}

// The checks that need the whole record.
void reader::finish_user(const std::string& path, const user_fields& u,
                         const parsed_users& out) const {
  for (auto key : {"username", "password", "created_at", "daily_quota"})
    if (!u.has(key)) fail(path, quote(key) + " is required (see docs/accounts.md)");
  const account& a = u.a;
  if (auto earlier = out.index.find(a.username); earlier != out.index.end()) {
    fail(path + ".username", "duplicate user " + quote(a.username) + " (also users." +
                                 std::to_string(earlier->second) + ")");
  }
  // The value is not quoted back: it is a password hash.
  if (auto problem = _check ? _check(a.password) : ""; !problem.empty())
    fail(path + ".password", problem + " (user " + quote(a.username) + ")");
}

void reader::read_users(od::value& users, parsed_users& out) {
  if (type_of(users) != od::json_type::array) expected("users", users, "an array of accounts");
  od::array array;
  check(users.get_array().get(array));
  for (auto element : array) {
    od::value v;
    check(element.get(v));
    const std::string path = "users." + std::to_string(out.accounts.size());
    user_fields u = read_user(v, path);
    finish_user(path, u, out);
    out.index.emplace(u.a.username, out.accounts.size());
    out.accounts.push_back(std::move(u.a));
  }
}

void reader::read_top(parsed_users& out) {
  od::json_type t{};
  check(_doc.type().get(t));
  if (t != od::json_type::object)
    throw config_error(_source + ": expected an object at the top level: {\"users\": [...]}");
  od::object top;
  check(_doc.get_object().get(top));
  bool seen_users = false;
  for (auto field : top) {
    std::string_view key;
    check(field.unescaped_key().get(key));
    if (key != "users")
      throw config_error(_source + ": unknown key " + quote(key) + " (the top level has users)");
    if (seen_users) fail("users", "key repeated");
    seen_users = true;
    od::value users;
    check(field.value().get(users));
    read_users(users, out);
  }
  if (!seen_users) fail("users", "required: an array of accounts ({\"users\": []} for none)");
}

parsed_users reader::read() {
  // A UTF-8 byte order mark is not JSON, but editors add it; blanking it
  // keeps error positions true to the file.
  if (std::string_view(_input).starts_with("\xEF\xBB\xBF")) std::memset(_input.data(), ' ', 3);
  check(_parser.iterate(_input).get(_doc));
  parsed_users out;
  read_top(out);
  // On Demand stops after the first complete value; anything but
  // whitespace after it ("{}{}") leaves the cursor inside the input.
  const char* at = nullptr;
  if (_doc.current_location().get(at) == simdjson::SUCCESS)
    invalid_json(simdjson::TRAILING_CONTENT);
  return out;
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

const account* table::find(std::string_view username) const {
  auto it = _index.find(username);
  return it == _index.end() ? nullptr : &_accounts[it->second];
}

std::shared_ptr<const table> from_json(std::string_view json, const std::string& source,
                                       counter_store& counters, password_check check_password) {
  parsed_users users = reader(source, json, check_password).read();
  // Slots are taken only once the whole file is good: a refused reload
  // leaves the store as it was.
  for (auto& a : users.accounts) a.counters = &counters.slot_for(a.username, a.blocks);
  auto out = std::make_shared<table>();
  out->_source = source;
  out->_accounts = std::move(users.accounts);
  out->_index = std::move(users.index);
  return out;
}

std::shared_ptr<const table> load(const std::string& path, counter_store& counters,
                                  password_check check_password) {
  return from_json(read_file(path), path, counters, check_password);
}

}  // namespace ringrelay::accounts
