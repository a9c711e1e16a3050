// dns/answer — our reader for the DNS messages c-ares hands back.
//
// c-ares does the transport (UDP, TCP after truncation, retries, server
// rotation); what the answer says is read here, from the raw RFC 1035 wire
// message: the header's rcode, the answer section's records of the types
// ringrelay uses (MX, A, AAAA, CNAME, TXT; class IN only, others skipped),
// and the SOA of the authority section, which sets how long a negative
// answer may be cached (RFC 2308 §5). The additional section is not read.
//
// Every length is checked against the message before it is used: a label,
// an rdata length, a record count that promises more than the message
// holds. Compressed names (RFC 1035 4.1.4) may only point backwards, each
// pointer before the start of the label run that led to it, so a pointer
// loop is refused instead of followed; a name longer than 255 octets is
// refused. Names come out in lower case without the final dot ("" is the
// root); octets other than letters, digits, "-" and "_" are written as
// \DDD (RFC 1035 5.1), so a name is always printable and means one thing.
// TTLs with the top bit set read as 0 (RFC 2181 §8).
//
// Pure, no exceptions, any thread. A message is a complete datagram or TCP
// record: c-ares reassembles, so there is no partial input to resume.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace ringrelay::dns {

enum class rr_type : std::uint16_t {
  a = 1,
  ns = 2,
  cname = 5,
  soa = 6,
  mx = 15,
  txt = 16,
  aaaa = 28,
};

// "MX", "A", ...; "other" for a value outside the list above.
const char* type_name(rr_type t);

// The header's RCODE (RFC 1035 4.1.1, RFC 6895 2.3); other values pass
// through as their number.
enum class rcode : std::uint8_t {
  noerror = 0,
  formerr = 1,
  servfail = 2,
  nxdomain = 3,
  notimp = 4,
  refused = 5,
};

// One resource record of the answer section. Which fields are used
// depends on `type`.
struct record {
  std::string name;  // owner name
  rr_type type = rr_type::a;
  std::uint32_t ttl = 0;
  std::uint16_t preference = 0;            // MX
  std::string target;                      // MX exchange ("" = the root), CNAME target
  std::string text;                        // TXT: the record's character-strings joined
  std::array<std::uint8_t, 16> address{};  // A (first 4 octets), AAAA

  // RFC 7505: preference 0 and exchange "." — the domain accepts no mail.
  bool null_mx() const { return type == rr_type::mx && preference == 0 && target.empty(); }
  // The address in text form ("192.0.2.1", "2001:db8::1"); "" for other types.
  std::string address_text() const;

  bool operator==(const record&) const = default;
};

// What RFC 2308 needs from the authority section's SOA.
struct soa_record {
  std::string zone;           // the SOA's owner name
  std::uint32_t ttl = 0;      // the SOA record's own TTL
  std::uint32_t minimum = 0;  // the MINIMUM field

  bool operator==(const soa_record&) const = default;
};

struct answer {
  std::uint16_t id = 0;
  rcode code = rcode::noerror;
  bool truncated = false;  // TC: a UDP answer that did not fit
  std::string question;    // the first question's name ("" when there is none)
  rr_type question_type = rr_type::a;
  std::vector<record> records;    // answer section, kept types only, in order
  std::optional<soa_record> soa;  // first SOA of the authority section

  // RFC 2308 §5: a negative answer is cached for min(SOA TTL, SOA MINIMUM);
  // nullopt when the authority section carried no SOA.
  std::optional<std::uint32_t> negative_ttl() const;
};

enum class parse_error : std::uint8_t {
  ok,
  short_header,    // fewer than 12 octets
  not_a_response,  // QR bit clear
  truncated,       // a section ends before the counts say it should
  bad_label,       // label type 01 or 10 (RFC 6891 obsoleted extended labels)
  name_loop,       // a compression pointer that does not point backwards
  name_too_long,   // over 255 octets
  bad_rdata,       // rdata of a kept type whose length does not fit it
};

// A short phrase for logs: "truncated message", "compression pointer loop".
const char* describe(parse_error e);

// Reads `wire` into `out` (cleared first). On an error `out` is
// unspecified.
parse_error parse_answer(std::span<const std::uint8_t> wire, answer& out);

}  // namespace ringrelay::dns
