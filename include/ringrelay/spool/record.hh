// spool/record — the on-disk format of a shard's spool log.
//
// A shard's spool is the directory `<spool.dir>/shard<N>/` holding segment
// files `<seq as 10 decimal digits>.seg`, preallocated and zero-filled beyond
// the written tail. A segment is a sequence of records, each starting at a
// multiple of 8. A record is a 32-byte header, `payload_len` payload octets
// and zero padding to the next multiple of 8. Little-endian throughout:
//
//   u32 magic "RRLG"  u8 type  u8 flags  u16 header_version (1)
//   u32 payload_len   u32 crc32c          u64 queue_id        u64 sequence
//
// The CRC-32C covers the header (with its crc field as 0) and the payload,
// not the padding. `sequence` is the shard's record number: strictly
// increasing through the log, so stale bytes after a truncation or in a
// reused file are never taken for records.
//
// Payloads by type:
//   body      body octets in wire form (≤ max_body_payload). Flag
//             `body_first` marks the first body record of a message, and of
//             each later copy of it: a commit takes the body records of its
//             queue ID from the last `body_first` one, so an abandoned copy
//             is never mixed in. Recovery refuses a longer payload.
//   commit    the envelope (spool/envelope.hh).
//   done      recipient_list: recipients finished (delivered); empty = all.
//   deferred  i64 next_attempt (wall seconds), u32 attempts, recipient_list
//             of the recipients still pending: exactly them, as it restates
//             the message's state.
//   failed    string reason, recipient_list: recipients failed for good
//             (empty = all still pending); one record per distinct reason.
// A recipient_list is a sequence of u32 indexes into the envelope's
// recipients, the payload's rest; a string is u32 length then its octets.
//
// This header only encodes and decodes: no I/O. The writer builds a body
// record without copying the payload: `record_crc` runs over the header and
// the payload spans as they lie in receive buffers, then `encode_header`
// fills a 32-byte buffer for a writev of header, payload and padding.
// Decoders never read outside the span they are given. Pure, any thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <ringrelay/util/id.hh>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ringrelay::spool {

inline constexpr std::uint32_t record_magic = 0x474c5252;  // "RRLG" in file order
inline constexpr std::uint16_t header_version = 1;
inline constexpr std::size_t header_size = 32;
inline constexpr std::size_t record_alignment = 8;
inline constexpr std::uint32_t max_body_payload = 1u << 20;
// Any other record; generous for a commit of many long recipients.
inline constexpr std::uint32_t max_payload = 16u << 20;

enum class record_type : std::uint8_t { body = 1, commit = 2, done = 3, deferred = 4, failed = 5 };

// Flag bits of body records.
inline constexpr std::uint8_t body_first = 0x01;

struct record_header {
  record_type type = record_type::body;
  std::uint8_t flags = 0;
  std::uint32_t payload_len = 0;
  std::uint32_t crc = 0;
  util::queue_id id = 0;
  std::uint64_t sequence = 0;
};

using header_bytes = std::array<char, header_size>;

// Zero octets for the padding of a writev.
inline constexpr char zero_padding[record_alignment] = {};

constexpr std::size_t padding_for(std::size_t payload_len) {
  return (record_alignment - payload_len % record_alignment) % record_alignment;
}

// Octets a record with this payload takes in the segment.
constexpr std::size_t record_size(std::size_t payload_len) {
  return header_size + payload_len + padding_for(payload_len);
}

// Writes `h` as stored, its crc field included.
void encode_header(const record_header& h, std::span<char, header_size> out);

enum class header_status { ok, empty, bad_magic, bad_version };

// Reads a stored header. `empty`: all 32 octets are zero, the unwritten
// part of a segment. Lengths and the CRC are the caller's to check.
header_status decode_header(std::span<const char, header_size> in, record_header& out);

// The CRC of one record, built incrementally: construct from the header
// (its crc field is ignored), then feed the payload in as many pieces as it
// lies in, in order.
class record_crc {
 public:
  explicit record_crc(const record_header& h);
  void update(std::span<const char> payload_piece);
  std::uint32_t value() const { return _crc; }

 private:
  std::uint32_t _crc;
};

// Appends a whole record (header, payload, padding) with its CRC set; for
// the small records, and for tests. `h.payload_len` and `h.crc` are
// computed, the other fields taken from `h`.
void append_record(std::string& out, record_header h, std::string_view payload);

// Little-endian fields of payloads. The writer appends; the reader is a
// bounds-checked cursor whose failure is sticky: after a read past the end
// every later read fails too, and returns zero or empty.
class payload_writer {
 public:
  explicit payload_writer(std::string& out) : _out(out) {}
  void u8(std::uint8_t v);
  void u16(std::uint16_t v);
  void u32(std::uint32_t v);
  void u64(std::uint64_t v);
  void i64(std::int64_t v) { u64(static_cast<std::uint64_t>(v)); }
  void string(std::string_view s);

 private:
  std::string& _out;
};

class payload_reader {
 public:
  explicit payload_reader(std::span<const char> in) : _in(in) {}
  std::uint8_t u8();
  std::uint16_t u16();
  std::uint32_t u32();
  std::uint64_t u64();
  std::int64_t i64() { return static_cast<std::int64_t>(u64()); }
  // Fails unless the string fits in `max_len` and in the input.
  std::string string(std::size_t max_len = max_payload);
  std::size_t remaining() const { return _in.size() - _pos; }
  // True when no read has failed and the input is used up.
  bool done() const { return _ok && _pos == _in.size(); }
  bool ok() const { return _ok; }

 private:
  const unsigned char* take(std::size_t n);

  std::span<const char> _in;
  std::size_t _pos = 0;
  bool _ok = true;
};

// The payloads of state records. Encoders append to `out`; decoders return
// false on any malformed input, the whole payload being used.
void encode_done(std::span<const std::uint32_t> recipients, std::string& out);
bool decode_done(std::span<const char> in, std::vector<std::uint32_t>& recipients);

// deferred payload.
struct deferred_state {
  std::int64_t next_attempt = 0;  // wall seconds
  std::uint32_t attempts = 0;
  std::vector<std::uint32_t> pending;
};
void encode_deferred(const deferred_state& s, std::string& out);
bool decode_deferred(std::span<const char> in, deferred_state& out);

// failed payload.
struct failure {
  std::string reason;                     // the upstream's reply or our own, for the bounce
  std::vector<std::uint32_t> recipients;  // empty: all still pending
};
void encode_failed(const failure& f, std::string& out);
bool decode_failed(std::span<const char> in, failure& out);

// Segment file layout.
std::string shard_directory(const std::string& spool_dir, unsigned shard);
std::string segment_name(std::uint64_t seq);  // "0000000042.seg"
std::string segment_path(const std::string& spool_dir, unsigned shard, std::uint64_t seq);
// The seq of a segment file name; nullopt for any other name.
std::optional<std::uint64_t> parse_segment_name(std::string_view name);

}  // namespace ringrelay::spool
