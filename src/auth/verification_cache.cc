// auth/verification_cache — see the header for the contract.
#include <wolfssl/options.h>
// options.h first: it fixes wolfCrypt's struct layouts for this build.
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include <cstdlib>
#include <ringrelay/auth/verification_cache.hh>
#include <ringrelay/log/log.hh>

#include "secure.hh"

namespace ringrelay::auth {
namespace {

void require(int wolfcrypt_status, const char* what) {
  if (wolfcrypt_status == 0) return;
  RR_ERROR("verification_cache: wolfCrypt %s failed (%d)", what, wolfcrypt_status);
  std::abort();
}

const byte* octets(std::string_view s) {
  return reinterpret_cast<const byte*>(s.data());
}

bool equal_in_constant_time(const verification_cache::digest& a,
                            const verification_cache::digest& b) {
  volatile std::uint8_t diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) diff = diff | static_cast<std::uint8_t>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

verification_cache::verification_cache(std::size_t capacity)
    : _entries(capacity == 0 ? 1 : capacity) {
  detail::random_bytes(_secret.data(), _secret.size());
  _free.reserve(_entries.size());
  for (std::size_t i = _entries.size(); i-- > 0;) _free.push_back(static_cast<std::uint32_t>(i));
  _index.reserve(_entries.size());
}

verification_cache::key verification_cache::make_key(std::string_view username,
                                                     std::string_view password,
                                                     std::string_view encoded_hash) const {
  key k;
  k.username.assign(username);
  // The username's length goes first so that ("ab", "c") and ("a", "bc")
  // cannot produce the same tag.
  const std::uint64_t length = username.size();
  Hmac hmac;
  require(wc_HmacInit(&hmac, nullptr, INVALID_DEVID), "HmacInit");
  require(wc_HmacSetKey(&hmac, WC_SHA256, _secret.data(), _secret.size()), "HmacSetKey");
  require(wc_HmacUpdate(&hmac, reinterpret_cast<const byte*>(&length), sizeof length),
          "HmacUpdate");
  require(wc_HmacUpdate(&hmac, octets(username), static_cast<word32>(username.size())),
          "HmacUpdate");
  require(wc_HmacUpdate(&hmac, octets(password), static_cast<word32>(password.size())),
          "HmacUpdate");
  require(wc_HmacFinal(&hmac, k.tag.data()), "HmacFinal");
  wc_HmacFree(&hmac);
  require(wc_Sha256Hash(octets(encoded_hash), static_cast<word32>(encoded_hash.size()),
                        k.hash_digest.data()),
          "Sha256Hash");
  return k;
}

bool verification_cache::lookup(const key& k) {
  auto it = _index.find(k.username);
  if (it == _index.end()) return false;
  const std::uint32_t i = it->second;
  if (_entries[i].k.hash_digest != k.hash_digest) {
    remove(i);  // the password was changed: this entry can never hit again
    return false;
  }
  if (!equal_in_constant_time(_entries[i].k.tag, k.tag)) return false;
  unlink(i);
  push_front(i);
  return true;
}

void verification_cache::insert(const key& k) {
  if (auto it = _index.find(k.username); it != _index.end()) {
    entry& e = _entries[it->second];
    e.k.tag = k.tag;
    e.k.hash_digest = k.hash_digest;
    unlink(it->second);
    push_front(it->second);
    return;
  }
  if (_free.empty()) remove(_oldest);
  const std::uint32_t i = _free.back();
  _free.pop_back();
  _entries[i].k = k;
  _index.emplace(k.username, i);
  push_front(i);
}

void verification_cache::erase(std::string_view username) {
  if (auto it = _index.find(username); it != _index.end()) remove(it->second);
}

void verification_cache::unlink(std::uint32_t i) {
  entry& e = _entries[i];
  (e.prev == none ? _newest : _entries[e.prev].next) = e.next;
  (e.next == none ? _oldest : _entries[e.next].prev) = e.prev;
  e.prev = e.next = none;
}

void verification_cache::push_front(std::uint32_t i) {
  entry& e = _entries[i];
  e.prev = none;
  e.next = _newest;
  if (_newest != none) _entries[_newest].prev = i;
  _newest = i;
  if (_oldest == none) _oldest = i;
}

void verification_cache::remove(std::uint32_t i) {
  unlink(i);
  _index.erase(_entries[i].k.username);
  _entries[i].k = {};
  _free.push_back(i);
}

}  // namespace ringrelay::auth
