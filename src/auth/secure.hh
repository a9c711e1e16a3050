// auth/secure — random octets and the wiping of secrets. Private to the
// auth module.
//
// `random_bytes` reads the kernel's CSPRNG (getrandom(2)); it blocks only
// before the kernel's pool is first seeded, early in boot, and throws
// std::runtime_error when the call fails (its callers are constructors
// and CLI code). `wipe` zeroes every octet a string owns, not only its
// size, then empties it: a moved-from or shortened std::string may still
// hold a password in its buffer (short strings live inside the object).
// Any thread.
#pragma once

#include <cstddef>
#include <string>

namespace ringrelay::auth::detail {

void random_bytes(void* out, std::size_t size);

void wipe(std::string& s);

}  // namespace ringrelay::auth::detail
