#include <algorithm>
#include <cstdio>
#include <ringrelay/spool/record.hh>
#include <ringrelay/util/crc32c.hh>

namespace ringrelay::spool {
namespace {

// Header field offsets; the layout is in record.hh.
constexpr std::size_t off_magic = 0;
constexpr std::size_t off_type = 4;
constexpr std::size_t off_flags = 5;
constexpr std::size_t off_version = 6;
constexpr std::size_t off_len = 8;
constexpr std::size_t off_crc = 12;
constexpr std::size_t off_id = 16;
constexpr std::size_t off_sequence = 24;

// Shifts rather than memcpy so the format stays little-endian on any host.
template <typename T>
void store_le(char* p, T v) {
  for (std::size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<char>(v >> (8 * i));
}

template <typename T>
T load_le(const char* p) {
  T v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) {
    v |= static_cast<T>(static_cast<T>(static_cast<unsigned char>(p[i])) << (8 * i));
  }
  return v;
}

template <typename T>
void append_le(std::string& out, T v) {
  char b[sizeof(T)];
  store_le(b, v);
  out.append(b, sizeof b);
}

void encode_list(std::span<const std::uint32_t> list, std::string& out) {
  for (auto v : list) append_le(out, v);
}

// A recipient list is the rest of the payload, so its length must be a
// whole number of u32 and needs no count (nor a count to distrust).
bool decode_list(payload_reader& r, std::vector<std::uint32_t>& out) {
  out.clear();
  if (!r.ok() || r.remaining() % 4 != 0) return false;
  out.reserve(r.remaining() / 4);
  while (r.remaining() > 0) out.push_back(r.u32());
  return r.done();
}

}  // namespace

void encode_header(const record_header& h, std::span<char, header_size> out) {
  char* p = out.data();
  store_le(p + off_magic, record_magic);
  p[off_type] = static_cast<char>(h.type);
  p[off_flags] = static_cast<char>(h.flags);
  store_le(p + off_version, header_version);
  store_le(p + off_len, h.payload_len);
  store_le(p + off_crc, h.crc);
  store_le(p + off_id, h.id);
  store_le(p + off_sequence, h.sequence);
}

header_status decode_header(std::span<const char, header_size> in, record_header& out) {
  const char* p = in.data();
  if (std::all_of(in.begin(), in.end(), [](char c) { return c == 0; })) return header_status::empty;
  if (load_le<std::uint32_t>(p + off_magic) != record_magic) return header_status::bad_magic;
  if (load_le<std::uint16_t>(p + off_version) != header_version) return header_status::bad_version;
  out.type = static_cast<record_type>(p[off_type]);
  out.flags = static_cast<std::uint8_t>(p[off_flags]);
  out.payload_len = load_le<std::uint32_t>(p + off_len);
  out.crc = load_le<std::uint32_t>(p + off_crc);
  out.id = load_le<std::uint64_t>(p + off_id);
  out.sequence = load_le<std::uint64_t>(p + off_sequence);
  return header_status::ok;
}

record_crc::record_crc(const record_header& h) {
  header_bytes b;
  record_header zeroed = h;
  zeroed.crc = 0;
  encode_header(zeroed, b);
  _crc = util::crc32c(0, b.data(), b.size());
}

void record_crc::update(std::span<const char> payload_piece) {
  _crc = util::crc32c(_crc, payload_piece.data(), payload_piece.size());
}

void append_record(std::string& out, record_header h, std::string_view payload) {
  h.payload_len = static_cast<std::uint32_t>(payload.size());
  record_crc crc(h);
  crc.update(payload);
  h.crc = crc.value();
  header_bytes b;
  encode_header(h, b);
  out.append(b.data(), b.size());
  out.append(payload);
  out.append(zero_padding, padding_for(payload.size()));
}

void payload_writer::u8(std::uint8_t v) {
  _out.push_back(static_cast<char>(v));
}
void payload_writer::u16(std::uint16_t v) {
  append_le(_out, v);
}
void payload_writer::u32(std::uint32_t v) {
  append_le(_out, v);
}
void payload_writer::u64(std::uint64_t v) {
  append_le(_out, v);
}

void payload_writer::string(std::string_view s) {
  u32(static_cast<std::uint32_t>(s.size()));
  _out.append(s);
}

const unsigned char* payload_reader::take(std::size_t n) {
  if (!_ok || n > remaining()) {
    _ok = false;
    return nullptr;
  }
  auto p = reinterpret_cast<const unsigned char*>(_in.data() + _pos);
  _pos += n;
  return p;
}

std::uint8_t payload_reader::u8() {
  auto p = take(1);
  return p ? *p : 0;
}

std::uint16_t payload_reader::u16() {
  auto p = take(2);
  return p ? load_le<std::uint16_t>(reinterpret_cast<const char*>(p)) : 0;
}

std::uint32_t payload_reader::u32() {
  auto p = take(4);
  return p ? load_le<std::uint32_t>(reinterpret_cast<const char*>(p)) : 0;
}

std::uint64_t payload_reader::u64() {
  auto p = take(8);
  return p ? load_le<std::uint64_t>(reinterpret_cast<const char*>(p)) : 0;
}

std::string payload_reader::string(std::size_t max_len) {
  std::size_t len = u32();
  if (len > max_len) _ok = false;
  auto p = take(len);
  return p ? std::string(reinterpret_cast<const char*>(p), len) : std::string();
}

void encode_done(std::span<const std::uint32_t> recipients, std::string& out) {
  encode_list(recipients, out);
}

bool decode_done(std::span<const char> in, std::vector<std::uint32_t>& recipients) {
  payload_reader r(in);
  return decode_list(r, recipients);
}

void encode_deferred(const deferred_state& s, std::string& out) {
  payload_writer w(out);
  w.i64(s.next_attempt);
  w.u32(s.attempts);
  encode_list(s.pending, out);
}

bool decode_deferred(std::span<const char> in, deferred_state& out) {
  payload_reader r(in);
  out.next_attempt = r.i64();
  out.attempts = r.u32();
  return decode_list(r, out.pending);
}

void encode_failed(const failure& f, std::string& out) {
  payload_writer w(out);
  w.string(f.reason);
  encode_list(f.recipients, out);
}

bool decode_failed(std::span<const char> in, failure& out) {
  payload_reader r(in);
  out.reason = r.string();
  return decode_list(r, out.recipients);
}

std::string shard_directory(const std::string& spool_dir, unsigned shard) {
  return spool_dir + "/shard" + std::to_string(shard);
}

std::string segment_name(std::uint64_t seq) {
  char b[32];
  std::snprintf(b, sizeof b, "%010llu.seg", static_cast<unsigned long long>(seq));
  return b;
}

std::string segment_path(const std::string& spool_dir, unsigned shard, std::uint64_t seq) {
  return shard_directory(spool_dir, shard) + "/" + segment_name(seq);
}

std::optional<std::uint64_t> parse_segment_name(std::string_view name) {
  constexpr std::size_t digits = 10;
  if (name.size() != digits + 4 || name.substr(digits) != ".seg") return std::nullopt;
  std::uint64_t seq = 0;
  for (std::size_t i = 0; i < digits; ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    seq = seq * 10 + static_cast<std::uint64_t>(name[i] - '0');
  }
  return seq;
}

}  // namespace ringrelay::spool
