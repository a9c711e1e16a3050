#include <ringrelay/spool/envelope.hh>
#include <ringrelay/spool/record.hh>

namespace ringrelay::spool {
namespace {

enum flag_bits : std::uint8_t {
  flag_body_is_raw = 0x01,
  flag_eight_bit = 0x02,
  flag_smtputf8 = 0x04,
  flag_body_8bitmime = 0x08,
  flag_helo = 0x10,  // greeted with HELO; records without it read as EHLO
};
constexpr std::uint8_t known_flags =
    flag_body_is_raw | flag_eight_bit | flag_smtputf8 | flag_body_8bitmime | flag_helo;

std::uint8_t pack_flags(const envelope& e) {
  return static_cast<std::uint8_t>(
      (e.body_is_raw ? flag_body_is_raw : 0) | (e.eight_bit ? flag_eight_bit : 0) |
      (e.smtputf8 ? flag_smtputf8 : 0) | (e.body_8bitmime ? flag_body_8bitmime : 0) |
      (e.helo_greeting ? flag_helo : 0));
}

}  // namespace

void encode(const envelope& e, std::string& out) {
  payload_writer w(out);
  w.u16(envelope::version);
  w.u8(pack_flags(e));
  w.i64(e.received_at);
  w.u64(e.size);
  w.u64(e.wire_size);
  w.u32(e.relays);
  w.u32(e.day);
  w.u32(e.quota_relays);
  w.u32(e.block_relays);
  w.string(e.account);
  w.string(e.helo);
  w.string(e.client_address);
  w.string(e.sender);
  w.u32(static_cast<std::uint32_t>(e.recipients.size()));
  for (const auto& r : e.recipients) w.string(r);
  w.string(e.tls_info);
  w.string(e.auth_info);
}

std::string encode(const envelope& e) {
  std::string out;
  encode(e, out);
  return out;
}

bool decode(std::span<const char> in, envelope& out) {
  payload_reader r(in);
  // A newer writer's envelope is refused rather than half understood.
  if (r.u16() != envelope::version) return false;
  auto flags = r.u8();
  if ((flags & ~known_flags) != 0) return false;
  out.body_is_raw = flags & flag_body_is_raw;
  out.eight_bit = flags & flag_eight_bit;
  out.smtputf8 = flags & flag_smtputf8;
  out.body_8bitmime = flags & flag_body_8bitmime;
  out.helo_greeting = flags & flag_helo;
  out.received_at = r.i64();
  out.size = r.u64();
  out.wire_size = r.u64();
  out.relays = r.u32();
  out.day = r.u32();
  out.quota_relays = r.u32();
  out.block_relays = r.u32();
  out.account = r.string();
  out.helo = r.string();
  out.client_address = r.string();
  out.sender = r.string();
  auto count = r.u32();
  // Each recipient takes at least its 4-octet length, so a count the rest of
  // the input cannot hold is refused before anything is reserved for it.
  if (!r.ok() || count > r.remaining() / 4) return false;
  out.recipients.clear();
  out.recipients.reserve(count);
  for (std::uint32_t i = 0; i < count && r.ok(); ++i) out.recipients.push_back(r.string());
  out.tls_info = r.string();
  out.auth_info = r.string();
  return r.done();
}

}  // namespace ringrelay::spool
