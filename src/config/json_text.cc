#include <simdjson.h>

#include <cstdio>
#include <ringrelay/config/json_text.hh>

namespace ringrelay::config {

std::string json_quote(std::string_view s) {
  const bool utf8 = simdjson::validate_utf8(s.data(), s.size());
  std::string out = "\"";
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f || (c >= 0x80 && !utf8)) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

}  // namespace ringrelay::config
