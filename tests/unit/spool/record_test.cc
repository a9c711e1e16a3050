#include <gtest/gtest.h>

#include <ringrelay/spool/record.hh>
#include <ringrelay/util/crc32c.hh>
#include <string>
#include <vector>

namespace ringrelay::spool {
namespace {

std::span<const char> span_of(const std::string& s) {
  return {s.data(), s.size()};
}

TEST(record, padding_keeps_every_record_8_aligned) {
  struct {
    std::size_t len, padding, size;
  } cases[] = {
      {0, 0, 32}, {1, 7, 40}, {7, 1, 40}, {8, 0, 40}, {9, 7, 48}, {1u << 20, 0, 32 + (1u << 20)},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(padding_for(c.len), c.padding) << c.len;
    EXPECT_EQ(record_size(c.len), c.size) << c.len;
  }
}

TEST(record, header_layout_is_little_endian_with_magic_rrlg) {
  record_header h{record_type::commit, 0x5a, 0x01020304, 0xa1b2c3d4, 0x1122334455667788ull, 9};
  header_bytes b;
  encode_header(h, b);
  const unsigned char want[header_size] = {
      'R',  'R',  'L',  'G',  2,    0x5a, 1,    0,    0x04, 0x03, 0x02,
      0x01, 0xd4, 0xc3, 0xb2, 0xa1, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33,
      0x22, 0x11, 9,    0,    0,    0,    0,    0,    0,    0,
  };
  EXPECT_EQ(std::string(b.data(), b.size()), std::string(reinterpret_cast<const char*>(want), 32));
  record_header back;
  ASSERT_EQ(decode_header(b, back), header_status::ok);
  EXPECT_EQ(back.type, h.type);
  EXPECT_EQ(back.flags, h.flags);
  EXPECT_EQ(back.payload_len, h.payload_len);
  EXPECT_EQ(back.crc, h.crc);
  EXPECT_EQ(back.id, h.id);
  EXPECT_EQ(back.sequence, h.sequence);
}

TEST(record, decode_header_classifies_what_is_not_a_record) {
  header_bytes good;
  encode_header({record_type::body, 0, 5, 0, 1, 1}, good);
  struct {
    const char* name;
    std::size_t byte;  // flipped; header_size = none
    bool zero;
    header_status want;
  } cases[] = {
      {"intact", header_size, false, header_status::ok},
      {"zero filled", header_size, true, header_status::empty},
      {"magic", 0, false, header_status::bad_magic},
      {"magic last byte", 3, false, header_status::bad_magic},
      {"version", 6, false, header_status::bad_version},
      {"version high byte", 7, false, header_status::bad_version},
  };
  for (const auto& c : cases) {
    header_bytes b = good;
    if (c.zero) b.fill(0);
    if (c.byte < header_size) b[c.byte] = static_cast<char>(b[c.byte] ^ 0xff);
    record_header h;
    EXPECT_EQ(decode_header(b, h), c.want) << c.name;
  }
}

TEST(record, crc_over_payload_pieces_equals_crc_over_whole_record) {
  std::string payload = ".\r\nSubject: pieces\r\n\r\nbody text that is long enough to split\r\n";
  record_header h{
      record_type::body, body_first, static_cast<std::uint32_t>(payload.size()), 0, 42, 7};
  std::string whole;
  append_record(whole, h, payload);
  ASSERT_EQ(whole.size(), record_size(payload.size()));
  record_header stored;
  ASSERT_EQ(decode_header(std::span<const char, header_size>(whole.data(), header_size), stored),
            header_status::ok);
  for (std::size_t a = 0; a <= payload.size(); ++a) {
    for (std::size_t b = a; b <= payload.size(); b += 7) {
      record_crc crc(h);
      crc.update(span_of(payload).subspan(0, a));
      crc.update(span_of(payload).subspan(a, b - a));
      crc.update(span_of(payload).subspan(b));
      ASSERT_EQ(crc.value(), stored.crc) << a << " " << b;
    }
  }
  // The CRC field itself is taken as zero: the same value whatever it holds.
  h.crc = 0xdeadbeef;
  record_crc again(h);
  again.update(span_of(payload));
  EXPECT_EQ(again.value(), stored.crc);
  // And it is the plain CRC-32C of header-with-zero-crc + payload.
  std::string covered = whole.substr(0, header_size) + payload;
  covered.replace(12, 4, 4, '\0');
  EXPECT_EQ(util::crc32c(0, covered.data(), covered.size()), stored.crc);
  EXPECT_EQ(whole.substr(header_size + payload.size()),
            std::string(padding_for(payload.size()), '\0'));
}

TEST(record, state_payloads_round_trip) {
  std::vector<std::vector<std::uint32_t>> lists = {{}, {0}, {3, 1, 0xffffffffu}};
  for (const auto& list : lists) {
    std::string p;
    encode_done(list, p);
    std::vector<std::uint32_t> back{99};
    ASSERT_TRUE(decode_done(span_of(p), back));
    EXPECT_EQ(back, list);

    deferred_state d{-5, 17, list}, d2;
    p.clear();
    encode_deferred(d, p);
    ASSERT_TRUE(decode_deferred(span_of(p), d2));
    EXPECT_EQ(d2.next_attempt, d.next_attempt);
    EXPECT_EQ(d2.attempts, d.attempts);
    EXPECT_EQ(d2.pending, d.pending);

    failure f{"550 5.1.1 <x@example.com>: no such user", list}, f2;
    p.clear();
    encode_failed(f, p);
    ASSERT_TRUE(decode_failed(span_of(p), f2));
    EXPECT_EQ(f2.reason, f.reason);
    EXPECT_EQ(f2.recipients, f.recipients);
  }
}

TEST(record, state_payloads_reject_every_truncation_and_extension) {
  std::string done, deferred, failed;
  encode_done(std::vector<std::uint32_t>{1, 2}, done);
  encode_deferred({100, 2, {1}}, deferred);
  encode_failed({"reason", {0}}, failed);
  struct {
    const char* name;
    const std::string& payload;
    std::size_t valid_shorter;  // a shorter prefix that is itself valid (lists end anywhere at 4)
    bool (*decode)(std::span<const char>);
  } cases[] = {
      {"done", done, 0,
       [](std::span<const char> s) {
         std::vector<std::uint32_t> l;
         return decode_done(s, l);
       }},
      {"deferred", deferred, 12,
       [](std::span<const char> s) {
         deferred_state x;
         return decode_deferred(s, x);
       }},
      {"failed", failed, 10,
       [](std::span<const char> s) {
         failure x;
         return decode_failed(s, x);
       }},
  };
  for (const auto& c : cases) {
    for (std::size_t n = 0; n < c.payload.size(); ++n) {
      bool whole_list = n >= c.valid_shorter && (n - c.valid_shorter) % 4 == 0;
      EXPECT_EQ(c.decode(span_of(c.payload).first(n)), whole_list) << c.name << " " << n;
    }
    std::string longer = c.payload + "x";
    EXPECT_FALSE(c.decode(span_of(longer))) << c.name;
  }
  // A reason length beyond the payload is refused, not trusted.
  std::string lying = failed;
  lying[3] = '\x7f';
  failure f;
  EXPECT_FALSE(decode_failed(span_of(lying), f));
}

TEST(record, payload_reader_fails_sticky_and_stays_in_bounds) {
  std::string in = "\x01\x02\x03";
  payload_reader r(span_of(in));
  EXPECT_EQ(r.u16(), 0x0201);
  EXPECT_EQ(r.u32(), 0u);  // only one octet left
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.u8(), 0);  // sticky, though one octet remains
  EXPECT_FALSE(r.done());
}

TEST(record, segment_names_are_ten_digits_dot_seg) {
  EXPECT_EQ(segment_name(42), "0000000042.seg");
  EXPECT_EQ(segment_path("/var/spool/ringrelay", 3, 7),
            "/var/spool/ringrelay/shard3/0000000007.seg");
  struct {
    const char* name;
    std::optional<std::uint64_t> want;
  } cases[] = {
      {"0000000042.seg", 42},
      {"9999999999.seg", 9999999999ull},
      {"000000042.seg", std::nullopt},
      {"00000000042.seg", std::nullopt},
      {"0000000042.seg.tmp", std::nullopt},
      {"00000000x2.seg", std::nullopt},
      {"0000000042.SEG", std::nullopt},
      {".", std::nullopt},
  };
  for (const auto& c : cases) EXPECT_EQ(parse_segment_name(c.name), c.want) << c.name;
}

}  // namespace
}  // namespace ringrelay::spool
