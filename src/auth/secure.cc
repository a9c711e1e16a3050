#include "secure.hh"

#include <string.h>
#include <sys/random.h>

#include <cerrno>
#include <stdexcept>

namespace ringrelay::auth::detail {

void random_bytes(void* out, std::size_t size) {
  auto* p = static_cast<unsigned char*>(out);
  while (size > 0) {
    // getrandom may return fewer octets than asked (large requests) or be
    // interrupted by a signal before it starts.
    const ssize_t n = getrandom(p, size, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(std::string("getrandom failed: ") + strerror(errno));
    }
    p += n;
    size -= static_cast<std::size_t>(n);
  }
}

void wipe(std::string& s) {
  // Growing to the capacity never reallocates, and makes every owned
  // octet part of the string, so zeroing them is defined behaviour.
  s.resize(s.capacity());
  explicit_bzero(s.data(), s.size());
  s.clear();
}

}  // namespace ringrelay::auth::detail
