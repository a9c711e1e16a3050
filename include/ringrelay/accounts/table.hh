// accounts/table — the accounts of conf/users.json, as an immutable table.
//
// `load` reads the file with simdjson On Demand, checks every value and
// builds a table whose lookup by username is one hash probe. The format,
// key by key, is in docs/accounts.md:
//   {"users": [{"username": "acme",
//               "password": "pbkdf2-sha256$100000$<salt>$<hash>",
//               "created_at": "2026-11-28T12:00:00Z",
//               "enabled": true, "daily_quota": 10000, "blocks": 0,
//               "sender_domains": ["acme.example"]}]}
// Any problem — unreadable file, bad JSON, unknown or repeated key, wrong
// type, out-of-range value, duplicate username, a password the checker
// refuses — throws config::config_error naming the file and the key, e.g.
//   conf/users.json: users.3.daily_quota: expected an integer from 0 to 1099511627775, got "10k"
// A reload that throws leaves the running table as it was: the caller keeps
// its old pointer.
//
// Each account points at its counter slot in the `counter_store` the
// loader was given, so the store must outlive every table built from it.
//
// Threads: `load` is startup and reload code (it allocates, reads a file and
// throws); run it off the shards and hand the result to them whole as a
// `std::shared_ptr<const table>`. A built table is immutable: any thread
// may read it at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <ringrelay/accounts/counters.hh>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ringrelay::accounts {

struct account {
  std::string username;         // 1 to 255 octets, no spaces or control characters
  std::string password;         // the encoded hash, as in the file
  std::int64_t created_at = 0;  // Unix seconds (UTC)
  bool enabled = true;
  std::uint64_t daily_quota = 0;            // relays per day, at most max_usage
  std::int64_t blocks = 0;                  // the file's block grant (counter_store::slot_for)
  std::vector<std::string> sender_domains;  // lower case; empty = any domain
  counter_slot* counters = nullptr;         // never null in a loaded table
};

// Checks a "password" value; returns "" when it is well formed, else what
// is wrong ("expected pbkdf2-sha256$ITERATIONS$SALT$HASH"). The server and
// ringrelayctl pass auth::password_hash_problem: the hash format belongs to
// the auth module, which sits above this one. nullptr accepts any string
// (a malformed hash then fails every login, and the verifier logs it).
using password_check = std::string (*)(std::string_view encoded);

class table {
 public:
  // The account named exactly `username` (case-sensitive), or nullptr.
  const account* find(std::string_view username) const;

  // Every account, in file order.
  std::span<const account> all() const { return _accounts; }
  std::size_t size() const { return _accounts.size(); }
  // The file the table came from, for messages.
  const std::string& source() const { return _source; }

 private:
  friend std::shared_ptr<const table> from_json(std::string_view, const std::string&,
                                                counter_store&, password_check);
  std::string _source;
  std::vector<account> _accounts;
  std::unordered_map<std::string, std::size_t, name_hash, std::equal_to<>> _index;
};

// Reads and checks `path`. Throws config::config_error.
std::shared_ptr<const table> load(const std::string& path, counter_store& counters,
                                  password_check check_password);

// Same with the file's contents in memory; `source` names them in messages.
std::shared_ptr<const table> from_json(std::string_view json, const std::string& source,
                                       counter_store& counters, password_check check_password);

}  // namespace ringrelay::accounts
