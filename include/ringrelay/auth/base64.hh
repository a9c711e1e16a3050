// auth/base64 — strict RFC 4648 section 4 base64, as SASL (RFC 4954 §4) and
// the password hash format use it.
//
// The decoder accepts only the canonical encoding: the standard alphabet,
// a length that is a multiple of four, "=" padding only at the end, and
// zero bits in the padding (RFC 4648 3.5 allows a decoder to refuse
// otherwise, and refusing means one string per value). No whitespace, no
// line breaks. wolfCrypt's Base64_Decode is not used because it skips
// whitespace and accepts truncated input.
//
// Pure functions, any thread; a malformed input is reported by `false`.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace ringrelay::auth {

// Appends the decoded octets of `in` to `out`. Returns false, with `out`
// holding an unspecified prefix, when `in` is not canonical base64.
bool base64_decode(std::string_view in, std::string& out);

// The padded encoding of `in`, without line breaks.
std::string base64_encode(std::string_view in);

// Octets that `base64_decode` yields for an input of `encoded_size`
// characters ending in `padding` "=" signs.
constexpr std::size_t base64_decoded_size(std::size_t encoded_size, std::size_t padding) {
  return encoded_size / 4 * 3 - padding;
}

}  // namespace ringrelay::auth
