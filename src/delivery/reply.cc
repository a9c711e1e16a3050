#include <algorithm>
#include <cstring>
#include <ringrelay/delivery/reply.hh>

namespace ringrelay::delivery {
namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// Strips the line end: CRLF, or a bare LF (see the header).
std::string_view strip_line_end(std::string_view line) {
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

// Length of "1*3DIGIT" at the start of `s`, 0 when it is not there.
std::size_t digits(std::string_view s) {
  std::size_t n = 0;
  while (n < s.size() && n < 3 && is_digit(s[n])) ++n;
  return n;
}

// RFC 3463 section 2: status-code = class "." subject "." detail, class one
// of 2, 4, 5 and equal to the reply code's class (RFC 2034 section 4), the
// other two 1*3DIGIT. It must be followed by SP or end the line.
std::string_view enhanced_code(std::uint16_t code, std::string_view text) {
  if (text.size() < 5 || text[0] != static_cast<char>('0' + code / 100) || text[1] != '.') {
    return {};
  }
  std::size_t pos = 2;
  std::size_t n = digits(text.substr(pos));
  if (n == 0 || pos + n >= text.size() || text[pos + n] != '.') return {};
  pos += n + 1;
  n = digits(text.substr(pos));
  if (n == 0) return {};
  pos += n;
  if (pos < text.size() && text[pos] != ' ') return {};
  return text.substr(0, pos);
}

}  // namespace

std::size_t reply::line_count() const {
  std::size_t n = 0;
  for (char c : raw) n += c == '\n';
  return n;
}

std::string_view reply::line_text(std::size_t i) const {
  std::string_view rest = raw;
  for (; i > 0; --i) {
    std::size_t nl = rest.find('\n');
    if (nl == std::string_view::npos) return {};
    rest.remove_prefix(nl + 1);
  }
  std::string_view line = strip_line_end(rest.substr(0, rest.find('\n')));
  return line.size() > 4 ? line.substr(4) : std::string_view{};
}

std::string reply::one_line() const {
  std::string out = std::to_string(code);
  if (!enhanced.empty()) out.append(" ").append(enhanced);
  const std::size_t lines = line_count();
  for (std::size_t i = 0; i < lines; ++i) {
    std::string_view text = line_text(i);
    if (!enhanced.empty() && text.starts_with(enhanced) &&
        (text.size() == enhanced.size() || text[enhanced.size()] == ' ')) {
      text.remove_prefix(std::min(text.size(), enhanced.size() + 1));
    }
    if (text.empty()) continue;
    out.push_back(' ');
    for (unsigned char c : text) out.push_back(c < 0x20 || c == 0x7f ? ' ' : static_cast<char>(c));
  }
  return out;
}

reply make_reply(std::uint16_t code, std::string_view enhanced, std::string_view text) {
  reply r;
  r.code = code;
  r.enhanced = enhanced;
  r.raw = std::to_string(code);
  r.raw.append(" ").append(enhanced).append(" ").append(text).append("\r\n");
  return r;
}

void reply_parser::reset() {
  _reply = {};
  _line_start = 0;
  _done = false;
  _failed = false;
  _error = {};
}

reply_parser::result reply_parser::fail(std::string_view why) {
  _failed = true;
  _error = why;
  return {status::error, 0};
}

reply_parser::result reply_parser::feed(std::string_view in) {
  if (_failed) return {status::error, 0};
  if (_done) {
    _reply.code = 0;
    _reply.enhanced.clear();
    _reply.raw.clear();
    _line_start = 0;
    _done = false;
  }
  std::size_t used = 0;
  while (used < in.size()) {
    const void* nl = std::memchr(in.data() + used, '\n', in.size() - used);
    const std::size_t end = nl ? static_cast<const char*>(nl) - in.data() + 1 : in.size();
    const std::size_t len = end - used;
    // Checked before buffering, so a server that never ends its line cannot
    // make us hold more than one line's worth of bytes.
    if (_reply.raw.size() - _line_start + len > _limits.max_line) {
      return fail("reply line longer than the limit");
    }
    if (_reply.raw.size() + len > _limits.max_reply) return fail("reply longer than the limit");
    _reply.raw.append(in.data() + used, len);
    used = end;
    if (!nl) break;
    bool last = false;
    if (!end_line(last)) return {status::error, used};
    if (last) {
      _done = true;
      _reply.enhanced = enhanced_code(_reply.code, _reply.line_text(0));
      return {status::complete, used};
    }
    _line_start = _reply.raw.size();
  }
  return {status::need_more, used};
}

bool reply_parser::end_line(bool& last) {
  std::string_view line = strip_line_end(std::string_view(_reply.raw).substr(_line_start));
  if (line.size() < 3 || !is_digit(line[0]) || !is_digit(line[1]) || !is_digit(line[2])) {
    fail("reply line does not start with a three-digit code");
    return false;
  }
  const auto code =
      static_cast<std::uint16_t>((line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0'));
  // RFC 5321 4.2.1: SMTP uses 2yz to 5yz only.
  if (code < 200 || code > 599) {
    fail("reply code outside 200-599");
    return false;
  }
  // RFC 5321 4.2: "-" continues the reply; SP or the end of the line ends it.
  if (line.size() == 3 || line[3] == ' ') {
    last = true;
  } else if (line[3] != '-') {
    fail("reply code not followed by a space or a hyphen");
    return false;
  }
  // RFC 5321 4.2.1: every line of a multiline reply carries the same code.
  if (_line_start == 0) {
    _reply.code = code;
  } else if (code != _reply.code) {
    fail("reply lines with different codes");
    return false;
  }
  return true;
}

}  // namespace ringrelay::delivery
