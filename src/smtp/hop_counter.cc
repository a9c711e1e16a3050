#include <ringrelay/smtp/hop_counter.hh>

namespace ringrelay::smtp {
namespace {

constexpr std::string_view field = "received:";

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

}  // namespace

void hop_counter::feed(std::string_view body) {
  for (char c : body) {
    if (_done) return;
    if (++_seen > max_header_octets) {
      _done = true;
      return;
    }
    if (c == '\n') {
      // "\r\n" alone: the empty line that ends the header section.
      if (_column == 1) _done = true;
      _column = 0;
      _matched = 0;
      continue;
    }
    if (_matched >= 0 && _matched < static_cast<int>(field.size())) {
      if (lower(c) == field[static_cast<std::size_t>(_matched)]) {
        if (++_matched == static_cast<int>(field.size())) {
          ++_count;
          _matched = -1;
        }
      } else {
        _matched = -1;
      }
    }
    ++_column;
  }
}

}  // namespace ringrelay::smtp
