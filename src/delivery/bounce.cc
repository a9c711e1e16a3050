#include <algorithm>
#include <initializer_list>
#include <ringrelay/delivery/bounce.hh>
#include <ringrelay/delivery/upstream_session.hh>
#include <ringrelay/util/clock.hh>

namespace ringrelay::delivery {
namespace {

// RFC 5322 2.1.1: lines SHOULD stay within 78 octets; fields and text are
// wrapped there where spaces allow.
constexpr std::size_t fold_width = 78;
// A word longer than this is cut. With the longest prefix we write and a
// stuffing dot, a line stays far below the 998 octets RFC 5322 2.1.1 and
// RFC 5321 4.5.3.1.6 allow.
constexpr std::size_t max_word = 900;
// A returned header line longer than this is split (see original_headers).
constexpr std::size_t max_header_line = 990;
constexpr std::string_view indent = "    ";

bool is_ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

bool is_control(unsigned char c) {
  return c < 0x20 || c == 0x7f;
}

// Length of the well-formed UTF-8 sequence (RFC 3629 section 4) at s[i]:
// no overlong forms, no surrogates, nothing above U+10FFFF. 0 when there is
// none.
std::size_t utf8_length(std::string_view s, std::size_t i) {
  const auto at = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = at(0);
  std::size_t n = 0;
  unsigned char lo = 0x80;
  unsigned char hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
  }
  if (n == 0 || i + n > s.size() || at(1) < lo || at(1) > hi) return 0;
  for (std::size_t k = 2; k < n; ++k) {
    if (at(k) < 0x80 || at(k) > 0xbf) return 0;
  }
  return n;
}

// Reflected text for one field or sentence: control octets (CR and LF
// among them) become spaces, so the text can neither end its line nor start
// a header or a MIME part. Octets above 127 stay when they form UTF-8 and
// the part may carry it (`utf8`), and become "?" otherwise.
std::string clean_text(std::string_view in, bool utf8) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size();) {
    const auto c = static_cast<unsigned char>(in[i]);
    if (c < 0x80) {
      out.push_back(is_control(c) ? ' ' : in[i]);
      ++i;
      continue;
    }
    const std::size_t n = utf8 ? utf8_length(in, i) : 0;
    if (n == 0) {
      out.push_back('?');
      ++i;
    } else {
      out.append(in.substr(i, n));
      i += n;
    }
  }
  return out;
}

// A host name or address literal ("[192.0.2.1]", "[IPv6:...]"): anything
// else becomes "_", so the name keeps the syntax of the field it is in.
std::string clean_host(std::string_view in) {
  if (in.empty()) return "unknown";
  std::string out;
  out.reserve(in.size());
  for (char c : in) {
    const bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '.' || c == ':' || c == '[' || c == ']';
    out.push_back(keep ? c : '_');
  }
  return out;
}

// Appends `text` as lines of at most `fold_width` octets where its spaces
// allow: the first line starts with `first`, the others with `next`. Runs
// of spaces become one. A word longer than `max_word` is cut, between UTF-8
// sequences when possible. For a header field `next` is " ": unfolding
// (RFC 5322 2.2.3) gives the text back.
void wrap(std::string& out, std::string_view first, std::string_view text, std::string_view next) {
  std::string line(first);
  bool fresh = true;  // nothing but the prefix on `line` yet
  const auto add = [&](std::string_view piece) {
    if (!fresh && line.size() + 1 + piece.size() > fold_width) {
      out.append(line).append("\r\n");
      line = next;
      fresh = true;
    }
    if (!fresh) line.push_back(' ');
    line.append(piece);
    fresh = false;
  };
  while (!text.empty()) {
    const std::size_t space = text.find(' ');
    std::string_view word = text.substr(0, space);
    text.remove_prefix(space == std::string_view::npos ? text.size() : space + 1);
    while (word.size() > max_word) {
      std::size_t cut = max_word;
      while (cut > max_word / 2 && (static_cast<unsigned char>(word[cut]) & 0xc0) == 0x80) --cut;
      add(word.substr(0, cut));
      word.remove_prefix(cut);
    }
    if (!word.empty()) add(word);
  }
  out.append(line).append("\r\n");
}

// A header field (or a delivery-status field, same syntax), folded.
void field(std::string& out, std::string_view name, std::string_view value) {
  wrap(out, std::string(name) + ": ", value, " ");
}

// RFC 3463 section 2: class "." subject "." detail, 1-3 digits each. Only
// classes 4 and 5 describe a failure.
bool valid_status(std::string_view s) {
  if (s.size() < 5 || (s[0] != '4' && s[0] != '5') || s[1] != '.') return false;
  s.remove_prefix(2);
  for (int number = 0; number < 2; ++number) {
    std::size_t n = 0;
    while (n < s.size() && n < 4 && s[n] >= '0' && s[n] <= '9') ++n;
    if (n == 0 || n > 3) return false;
    s.remove_prefix(n);
    if (number == 0) {
      if (s.empty() || s[0] != '.') return false;
      s.remove_prefix(1);
    }
  }
  return s.empty();
}

std::string_view default_status(bounce_reason r) {
  switch (r) {
    case bounce_reason::rejected:
      return "5.0.0";  // RFC 3463 3.1: other undefined status
    case bounce_reason::expired:
      // RFC 3463 3.5: delivery time expired, a persistent transient error.
      // Action "failed" with a 4.x.x status is what RFC 3464 2.3.4 allows
      // and Postfix reports for expired mail.
      return "4.4.7";
    case bounce_reason::no_8bitmime:
      return "5.6.3";  // RFC 3463 3.7: conversion required but not supported
    case bounce_reason::no_smtputf8:
      return "5.6.7";  // RFC 6531, RFC 5248 registry: non-ASCII not permitted
    case bounce_reason::loop:
      return "5.4.6";  // RFC 3463 3.5: routing loop detected
    case bounce_reason::unroutable:
      return "5.1.2";  // RFC 3463 3.2: bad destination system address
  }
  return "5.0.0";
}

std::string status_of(const bounced_recipient& r) {
  return valid_status(r.status) ? r.status : std::string(default_status(r.reason));
}

bool reply_reason(bounce_reason r) {
  return r == bounce_reason::rejected || r == bounce_reason::expired;
}

std::string_view domain_of(std::string_view address) {
  const std::size_t at = address.rfind('@');
  return at == std::string_view::npos ? address : address.substr(at + 1);
}

// The diagnostic: the reply as given, or our own words (RFC 3464 2.3.6
// diagnostic types "smtp" and a private "X-" one).
std::string diagnostic_of(const bounced_recipient& r, bool utf8) {
  if (!r.diagnostic.empty() || reply_reason(r.reason)) return clean_text(r.diagnostic, utf8);
  const std::string remote = r.remote_mta.empty() ? "the upstream" : clean_host(r.remote_mta);
  switch (r.reason) {
    case bounce_reason::no_8bitmime:
      return "message has 8-bit content but " + remote + " does not offer 8BITMIME";
    case bounce_reason::no_smtputf8:
      return "SMTPUTF8 is required but was not offered by " + remote;
    case bounce_reason::loop:
      return "mail for " + clean_text(domain_of(r.address), utf8) + " loops back to myself";
    case bounce_reason::unroutable:
      return "no mail server found for " + clean_text(domain_of(r.address), utf8);
    case bounce_reason::rejected:
    case bounce_reason::expired:
      break;
  }
  return {};
}

// "5 days", "3 hours", "12 minutes", "40 seconds".
std::string describe_age(std::int64_t seconds) {
  struct unit {
    std::int64_t length;
    const char* name;
  };
  static constexpr unit units[] = {{86400, "day"}, {3600, "hour"}, {60, "minute"}, {1, "second"}};
  seconds = std::max<std::int64_t>(seconds, 0);
  for (const unit& u : units) {
    if (seconds >= u.length || u.length == 1) {
      const std::int64_t n = seconds / u.length;
      return std::to_string(n) + " " + u.name + (n == 1 ? "" : "s");
    }
  }
  return {};
}

std::string explanation(const bounced_recipient& r, const bounce_request& req, bool utf8) {
  const std::string server = r.remote_mta.empty() ? "the recipient's mail server"
                                                  : "the mail server " + clean_host(r.remote_mta);
  const std::string reply = clean_text(r.diagnostic, utf8);
  switch (r.reason) {
    case bounce_reason::rejected:
      return "The message was refused for good by " + server +
             ". Check the address for typing errors; if it is right, reach the recipient another "
             "way." +
             (reply.empty() ? "" : " The server answered: " + reply);
    case bounce_reason::expired:
      return "The message could not be delivered in " + describe_age(req.now - req.arrival) +
             " of trying, and this relay has given up. The recipient's mail server may be down or "
             "refusing mail for now: send the message again later." +
             (reply.empty() ? "" : " The last attempt ended with: " + reply);
    case bounce_reason::no_8bitmime:
      return "The message contains 8-bit data, but " + server +
             " does not accept 8-bit data (it lacks 8BITMIME), and this relay does not convert "
             "messages. Send it again with a 7-bit transfer encoding such as quoted-printable or "
             "base64.";
    case bounce_reason::no_smtputf8:
      return "The message needs SMTPUTF8 (international addresses or headers), but " + server +
             " does not support it. Send it to an ASCII address of the recipient, or without "
             "non-ASCII characters in the addresses and headers.";
    case bounce_reason::loop:
      return "Mail for " + clean_text(domain_of(r.address), utf8) +
             " is routed back to this relay (" + clean_host(req.reporting_mta) +
             "): a mail loop. The domain's MX records or this relay's routing are wrong; tell the "
             "postmaster of the recipient's domain.";
    case bounce_reason::unroutable:
      return "Mail for " + clean_text(domain_of(r.address), utf8) +
             " cannot be delivered: " + diagnostic_of(r, utf8) +
             ". Check the domain of the address for typing errors.";
  }
  return {};
}

std::string notification(const bounce_request& r, bool utf8) {
  char arrival[40];
  util::format_rfc5322_date(r.arrival, arrival);
  std::string out;
  wrap(out, "", "This is the mail system at " + clean_host(r.reporting_mta) + ".", "");
  out.append("\r\n");
  wrap(out, "",
       std::string("Your message could not be delivered to the recipients below. It was accepted "
                   "on ") +
           arrival + " with queue ID " + util::format_queue_id(r.queue_id) +
           ". The technical report and the message's headers are attached.",
       "");
  for (const bounced_recipient& rcpt : r.recipients) {
    out.append("\r\n");
    std::string who = "<";
    who.append(clean_text(rcpt.address, utf8)).append(">:");
    wrap(out, "", who, indent);
    wrap(out, indent, explanation(rcpt, r, utf8), indent);
  }
  return out;
}

// RFC 3464 2.2 and 2.3, with RFC 6533 3 for non-ASCII addresses.
std::string delivery_status(const bounce_request& r, bool utf8) {
  char arrival[40];
  util::format_rfc5322_date(r.arrival, arrival);
  std::string out;
  field(out, "Reporting-MTA", "dns; " + clean_host(r.reporting_mta));
  field(out, "X-Ringrelay-Queue-ID", util::format_queue_id(r.queue_id));
  field(out, "Arrival-Date", arrival);
  for (const bounced_recipient& rcpt : r.recipients) {
    const std::string address = clean_text(rcpt.address, utf8);
    out.append("\r\n");
    field(out, "Final-Recipient", (is_ascii(address) ? "rfc822; " : "utf-8; ") + address);
    field(out, "Action", "failed");
    field(out, "Status", status_of(rcpt));
    if (!rcpt.remote_mta.empty()) field(out, "Remote-MTA", "dns; " + clean_host(rcpt.remote_mta));
    const std::string diagnostic = diagnostic_of(rcpt, utf8);
    if (!diagnostic.empty()) {
      field(out, "Diagnostic-Code",
            (reply_reason(rcpt.reason) ? "smtp; " : "X-ringrelay; ") + diagnostic);
    }
  }
  return out;
}

// The original header section as CRLF lines. Dot-stuffing is undone first
// when the stored form has it (stuffing follows CRLF only, RFC 5321 4.5.2).
// A bare LF counts as a line end as well, as lenient readers take it; a
// bare CR and the other control octets except HTAB become spaces. The
// section ends at the first empty line. A line longer than
// `max_header_line` is split into continuation lines (CRLF SP), which can
// never start a header of their own.
std::string original_headers(std::string_view head, bool stuffed) {
  std::string out;
  bool crlf_line_start = true;
  while (!head.empty()) {
    const std::size_t nl = head.find('\n');
    std::string_view line = head.substr(0, nl);
    head.remove_prefix(nl == std::string_view::npos ? head.size() : nl + 1);
    const bool crlf = nl != std::string_view::npos && !line.empty() && line.back() == '\r';
    if (crlf) line.remove_suffix(1);
    if (stuffed && crlf_line_start && !line.empty() && line.front() == '.') line.remove_prefix(1);
    crlf_line_start = crlf;
    if (line.empty()) break;
    std::string clean(line);
    for (char& c : clean) {
      if (c != '\t' && is_control(static_cast<unsigned char>(c))) c = ' ';
    }
    std::string kept;
    for (std::size_t i = 0; i < clean.size(); i += max_header_line - 1) {
      kept.append(i == 0 ? "" : " ").append(clean, i, max_header_line - 1).append("\r\n");
    }
    if (out.size() + kept.size() > max_returned_headers) break;
    out.append(kept);
  }
  return out;
}

// RFC 2046 5.1.1: the boundary must not occur in the parts. "=_" cannot
// occur in quoted-printable text; the queue ID and sequence make it unique
// per bounce; a counter is added while the content still holds it.
std::string choose_boundary(const bounce_request& r,
                            std::initializer_list<std::string_view> parts) {
  const std::string base =
      "=_ringrelay_" + util::format_queue_id(r.queue_id) + "_" + std::to_string(r.sequence);
  for (std::uint64_t k = 0;; ++k) {
    std::string b = k == 0 ? base : base + "_" + std::to_string(k);
    const bool used = std::any_of(parts.begin(), parts.end(), [&](std::string_view p) {
      return p.find(b) != std::string_view::npos;
    });
    if (!used) return b;
  }
}

// The bounce's own header fields up to MIME-Version (Content-Type follows
// once the boundary is known).
std::string top_fields(const bounce_request& r, bool utf8) {
  char date[40];
  util::format_rfc5322_date(r.now, date);
  std::string m;
  // Strings built by append: GCC 12's -Wrestrict misfires on
  // "literal" + std::string at -O3.
  std::string from = "Mail Delivery System <MAILER-DAEMON@";
  from.append(clean_host(r.reporting_mta)).append(">");
  field(m, "From", from);
  std::string to = "<";
  to.append(clean_text(r.sender, utf8)).append(">");
  field(m, "To", to);
  field(m, "Subject", "Undelivered Mail Returned to Sender");
  field(m, "Date", date);
  std::string id = "<";
  id.append(util::format_queue_id(r.queue_id)).append(".").append(std::to_string(r.sequence));
  id.append(".").append(std::to_string(r.now)).append(".bounce@");
  id.append(clean_host(r.message_id_domain)).append(">");
  field(m, "Message-ID", id);
  // RFC 3834 5: generated in response to a message; no auto-reply to it.
  field(m, "Auto-Submitted", "auto-replied");
  field(m, "MIME-Version", "1.0");
  return m;
}

// One body part: its header fields, an empty line and the content, after
// the delimiter (RFC 2046 5.1.1: the CRLF before "--" belongs to it).
void append_part(std::string& out, std::string_view boundary, std::string_view description,
                 std::string_view type, std::string_view content) {
  out.append("\r\n--").append(boundary).append("\r\n");
  out.append("Content-Description: ").append(description).append("\r\n");
  out.append("Content-Type: ").append(type).append("\r\n");
  if (!is_ascii(content)) out.append("Content-Transfer-Encoding: 8bit\r\n");
  out.append("\r\n").append(content);
}

}  // namespace

std::optional<bounce_message> compose_bounce(const bounce_request& r) {
  if (r.sender.empty() || r.recipients.empty()) return std::nullopt;
  // RFC 6533: the international forms when an address or the message needs
  // them; they may carry UTF-8, the classic forms ASCII only.
  const bool global = r.original_smtputf8 || !is_ascii(r.sender) ||
                      std::any_of(r.recipients.begin(), r.recipients.end(),
                                  [](const bounced_recipient& x) { return !is_ascii(x.address); });
  const std::string text = notification(r, global);
  const std::string report = delivery_status(r, global);
  const std::string headers = original_headers(r.original_head, !r.original_body_is_raw);
  std::string m = top_fields(r, global);
  // Reflected text in the fields above counts too: then the boundary occurs
  // exactly where it delimits, which is easy to check.
  const std::string boundary = choose_boundary(r, {m, text, report, headers});
  // RFC 6522 3: report-type names the second part's subtype.
  m.append(global ? "Content-Type: multipart/report; report-type=global-delivery-status;\r\n"
                  : "Content-Type: multipart/report; report-type=delivery-status;\r\n");
  m.append("\tboundary=\"").append(boundary).append("\"\r\n");
  // RFC 2045 6.4: a multipart's encoding is that of its widest part.
  if (!is_ascii(text) || !is_ascii(report) || !is_ascii(headers)) {
    m.append("Content-Transfer-Encoding: 8bit\r\n");
  }
  m.append("\r\nThis is a MIME-encapsulated message.\r\n");
  append_part(m, boundary, "Notification",
              is_ascii(text) ? "text/plain; charset=us-ascii" : "text/plain; charset=utf-8", text);
  append_part(m, boundary, "Delivery report",
              global ? "message/global-delivery-status" : "message/delivery-status", report);
  append_part(m, boundary, "Undelivered Message Headers",
              global ? "message/global-headers" : "text/rfc822-headers", headers);
  m.append("\r\n--").append(boundary).append("--\r\n");

  bounce_message b;
  bool at_line_start = true;
  dot_stuff(m, at_line_start, b.body);
  spool::envelope& e = b.envelope;
  e.recipients.emplace_back(r.sender);
  e.received_at = r.now;
  e.size = m.size();
  e.wire_size = b.body.size();
  e.eight_bit = !is_ascii(m);
  e.body_8bitmime = e.eight_bit;
  e.smtputf8 = !is_ascii(r.sender);
  return b;
}

}  // namespace ringrelay::delivery
