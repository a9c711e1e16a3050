// auth/password — salted PBKDF2-HMAC-SHA256 password hashes (wolfCrypt).
//
// Encoded form, as users.json stores it (docs/accounts.md):
//   pbkdf2-sha256$ITERATIONS$SALT$HASH
// ITERATIONS in decimal (no leading zeros), SALT (8 to 64 octets) and HASH
// (32 octets, the PBKDF2 output) in canonical padded base64. The iteration
// count travels with each hash, so raising `default_iterations` later
// leaves old hashes valid.
//
// Cost: one hash or verification at `default_iterations` takes about 73 ms
// of one CPU on the reference machine (see the constant). That is far over
// a shard's ~50 µs budget: shards never call these; `auth::verifier` runs
// them on its worker threads.
//
// Threads: any (no shared state). Errors: `verify_password` reports a
// malformed encoding as `verify_result::malformed`; `hash_password` throws
// std::runtime_error if the kernel's random source or wolfCrypt fails and
// std::invalid_argument for an iteration count out of range (CLI code).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ringrelay::auth {

// 100,000 iterations: 72.5 ms measured on the project machine (AMD EPYC,
// wolfSSL 5.5.4 without assembly), inside the 50-100 ms target: slow for a
// guesser, bearable for a login that misses the cache. OWASP's 2023
// figure is 600,000; at 0.73 µs an iteration that would be 440 ms a login
// on this machine. bench/auth measures it.
inline constexpr std::uint32_t default_iterations = 100000;
// Bounds a stored hash must respect: below the minimum a hash is too weak
// to accept; above the maximum (about 7 s here) a corrupt file would stall
// a worker.
inline constexpr std::uint32_t min_iterations = 1000;
inline constexpr std::uint32_t max_iterations = 10000000;

inline constexpr std::size_t salt_size = 16;  // octets, for new hashes
inline constexpr std::size_t hash_size = 32;  // PBKDF2 output = SHA-256 size

// A new encoded hash of `password` with a fresh random salt.
std::string hash_password(std::string_view password, std::uint32_t iterations = default_iterations);

enum class verify_result : std::uint8_t {
  match,
  mismatch,
  malformed,  // `encoded` is not a hash this module can check
};

// Recomputes the hash of `password` with the salt and iteration count in
// `encoded` and compares in constant time.
verify_result verify_password(std::string_view password, std::string_view encoded);

// Spends the time of one verification at `default_iterations` and matches
// nothing: for a login whose account does not exist, so that it takes as
// long as a wrong password (SPEC.md §3).
void dummy_verification(std::string_view password);

// "" when `encoded` is a well-formed hash, else what is wrong, for
// messages. Fits accounts::password_check.
std::string password_hash_problem(std::string_view encoded);

}  // namespace ringrelay::auth
