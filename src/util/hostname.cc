#include <ringrelay/util/hostname.hh>

namespace ringrelay::util {

bool valid_hostname(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  std::size_t label = 0;
  char previous = '.';
  for (char c : name) {
    if (c == '.') {
      if (label == 0 || previous == '-') return false;
      label = 0;
    } else {
      bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
      if (!alnum && (c != '-' || label == 0)) return false;
      if (++label > 63) return false;
    }
    previous = c;
  }
  return label != 0 && previous != '-';
}

}  // namespace ringrelay::util
