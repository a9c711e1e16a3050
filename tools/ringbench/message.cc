#include "message.hh"

#include <cstdio>
#include <ringrelay/util/crc32c.hh>
#include <stdexcept>

namespace ringrelay::ringbench {
namespace {

constexpr std::size_t line_chars = 76;
constexpr const char* id_placeholder = "000-0000000000";

constexpr const char* words[] = {
    "relay",  "queue",    "message", "shard", "ring", "buffer", "mail",   "deliver",
    "sender", "domain",   "header",  "body",  "line", "octet",  "commit", "disk",
    "pipe",   "upstream", "receive", "bench", "load", "sink",   "verify", "quota",
    "the",    "a",        "of",      "and",   "to",   "in",     "is",     "for"};
constexpr std::size_t word_count = sizeof words / sizeof words[0];

// xorshift64: a fixed, fast sequence, so a size always gives the same body.
std::uint64_t next_random(std::uint64_t& s) {
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return s;
}

// Appends `n` characters of words and spaces, ending in a letter or a
// period, never beginning with a space.
void append_text(std::string& out, std::size_t n, std::uint64_t& rnd) {
  std::size_t start = out.size();
  while (out.size() - start < n) {
    if (out.size() != start) out.push_back(' ');
    std::uint64_t r = next_random(rnd);
    out += words[r % word_count];
    if ((r >> 20) % 9 == 0) out.push_back('.');
  }
  out.resize(start + n);
  if (n > 0 && out.back() == ' ') out.back() = 'x';
}

}  // namespace

std::string make_body(std::size_t size, std::uint64_t seed) {
  constexpr std::size_t full_line = line_chars + 2;
  std::string body;
  body.reserve(size);
  std::uint64_t rnd = seed | 1;
  // Invariant: what is left is 0 or at least 2 octets, so every line,
  // the last one too, ends with CRLF.
  for (std::size_t line = 0; body.size() < size; ++line) {
    std::size_t left = size - body.size();
    bool last = left <= full_line;
    std::size_t chars = last ? left - 2 : left - full_line == 1 ? line_chars - 1 : line_chars;
    // Lines that must be stuffed on the wire: a lone "." (the end of data
    // if a server forgot to unstuff), ".." and "." followed by text.
    if (!last && line % 50 == 17) {
      body.push_back('.');
    } else if (chars >= 2 && line % 50 == 33) {
      body += "..";
      append_text(body, chars - 2, rnd);
    } else if (chars >= 1 && line % 7 == 3) {
      body.push_back('.');
      append_text(body, chars - 1, rnd);
    } else {
      append_text(body, chars, rnd);
    }
    body += "\r\n";
  }
  return body;
}

std::string stuff_and_terminate(std::string_view body) {
  std::string out;
  out.reserve(body.size() + body.size() / 256 + 8);
  bool line_start = true;
  for (char c : body) {
    if (line_start && c == '.') out.push_back('.');
    out.push_back(c);
    line_start = c == '\n';
  }
  out += ".\r\n";
  return out;
}

void format_id(unsigned thread, std::uint64_t seq, char* out) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%03u-%010llu", thread % 1000,
                static_cast<unsigned long long>(seq % 10000000000ull));
  for (std::size_t i = 0; i < id_width; ++i) out[i] = buf[i];
}

namespace {

std::string header_block(const message_params& p, std::uint32_t crc,
                         std::vector<std::size_t>& id_offsets) {
  std::string h;
  h += "Date: " + p.date + "\r\n";
  h += "From: <" + p.from + ">\r\n";
  h += "To: <rcpt1@" + p.to_domain + ">\r\n";
  h += "Subject: ringbench message of " + std::to_string(p.size) + " octets\r\n";
  h += "Message-ID: <";
  id_offsets.push_back(h.size());
  h += id_placeholder;
  h += "." + p.run_id + "@ringbench.invalid>\r\n";
  h += "X-Ringbench-Id: ";
  id_offsets.push_back(h.size());
  h += id_placeholder;
  h += "\r\n";
  char sum[16];
  std::snprintf(sum, sizeof sum, "%08x", crc);
  h += "X-Ringbench-Sum: ";
  h += sum;
  h += "\r\n";
  h += "MIME-Version: 1.0\r\n";
  h += "Content-Type: text/plain; charset=us-ascii\r\n";
  h += "\r\n";
  return h;
}

}  // namespace

std::uint64_t min_message_size(const message_params& p) {
  std::vector<std::size_t> offsets;
  return header_block(p, 0, offsets).size() + 8;
}

message_template make_message(const message_params& p) {
  std::uint64_t min = min_message_size(p);
  if (p.size < min)
    throw std::invalid_argument("a message of " + std::to_string(p.size) +
                                " octets cannot hold ringbench's headers: use --size " +
                                std::to_string(min) + " or more");
  message_template m;
  std::vector<std::size_t> offsets;
  auto header_len = header_block(p, 0, offsets).size();
  std::string body = make_body(p.size - header_len, p.size);
  m.body_crc = util::crc32c(0, body.data(), body.size());
  m.header = header_block(p, m.body_crc, m.id_offsets);
  m.size = m.header.size() + body.size();
  m.wire_body = stuff_and_terminate(body);
  m.mail_plain = "MAIL FROM:<" + p.from + ">\r\n";
  m.mail_with_size = "MAIL FROM:<" + p.from + "> SIZE=" + std::to_string(m.size) + "\r\n";
  for (std::uint32_t i = 1; i <= p.rcpts; ++i) {
    m.rcpts_and_data += "RCPT TO:<rcpt" + std::to_string(i) + "@" + p.to_domain + ">\r\n";
    m.command_ends.push_back(m.rcpts_and_data.size());
  }
  m.rcpts_and_data += "DATA\r\n";
  m.command_ends.push_back(m.rcpts_and_data.size());
  return m;
}

}  // namespace ringrelay::ringbench
