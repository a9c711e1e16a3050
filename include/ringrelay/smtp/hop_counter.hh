// smtp/hop_counter — counts the Received: header fields of a message while
// its body streams in, for the hop limit (RFC 5321 6.3: a message that has
// passed too many relays is in a loop).
//
// Fed the body in wire form, piece by piece in order, it looks only at the
// header section: line starts matching "Received:" (any case) are counted;
// continuation lines (starting with a space or tab) are not. It stops at
// the empty line that ends the header section, or after `max_header_octets`
// (a header section that long is not one a relay wrote), so it costs a
// loop over the header octets only, whatever the message's size. Dot-
// stuffing does not matter: a header line never starts with ".".
// Pure, resumable at any octet; one per session.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ringrelay::smtp {

class hop_counter {
 public:
  static constexpr std::size_t max_header_octets = 256 * 1024;

  void reset() { *this = hop_counter{}; }
  void feed(std::string_view body);
  std::uint32_t count() const { return _count; }
  // The header section has ended (or the octet budget is spent).
  bool done() const { return _done; }

 private:
  std::uint32_t _count = 0;
  std::size_t _seen = 0;
  std::uint32_t _column = 0;  // octets of the current line so far
  int _matched = 0;           // octets of "received:" matched; -1: not a match
  bool _done = false;
};

}  // namespace ringrelay::smtp
