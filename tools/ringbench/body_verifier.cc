#include "body_verifier.hh"

#include <algorithm>
#include <cstring>
#include <ringrelay/util/crc32c.hh>

namespace ringrelay::ringbench {
namespace {

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    char a = s[i], b = prefix[i];
    if (a >= 'A' && a <= 'Z') a = static_cast<char>(a - 'A' + 'a');
    if (b >= 'A' && b <= 'Z') b = static_cast<char>(b - 'A' + 'a');
    if (a != b) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

bool parse_hex32(std::string_view s, std::uint32_t& out) {
  if (s.empty() || s.size() > 8) return false;
  std::uint32_t v = 0;
  for (char c : s) {
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    if (d < 0) return false;
    v = v << 4 | static_cast<std::uint32_t>(d);
  }
  out = v;
  return true;
}

}  // namespace

void body_verifier::reset(framing f) {
  _framing = f;
  _in_body = false;
  _line_start = true;
  _line_len = 0;
  _have_sum = false;
  _expected = 0;
  _crc = 0;
  _id_len = 0;
}

void body_verifier::feed(std::string_view in) {
  if (!_in_body) feed_header(in);
  if (_in_body && !in.empty()) feed_body(in);
}

// Header lines: the first `keep` octets of each go to `_line`, and each line
// end is examined there.
void body_verifier::feed_header(std::string_view& in) {
  while (!in.empty() && !_in_body) {
    if (_line_start) {
      _line_start = false;
      if (in.front() == '.' && _framing == framing::stuffed) {
        in.remove_prefix(1);
        continue;
      }
    }
    const void* nl = std::memchr(in.data(), '\n', in.size());
    std::size_t n =
        nl ? static_cast<std::size_t>(static_cast<const char*>(nl) - in.data()) : in.size();
    if (_line_len < keep) std::memcpy(_line + _line_len, in.data(), std::min(n, keep - _line_len));
    _line_len += n;
    if (!nl) {
      in = {};
      return;
    }
    in.remove_prefix(n + 1);
    end_header_line();
    _line_start = true;
  }
}

void body_verifier::end_header_line() {
  std::string_view line(_line, std::min(_line_len, keep));
  if (_line_len == 0 || (_line_len == 1 && line[0] == '\r')) {
    _in_body = true;
    return;
  }
  constexpr std::string_view sum_name = "x-ringbench-sum:";
  constexpr std::string_view id_name = "x-ringbench-id:";
  if (starts_with_nocase(line, sum_name) && _line_len <= keep) {
    _have_sum = parse_hex32(trim(line.substr(sum_name.size())), _expected);
  } else if (starts_with_nocase(line, id_name)) {
    auto v = trim(line.substr(id_name.size()));
    _id_len = std::min(v.size(), sizeof _id);
    std::memcpy(_id, v.data(), _id_len);
  }
  _line_len = 0;
}

// The body: CRC-32C in long runs, split only where a line starts with the
// stuffing dot to leave it out.
void body_verifier::feed_body(std::string_view in) {
  if (_framing == framing::raw) {
    _crc = util::crc32c(_crc, in.data(), in.size());
    return;
  }
  while (!in.empty()) {
    if (_line_start) {
      _line_start = false;
      if (in.front() == '.') {
        in.remove_prefix(1);
        continue;
      }
    }
    // Sum up to the next line end that is followed by a dot (or up to the
    // end of the input, where the next line's first octet is unknown).
    std::size_t from = 0;
    std::size_t run = in.size();
    for (;;) {
      const void* nl = std::memchr(in.data() + from, '\n', in.size() - from);
      if (!nl) break;
      std::size_t at = static_cast<std::size_t>(static_cast<const char*>(nl) - in.data());
      if (at + 1 == in.size()) {
        _line_start = true;
        break;
      }
      if (in[at + 1] == '.') {
        run = at + 1;
        _line_start = true;
        break;
      }
      from = at + 1;
    }
    _crc = util::crc32c(_crc, in.data(), run);
    in.remove_prefix(run);
  }
}

body_verifier::verdict body_verifier::finish() const {
  if (!_in_body || !_have_sum) return verdict::unverified;
  return _crc == _expected ? verdict::ok : verdict::mismatch;
}

}  // namespace ringrelay::ringbench
