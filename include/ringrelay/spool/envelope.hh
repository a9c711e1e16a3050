// spool/envelope — the envelope of a spooled message, the commit record's
// payload.
//
// Everything delivery needs besides the body: the sender and recipients,
// the facts the Received header is composed from at delivery time (HELO,
// client address, TLS and auth state, arrival time, queue ID from the
// record), and what was charged. Layout, little-endian, strings as u32
// length then octets:
//
//   u16 version (2)  u8 flags  i64 received_at  u64 size  u64 wire_size
//   (flags: 0x01 body_is_raw, 0x02 eight_bit, 0x04 smtputf8,
//   0x08 body_8bitmime, 0x10 helo_greeting; a release that does not know a
//   bit refuses the record, so drain the queue before a downgrade)
//   u32 relays  u32 day  u32 quota_relays  u32 block_relays
//   string account, helo, client_address, sender
//   u32 recipient count, that many strings  string tls_info, auth_info
//
// The charge (quota_relays on `day`, block_relays off the balance) is what
// the account paid for the message; replaying commit records after a crash
// re-applies it (accounts/usage_ledger.hh). A copy of a commit made to move
// a message to a newer segment must carry a zero charge, so that no message
// is paid for twice.
//
// `decode` parses disk data: it checks every length against the input, never
// reads outside it, rejects unknown versions and flag bits and trailing
// octets, and allocates no more than the input's size implies. Pure, any
// thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace ringrelay::spool {

struct envelope {
  static constexpr std::uint16_t version = 2;

  bool body_is_raw = false;        // arrived by BDAT: not dot-stuffed
  bool eight_bit = false;          // the body has octets above 127
  bool smtputf8 = false;           // MAIL FROM ... SMTPUTF8
  bool body_8bitmime = false;      // MAIL FROM ... BODY=8BITMIME
  bool helo_greeting = false;      // the client said HELO, not EHLO (Received: "with SMTP")
  std::int64_t received_at = 0;    // wall seconds
  std::uint64_t size = 0;          // RFC 1870 size
  std::uint64_t wire_size = 0;     // body octets stored in the log
  std::uint32_t relays = 0;        // recipients × size multiplier (SPEC.md §5)
  std::uint32_t day = 0;           // the account's day number the quota part went to
  std::uint32_t quota_relays = 0;  // charged to `day`'s quota
  std::uint32_t block_relays = 0;  // charged to the block balance
  std::string account;
  std::string helo;
  std::string client_address;  // text, as in the Received header
  std::string sender;          // without angle brackets; empty = null sender
  std::vector<std::string> recipients;
  std::string tls_info;   // empty: plain session
  std::string auth_info;  // empty: none recorded

  bool operator==(const envelope&) const = default;
};

// Appends the encoded envelope to `out`.
void encode(const envelope& e, std::string& out);
std::string encode(const envelope& e);

// False, with `out` unspecified, when `in` is not exactly one valid encoding.
bool decode(std::span<const char> in, envelope& out);

}  // namespace ringrelay::spool
