// auth/verification_cache — recent successful logins, so that a client
// that logs in again and again (bulk senders open many sessions) costs a
// keyed hash instead of a PBKDF2 run.
//
// One cache per shard. It never stores a password: an entry holds the
// username, an HMAC-SHA256 tag of (username, password) under a random key
// made when the cache is built (it never leaves the process), and the
// SHA-256 of the account's encoded hash at the time of the login. A lookup
// hits only when the tag matches and the account's current encoded hash
// has the same digest; an entry whose hash changed (new password) is
// dropped on sight. At most `capacity` users are kept, the least recently
// used going first. Only successes are cached: a failed login always costs
// a full verification (and a wrong password cannot evict the right one).
//
// The caller still checks, before the cache, that the account exists and
// is enabled: the cache knows nothing about accounts.
//
// Threads: the owning shard only (no locking). Errors: the constructor
// throws std::runtime_error when the random source fails (startup); the
// rest cannot fail (a wolfCrypt error in HMAC-SHA256 is a broken invariant
// and aborts). Cost: make_key is about two microseconds (one HMAC and one
// SHA-256 over short inputs); lookup and insert are a hash-map probe.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <ringrelay/accounts/counters.hh>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ringrelay::auth {

class verification_cache {
 public:
  using digest = std::array<std::uint8_t, 32>;

  // What the cache knows of one login attempt; holds no password, so it
  // can wait in a verifier completion while the hash runs.
  struct key {
    std::string username;
    digest tag{};          // HMAC-SHA256(secret, len(username) username password)
    digest hash_digest{};  // SHA-256 of the encoded hash the attempt is checked against
  };

  static constexpr std::size_t default_capacity = 4096;

  explicit verification_cache(std::size_t capacity = default_capacity);

  key make_key(std::string_view username, std::string_view password,
               std::string_view encoded_hash) const;

  // True when this exact login succeeded before against the same encoded
  // hash; marks the entry as recently used. Drops the user's entry when
  // the encoded hash has changed since.
  bool lookup(const key& k);
  // Records a successful verification (replacing the user's older entry).
  void insert(const key& k);
  // Forgets the user (e.g. on disable; a changed hash needs no call).
  void erase(std::string_view username);

  std::size_t size() const { return _index.size(); }
  std::size_t capacity() const { return _entries.size(); }

 private:
  static constexpr std::uint32_t none = 0xffffffff;
  struct entry {
    key k;
    std::uint32_t prev = none;  // towards the most recently used
    std::uint32_t next = none;  // towards the least recently used
  };

  void unlink(std::uint32_t i);
  void push_front(std::uint32_t i);
  void remove(std::uint32_t i);

  digest _secret{};
  std::vector<entry> _entries;       // capacity slots, allocated once
  std::vector<std::uint32_t> _free;  // unused slots
  std::uint32_t _newest = none;
  std::uint32_t _oldest = none;
  std::unordered_map<std::string, std::uint32_t, accounts::name_hash, std::equal_to<>> _index;
};

}  // namespace ringrelay::auth
