// auth/password — see the header for the contract.
#include <wolfssl/options.h>
// options.h first: it fixes wolfCrypt's struct layouts for this build.
#include <string.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/pwdbased.h>

#include <charconv>
#include <ringrelay/auth/base64.hh>
#include <ringrelay/auth/password.hh>
#include <stdexcept>

#include "secure.hh"

namespace ringrelay::auth {
namespace {

constexpr std::string_view scheme = "pbkdf2-sha256$";
constexpr std::size_t min_salt = 8;
constexpr std::size_t max_salt = 64;

struct decoded_hash {
  std::uint32_t iterations = 0;
  std::string salt;
  std::string hash;
};

// The next "$"-separated field of `rest`; the last field runs to the end.
std::string_view next_field(std::string_view& rest) {
  const auto end = rest.find('$');
  const auto field = rest.substr(0, end);
  rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
  return field;
}

// "" when `encoded` decodes into `out`, else what is wrong.
std::string decode(std::string_view encoded, decoded_hash& out) {
  const std::string format =
      "expected pbkdf2-sha256$ITERATIONS$SALT$HASH (ringrelayctl user passwd makes one)";
  if (!encoded.starts_with(scheme)) return format;
  std::string_view rest = encoded.substr(scheme.size());
  const auto iterations = next_field(rest);
  const auto salt = next_field(rest);
  const auto hash = next_field(rest);
  if (iterations.empty() || salt.empty() || hash.empty() || !rest.empty() || encoded.back() == '$')
    return format;
  const auto [end, ec] =
      std::from_chars(iterations.data(), iterations.data() + iterations.size(), out.iterations);
  if (ec != std::errc{} || end != iterations.data() + iterations.size() || iterations[0] == '0' ||
      out.iterations < min_iterations || out.iterations > max_iterations) {
    return "the iteration count must be a number from " + std::to_string(min_iterations) + " to " +
           std::to_string(max_iterations);
  }
  if (!base64_decode(salt, out.salt) || out.salt.size() < min_salt || out.salt.size() > max_salt)
    return "the salt must be " + std::to_string(min_salt) + " to " + std::to_string(max_salt) +
           " octets in base64";
  if (!base64_decode(hash, out.hash) || out.hash.size() != hash_size)
    return "the hash must be " + std::to_string(hash_size) + " octets in base64";
  return "";
}

// PBKDF2-HMAC-SHA256 of `password` into out[hash_size]; false on a
// wolfCrypt error.
bool derive(std::string_view password, std::string_view salt, std::uint32_t iterations,
            unsigned char* out) {
  // wolfCrypt takes a pointer even for an empty password.
  static const unsigned char empty = 0;
  const auto* pw =
      password.empty() ? &empty : reinterpret_cast<const unsigned char*>(password.data());
  return wc_PBKDF2(out, pw, static_cast<int>(password.size()),
                   reinterpret_cast<const unsigned char*>(salt.data()),
                   static_cast<int>(salt.size()), static_cast<int>(iterations),
                   static_cast<int>(hash_size), WC_SHA256) == 0;
}

// Compares without an early exit, so the time does not tell how many
// leading octets matched. (wolfCrypt's ConstantCompare is not exported.)
bool equal_in_constant_time(const unsigned char* a, const unsigned char* b, std::size_t n) {
  volatile unsigned char diff = 0;
  for (std::size_t i = 0; i < n; ++i) diff = diff | static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

std::string hash_password(std::string_view password, std::uint32_t iterations) {
  if (iterations < min_iterations || iterations > max_iterations)
    throw std::invalid_argument("iterations must be from " + std::to_string(min_iterations) +
                                " to " + std::to_string(max_iterations));
  std::string salt(salt_size, '\0');
  detail::random_bytes(salt.data(), salt.size());
  unsigned char hash[hash_size];
  if (!derive(password, salt, iterations, hash))
    throw std::runtime_error("wolfCrypt PBKDF2 failed");
  std::string out(scheme);
  out += std::to_string(iterations) + "$" + base64_encode(salt) + "$" +
         base64_encode(std::string_view(reinterpret_cast<const char*>(hash), hash_size));
  explicit_bzero(hash, sizeof hash);
  return out;
}

verify_result verify_password(std::string_view password, std::string_view encoded) {
  decoded_hash stored;
  if (!decode(encoded, stored).empty()) return verify_result::malformed;
  unsigned char computed[hash_size];
  if (!derive(password, stored.salt, stored.iterations, computed)) return verify_result::malformed;
  const bool same = equal_in_constant_time(
      computed, reinterpret_cast<const unsigned char*>(stored.hash.data()), hash_size);
  explicit_bzero(computed, sizeof computed);
  return same ? verify_result::match : verify_result::mismatch;
}

void dummy_verification(std::string_view password) {
  static const std::string salt(salt_size, '\0');
  unsigned char computed[hash_size];
  derive(password, salt, default_iterations, computed);
  explicit_bzero(computed, sizeof computed);
}

std::string password_hash_problem(std::string_view encoded) {
  decoded_hash stored;
  return decode(encoded, stored);
}

}  // namespace ringrelay::auth
