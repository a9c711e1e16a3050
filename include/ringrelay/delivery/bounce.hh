// delivery/bounce — the non-delivery report (bounce) for a message, composed.
//
// `compose_bounce` builds the RFC 3464 delivery status notification that
// tells a message's sender which recipients failed and why: a
// multipart/report (RFC 6522) with a human explanation (text/plain), the
// machine-readable report (message/delivery-status) and the original
// message's header section (text/rfc822-headers). Its envelope is
// MAIL FROM:<> (RFC 5321 4.5.5: a bounce is never bounced) and RCPT TO the
// original sender. A message with the null sender gets no bounce.
//
// It does not send, queue or decide anything: the caller says which
// recipients failed and for what reason, and enqueues the result like an
// accepted message (docs/bounces.md).
//
// Forms:
// - Input header section: the first octets of the stored body (all of it or
//   a prefix), dot-stuffed unless `original_body_is_raw` (a DATA body is
//   stored in its wire form, a BDAT body as sent). The section ends at the
//   first empty line; at most `max_returned_headers` octets of it, in whole
//   lines, are returned.
// - Output body: wire form for the spool's DATA bodies: CRLF lines of at
//   most 998 octets, dot-stuffed (RFC 5321 4.5.2), without the terminating
//   "." line; the envelope says body_is_raw = false.
// - International mail (RFC 6533): when the original was SMTPUTF8 or any
//   address in the report is not ASCII, the report is
//   message/global-delivery-status with "utf-8" address types for non-ASCII
//   addresses, and the headers go as message/global-headers. Otherwise raw
//   8-bit octets in the original headers (against RFC 5322, but seen) are
//   kept, in text/rfc822-headers with Content-Transfer-Encoding 8bit, and
//   reflected replies lose theirs ("?"). Any 8-bit octet in the bounce makes
//   its envelope ask for BODY=8BITMIME; a non-ASCII sender makes the bounce
//   an SMTPUTF8 message.
//
// Safety: every reflected string (addresses, replies, host names, original
// header lines) is cleaned before use: control octets become spaces, so no
// CR or LF of theirs can start a header line or a MIME part; host names keep
// only the characters a host name or address literal uses; long fields are
// folded, long words cut. The MIME boundary is chosen so that it occurs
// nowhere but where it delimits. Pure: no I/O, no clock (the caller passes the time),
// the same output for the same input and time zone (dates are local time,
// as in the Received header); any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <ringrelay/spool/envelope.hh>
#include <ringrelay/util/id.hh>
#include <string>
#include <string_view>
#include <vector>

namespace ringrelay::delivery {

// Why a recipient failed; each has a default status (RFC 3463) and wording.
enum class bounce_reason : std::uint8_t {
  rejected,     // the upstream answered 5xx                      5.0.0
  expired,      // not delivered within delivery.max_age          4.4.7
  no_8bitmime,  // 8-bit body, the upstream lacks 8BITMIME        5.6.3
  no_smtputf8,  // SMTPUTF8 message, the upstream lacks SMTPUTF8  5.6.7
  loop,         // the recipient's MX is this relay               5.4.6
  unroutable,   // the domain takes no mail: NXDOMAIN, null MX... 5.1.2
};

struct bounced_recipient {
  std::string address;  // as in the envelope, without angle brackets
  bounce_reason reason = bounce_reason::rejected;
  // "5.1.1". Empty, malformed or not of class 4 or 5: the reason's default.
  std::string status;
  // For `rejected` and `expired`: the upstream's (last) reply on one line,
  // reply::one_line(), reported as "smtp". For the others: our own words,
  // reported as "X-ringrelay"; empty gives a standard sentence.
  std::string diagnostic;
  std::string remote_mta;  // the upstream's host name; empty when none
};

struct bounce_request {
  std::string_view reporting_mta;      // our host name (config `hostname`)
  std::string_view message_id_domain;  // right side of the bounce's Message-ID
  util::queue_id queue_id = 0;         // the original message's
  std::int64_t arrival = 0;            // when it was accepted, wall seconds
  std::int64_t now = 0;                // the bounce's Date, wall seconds
  // Tells bounces of one message apart (one per attempt that fails some
  // recipients); Message-ID and boundary derive from it and the queue ID.
  std::uint32_t sequence = 0;
  std::string_view sender;  // the original envelope sender; empty: null sender
  bool original_smtputf8 = false;
  bool original_body_is_raw = false;  // see "Input header section" above
  std::string_view original_head;     // first octets of the stored body
  std::vector<bounced_recipient> recipients;
};

struct bounce_message {
  // sender "" (null), the one recipient, flags and sizes; the account, HELO
  // and client fields are left for the caller.
  spool::envelope envelope;
  std::string body;  // wire form, dot-stuffed
};

// Octets of the original header section returned at most.
inline constexpr std::size_t max_returned_headers = 64 * 1024;

// The bounce for `r`; nothing for a null sender or an empty recipient list.
std::optional<bounce_message> compose_bounce(const bounce_request& r);

}  // namespace ringrelay::delivery
