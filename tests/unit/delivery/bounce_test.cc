// delivery::compose_bounce: the RFC 3464 report read back with a small MIME
// splitter. Each reason's status and words, several recipients, the null
// sender, the international forms, and that reflected text (replies,
// addresses, host names, the original headers) can add no header, field or
// part. The body is checked as the spool's DATA wire form: CRLF lines of at
// most 998 octets, dot-stuffed.
#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <ringrelay/delivery/bounce.hh>
#include <string>
#include <string_view>
#include <vector>

#include "time_zone.hh"
#include "wire_form.hh"

namespace ringrelay::delivery {
namespace {

constexpr std::int64_t at = 1'700'000'000;  // Tue, 14 Nov 2023 22:13:20 UTC
constexpr std::string_view first_boundary = "=_ringrelay_0123456789ABCDEF_1";

struct field {
  std::string name;
  std::string value;  // unfolded (RFC 5322 2.2.3), without the leading space

  bool operator==(const field&) const = default;
};

struct part {
  std::vector<field> headers;
  std::string body;
};

struct parsed {
  std::vector<field> headers;
  std::string boundary;
  std::string preamble;
  std::vector<part> parts;
  bool closed = false;
  std::string epilogue;
};

// The wire form's promises hold (test::unstuff); the body unstuffed.
std::string unstuff(std::string_view wire) {
  std::string problem;
  std::string plain = test::unstuff(wire, problem);
  EXPECT_EQ(problem, "");
  return plain;
}

std::vector<std::string> lines_of(std::string_view s) {
  std::vector<std::string> out;
  while (!s.empty()) {
    const std::size_t end = s.find("\r\n");
    out.emplace_back(s.substr(0, end));
    s.remove_prefix(end == std::string_view::npos ? s.size() : end + 2);
  }
  return out;
}

std::string join(const std::vector<std::string>& lines, std::size_t from, std::size_t to) {
  std::string out;
  for (std::size_t i = from; i < to; ++i) out.append(i == from ? "" : "\r\n").append(lines[i]);
  return out;
}

// Header fields of lines [from, to); continuation lines start with SP or
// HTAB. A line that is neither a field nor a continuation fails the test.
std::vector<field> fields_of(const std::vector<std::string>& lines, std::size_t from,
                             std::size_t to) {
  std::vector<field> out;
  for (std::size_t i = from; i < to; ++i) {
    const std::string& l = lines[i];
    if (!l.empty() && (l[0] == ' ' || l[0] == '\t') && !out.empty()) {
      out.back().value += l;
      continue;
    }
    const std::size_t colon = l.find(':');
    if (colon == std::string::npos || colon == 0) {
      ADD_FAILURE() << "not a header field: " << l;
      continue;
    }
    std::string value = l.substr(colon + 1);
    if (value.starts_with(" ")) value.erase(0, 1);
    out.push_back({l.substr(0, colon), value});
  }
  return out;
}

std::vector<std::string> names_of(const std::vector<field>& fields) {
  std::vector<std::string> out;
  for (const field& f : fields) out.push_back(f.name);
  return out;
}

std::string value_of(const std::vector<field>& fields, std::string_view name) {
  for (const field& f : fields) {
    if (f.name == name) return f.value;
  }
  return "(missing)";
}

// The part of an empty line: the index of the first one at or after `from`.
std::size_t empty_line(const std::vector<std::string>& lines, std::size_t from, std::size_t to) {
  while (from < to && !lines[from].empty()) ++from;
  return from;
}

// RFC 2046 5.1.1, just enough for what compose_bounce writes.
parsed split(std::string_view plain) {
  parsed p;
  const std::vector<std::string> lines = lines_of(plain);
  const std::size_t end = empty_line(lines, 0, lines.size());
  p.headers = fields_of(lines, 0, end);
  const std::string type = value_of(p.headers, "Content-Type");
  const std::size_t b = type.find("boundary=\"");
  if (b == std::string::npos) return p;
  p.boundary = type.substr(b + 10, type.find('"', b + 10) - b - 10);
  const std::string delimiter = "--" + p.boundary;
  std::size_t start = end + 1;
  bool in_preamble = true;
  const auto close_part = [&](std::size_t to) {
    if (in_preamble) {
      p.preamble = join(lines, start, to);
      in_preamble = false;
      return;
    }
    const std::size_t hdr_end = empty_line(lines, start, to);
    part x;
    x.headers = fields_of(lines, start, hdr_end);
    x.body = join(lines, std::min(hdr_end + 1, to), to);
    p.parts.push_back(std::move(x));
  };
  for (std::size_t i = start; i < lines.size(); ++i) {
    if (lines[i] == delimiter || lines[i] == delimiter + "--") {
      close_part(i);
      start = i + 1;
      if (lines[i] != delimiter) {
        p.closed = true;
        p.epilogue = join(lines, start, lines.size());
        break;
      }
    }
  }
  return p;
}

// The groups of a delivery-status body: per-message fields, then one group
// per recipient (RFC 3464 2.1).
std::vector<std::vector<field>> groups_of(std::string_view body) {
  std::vector<std::string> lines = lines_of(body);
  std::vector<std::vector<field>> out;
  std::size_t from = 0;
  while (from < lines.size()) {
    const std::size_t to = empty_line(lines, from, lines.size());
    out.push_back(fields_of(lines, from, to));
    from = to + 1;
  }
  return out;
}

std::size_t count(std::string_view hay, std::string_view needle) {
  std::size_t n = 0;
  for (std::size_t pos = hay.find(needle); pos != std::string_view::npos;
       pos = hay.find(needle, pos + 1)) {
    ++n;
  }
  return n;
}

bounced_recipient bob() {
  return {"bob@example.net", bounce_reason::rejected, "5.1.1",
          "550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown",
          "mx.example.net"};
}

bounce_request request() {
  bounce_request r;
  r.reporting_mta = "relay.test";
  r.message_id_domain = "relay.test";
  r.queue_id = 0x0123456789abcdef;
  r.arrival = at;
  r.now = at + 600;
  r.sequence = 1;
  r.sender = "alice@example.com";
  r.original_head =
      "From: Alice <alice@example.com>\r\n"
      "To: bob@example.net\r\n"
      "Subject: lunch\r\n"
      "\r\n"
      "Shall we?\r\n";
  r.recipients = {bob()};
  return r;
}

// A bounce read back, with the checks every bounce must pass: the wire
// form, the header names, three parts of the right types, the boundary
// nowhere but in the delimiters.
struct reading {
  bounce_message msg;
  std::string plain;
  parsed p;
  std::vector<std::vector<field>> report;
};

reading read(const bounce_request& r) {
  reading x;
  std::optional<bounce_message> b = compose_bounce(r);
  if (!b) {
    ADD_FAILURE() << "no bounce";
    return x;
  }
  x.msg = std::move(*b);
  x.plain = unstuff(x.msg.body);
  x.p = split(x.plain);
  const std::vector<std::string> top = {"From",         "To",          "Subject",
                                        "Date",         "Message-ID",  "Auto-Submitted",
                                        "MIME-Version", "Content-Type"};
  std::vector<std::string> names = names_of(x.p.headers);
  if (names.back() == "Content-Transfer-Encoding") names.pop_back();
  EXPECT_EQ(names, top);
  EXPECT_TRUE(x.p.closed);
  EXPECT_EQ(x.p.epilogue, "");
  EXPECT_EQ(x.p.preamble, "This is a MIME-encapsulated message.\r\n");
  EXPECT_EQ(x.p.parts.size(), 3u);
  // Once in Content-Type, then three delimiters and the close delimiter.
  EXPECT_EQ(count(x.plain, x.p.boundary), 5u);
  if (x.p.parts.size() == 3) x.report = groups_of(x.p.parts[1].body);
  return x;
}

// The notification with each recipient's explanation on one line.
std::string unwrapped(std::string text) {
  for (std::size_t pos; (pos = text.find("\r\n    ")) != std::string::npos;) {
    text.replace(pos, 6, " ");
  }
  return text;
}

// Every bounce test runs in UTC.
class bounce : public test::time_zone {
 protected:
  void SetUp() override { use("UTC0"); }
};

TEST_F(bounce, a_rejected_recipient_gives_this_report) {
  const std::optional<bounce_message> b = compose_bounce(request());
  ASSERT_TRUE(b);
  EXPECT_EQ(b->body,
            "From: Mail Delivery System <MAILER-DAEMON@relay.test>\r\n"
            "To: <alice@example.com>\r\n"
            "Subject: Undelivered Mail Returned to Sender\r\n"
            "Date: Tue, 14 Nov 2023 22:23:20 +0000\r\n"
            "Message-ID: <0123456789ABCDEF.1.1700000600.bounce@relay.test>\r\n"
            "Auto-Submitted: auto-replied\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: multipart/report; report-type=delivery-status;\r\n"
            "\tboundary=\"=_ringrelay_0123456789ABCDEF_1\"\r\n"
            "\r\n"
            "This is a MIME-encapsulated message.\r\n"
            "\r\n"
            "--=_ringrelay_0123456789ABCDEF_1\r\n"
            "Content-Description: Notification\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n"
            "\r\n"
            "This is the mail system at relay.test.\r\n"
            "\r\n"
            "Your message could not be delivered to the recipients below. It was accepted\r\n"
            "on Tue, 14 Nov 2023 22:13:20 +0000 with queue ID 0123456789ABCDEF. The\r\n"
            "technical report and the message's headers are attached.\r\n"
            "\r\n"
            "<bob@example.net>:\r\n"
            "    The message was refused for good by the mail server mx.example.net. Check\r\n"
            "    the address for typing errors; if it is right, reach the recipient another\r\n"
            "    way. The server answered: 550 5.1.1 <bob@example.net>: Recipient address\r\n"
            "    rejected: User unknown\r\n"
            "\r\n"
            "--=_ringrelay_0123456789ABCDEF_1\r\n"
            "Content-Description: Delivery report\r\n"
            "Content-Type: message/delivery-status\r\n"
            "\r\n"
            "Reporting-MTA: dns; relay.test\r\n"
            "X-Ringrelay-Queue-ID: 0123456789ABCDEF\r\n"
            "Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
            "\r\n"
            "Final-Recipient: rfc822; bob@example.net\r\n"
            "Action: failed\r\n"
            "Status: 5.1.1\r\n"
            "Remote-MTA: dns; mx.example.net\r\n"
            "Diagnostic-Code: smtp; 550 5.1.1 <bob@example.net>: Recipient address\r\n"
            " rejected: User unknown\r\n"
            "\r\n"
            "--=_ringrelay_0123456789ABCDEF_1\r\n"
            "Content-Description: Undelivered Message Headers\r\n"
            "Content-Type: text/rfc822-headers\r\n"
            "\r\n"
            "From: Alice <alice@example.com>\r\n"
            "To: bob@example.net\r\n"
            "Subject: lunch\r\n"
            "\r\n"
            "--=_ringrelay_0123456789ABCDEF_1--\r\n");
}

TEST_F(bounce, its_envelope_is_the_null_sender_to_the_original_sender) {
  const reading x = read(request());
  const spool::envelope& e = x.msg.envelope;
  EXPECT_EQ(e.sender, "");
  EXPECT_EQ(e.recipients, std::vector<std::string>{"alice@example.com"});
  EXPECT_EQ(e.received_at, at + 600);
  EXPECT_FALSE(e.body_is_raw);
  EXPECT_FALSE(e.eight_bit);
  EXPECT_FALSE(e.body_8bitmime);
  EXPECT_FALSE(e.smtputf8);
  EXPECT_EQ(e.size, x.plain.size());
  EXPECT_EQ(e.wire_size, x.msg.body.size());
  EXPECT_EQ(e.relays, 0u);
  EXPECT_EQ(e.account, "");
}

TEST_F(bounce, a_null_sender_or_no_recipient_gets_no_bounce) {
  bounce_request r = request();
  r.sender = "";
  EXPECT_FALSE(compose_bounce(r));
  r = request();
  r.recipients.clear();
  EXPECT_FALSE(compose_bounce(r));
}

TEST_F(bounce, each_reason_has_its_status_diagnostic_and_words) {
  struct row {
    bounce_reason reason;
    std::string diagnostic;
    std::string status;
    std::string diagnostic_code;
    std::string words;  // a phrase of the explanation
  };
  const std::vector<row> rows = {
      {bounce_reason::rejected, "550 no such user", "5.0.0", "smtp; 550 no such user",
       "refused for good by the mail server mx.example.net. Check the address for typing "
       "errors; if it is right, reach the recipient another way. The server answered: 550 no "
       "such user"},
      {bounce_reason::rejected, "", "5.0.0", "(missing)", "reach the recipient another way.\r\n"},
      {bounce_reason::expired, "451 4.3.0 try later", "4.4.7", "smtp; 451 4.3.0 try later",
       "could not be delivered in 10 minutes of trying, and this relay has given up. The "
       "recipient's mail server may be down or refusing mail for now: send the message again "
       "later. The last attempt ended with: 451 4.3.0 try later\r\n"},
      {bounce_reason::no_8bitmime, "", "5.6.3",
       "X-ringrelay; message has 8-bit content but mx.example.net does not offer 8BITMIME",
       "does not accept 8-bit data (it lacks 8BITMIME)"},
      {bounce_reason::no_smtputf8, "", "5.6.7",
       "X-ringrelay; SMTPUTF8 is required but was not offered by mx.example.net", "needs SMTPUTF8"},
      {bounce_reason::loop, "", "5.4.6", "X-ringrelay; mail for example.net loops back to myself",
       "Mail for example.net is routed back to this relay (relay.test): a mail loop"},
      {bounce_reason::loop, "MX mx.example.net is this host", "5.4.6",
       "X-ringrelay; MX mx.example.net is this host", "a mail loop"},
      {bounce_reason::unroutable, "the domain example.net does not exist (DNS: NXDOMAIN)", "5.1.2",
       "X-ringrelay; the domain example.net does not exist (DNS: NXDOMAIN)",
       "Mail for example.net cannot be delivered: the domain example.net does not exist (DNS: "
       "NXDOMAIN). Check the domain"},
      {bounce_reason::unroutable, "", "5.1.2", "X-ringrelay; no mail server found for example.net",
       "cannot be delivered"},
  };
  for (const row& w : rows) {
    bounce_request r = request();
    r.recipients = {{"bob@example.net", w.reason, "", w.diagnostic, "mx.example.net"}};
    const reading x = read(r);
    ASSERT_EQ(x.report.size(), 2u);
    const std::vector<field>& g = x.report[1];
    EXPECT_EQ(value_of(g, "Status"), w.status) << w.words;
    EXPECT_EQ(value_of(g, "Action"), "failed");
    EXPECT_EQ(value_of(g, "Diagnostic-Code"), w.diagnostic_code);
    const std::string text = unwrapped(x.p.parts[0].body);
    EXPECT_NE(text.find(w.words), std::string::npos) << text;
  }
}

TEST_F(bounce, without_a_remote_host_our_words_name_the_upstream) {
  bounce_request r = request();
  r.recipients = {{"bob@example.net", bounce_reason::no_8bitmime, "", "", ""}};
  const reading x = read(r);
  ASSERT_EQ(x.report.size(), 2u);
  EXPECT_EQ(value_of(x.report[1], "Diagnostic-Code"),
            "X-ringrelay; message has 8-bit content but the upstream does not offer 8BITMIME");
  EXPECT_EQ(value_of(x.report[1], "Remote-MTA"), "(missing)");
  EXPECT_NE(unwrapped(x.p.parts[0].body).find("but the recipient's mail server does not accept"),
            std::string::npos);
}

TEST_F(bounce, the_callers_status_is_kept_when_it_is_a_failure_code) {
  const std::vector<std::pair<std::string, std::string>> rows = {
      {"5.1.1", "5.1.1"}, {"4.2.2", "4.2.2"}, {"5.7.123", "5.7.123"},     {"", "5.0.0"},
      {"2.0.0", "5.0.0"}, {"5.1", "5.0.0"},   {"5.1.1000", "5.0.0"},      {"5.1.1 ", "5.0.0"},
      {"x", "5.0.0"},     {"5..1", "5.0.0"},  {"5.1.1\r\nX: y", "5.0.0"},
  };
  for (const auto& [given, reported] : rows) {
    bounce_request r = request();
    r.recipients[0].status = given;
    const reading x = read(r);
    ASSERT_EQ(x.report.size(), 2u);
    EXPECT_EQ(value_of(x.report[1], "Status"), reported) << given;
  }
}

TEST_F(bounce, several_recipients_get_a_group_and_a_paragraph_each) {
  bounce_request r = request();
  r.recipients = {
      bob(),
      {"carol@example.org", bounce_reason::expired, "4.4.1", "451 4.4.1 connection timed out", ""},
      {"dave@example.net", bounce_reason::loop, "", "", ""}};
  const reading x = read(r);
  ASSERT_EQ(x.report.size(), 4u);
  EXPECT_EQ(names_of(x.report[0]),
            (std::vector<std::string>{"Reporting-MTA", "X-Ringrelay-Queue-ID", "Arrival-Date"}));
  EXPECT_EQ(value_of(x.report[1], "Final-Recipient"), "rfc822; bob@example.net");
  EXPECT_EQ(value_of(x.report[2], "Final-Recipient"), "rfc822; carol@example.org");
  EXPECT_EQ(value_of(x.report[2], "Status"), "4.4.1");
  EXPECT_EQ(value_of(x.report[2], "Remote-MTA"), "(missing)");
  EXPECT_EQ(names_of(x.report[3]),
            (std::vector<std::string>{"Final-Recipient", "Action", "Status", "Diagnostic-Code"}));
  const std::string& text = x.p.parts[0].body;
  const std::size_t b = text.find("\r\n<bob@example.net>:\r\n");
  const std::size_t c = text.find("\r\n<carol@example.org>:\r\n");
  const std::size_t d = text.find("\r\n<dave@example.net>:\r\n");
  EXPECT_TRUE(b < c && c < d && d != std::string::npos) << text;
  EXPECT_NE(text.find("The recipient's mail server may be down", c), std::string::npos);
}

// Control octets in reflected text become spaces: whatever they spell stays
// inside the field or sentence it came in.
TEST_F(bounce, reflected_text_cannot_add_headers_fields_or_parts) {
  const std::string evil =
      "\r\nX-Injected: yes\r\n\r\n--" + std::string(first_boundary) + "\r\nContent-Type: x/y\n\r.";
  bounce_request r = request();
  const std::string sender = "alice@example.com" + evil;
  const std::string host = "relay.test" + evil;
  r.sender = sender;
  r.reporting_mta = host;
  r.message_id_domain = host;
  r.recipients = {{"bob@example.net" + evil, bounce_reason::rejected, "5.1.1" + evil,
                   "550 5.1.1 no" + evil, "mx.example.net" + evil},
                  {"carol@example.net", bounce_reason::loop, "", "own words" + evil, ""}};
  const reading x = read(r);
  ASSERT_EQ(x.p.parts.size(), 3u);
  for (const part& p : x.p.parts) {
    for (const field& f : p.headers) {
      EXPECT_TRUE(f.name == "Content-Description" || f.name == "Content-Type") << f.name;
    }
  }
  ASSERT_EQ(x.report.size(), 3u);
  for (std::size_t i = 1; i < x.report.size(); ++i) {
    for (const field& f : x.report[i]) {
      EXPECT_NE(f.name, "X-Injected");
      EXPECT_NE(f.name, "Content-Type");
    }
  }
  EXPECT_EQ(value_of(x.report[1], "Status"), "5.0.0");
  // No line of ours starts with the injected text.
  for (const std::string& line : lines_of(x.plain)) {
    EXPECT_FALSE(line.starts_with("X-Injected")) << line;
    EXPECT_FALSE(line.starts_with("Content-Type: x/y")) << line;
  }
  EXPECT_NE(x.p.boundary, first_boundary);
  // Host names keep their syntax: no space or angle bracket in them.
  const std::string from = value_of(x.p.headers, "From");
  const std::string_view prefix = "Mail Delivery System <MAILER-DAEMON@relay.test";
  ASSERT_TRUE(from.starts_with(prefix) && from.ends_with(">")) << from;
  EXPECT_EQ(from.find_first_of(" <>", prefix.size()), from.size() - 1) << from;
  // The bounce still goes to the sender as stored.
  EXPECT_EQ(x.msg.envelope.recipients, std::vector<std::string>{sender});
}

TEST_F(bounce, original_headers_cannot_end_the_part_or_reach_past_their_section) {
  bounce_request r = request();
  const std::string head = "Subject: a\r\n--" + std::string(first_boundary) + "\r\n--" +
                           std::string(first_boundary) + "_1--\r\nX-Bare: cr\rlf\n" + "X-Nul: a" +
                           std::string(1, '\0') + "b\r\n\r\nX-Body: not a header\r\n";
  r.original_head = head;
  const reading x = read(r);
  EXPECT_EQ(x.p.boundary, std::string(first_boundary) + "_2");
  ASSERT_EQ(x.p.parts.size(), 3u);
  EXPECT_EQ(x.p.parts[2].body, "Subject: a\r\n--" + std::string(first_boundary) + "\r\n--" +
                                   std::string(first_boundary) +
                                   "_1--\r\nX-Bare: cr lf\r\nX-Nul: a b\r\n");
}

TEST_F(bounce, the_header_section_is_taken_up_to_the_first_empty_line) {
  struct row {
    std::string head;
    bool raw;
    std::string returned;
  };
  const std::vector<row> rows = {
      {"A: 1\r\nB: 2\r\n\r\nbody\r\n", false, "A: 1\r\nB: 2\r\n"},
      {"A: 1\r\n\tfolded\r\n\r\n", false, "A: 1\r\n\tfolded\r\n"},
      {"A: 1\nB: 2\n\nbody\n", true, "A: 1\r\nB: 2\r\n"},
      {"A: 1\r\nB: 2\r\n", false, "A: 1\r\nB: 2\r\n"},
      {"A: 1\r\nB: cut mid-li", false, "A: 1\r\nB: cut mid-li\r\n"},
      {"\r\nbody only\r\n", false, ""},
      {"", false, ""},
      // Dot-stuffing: a stored DATA body has it, a BDAT body does not.
      {"..A: 1\r\n...\r\n\r\n", false, ".A: 1\r\n..\r\n"},
      {".A: 1\r\n\r\n", true, ".A: 1\r\n"},
      // The DATA form stuffs after CRLF only; a dot after a bare LF is text.
      {"A: 1\n.B\r\n\r\n", false, "A: 1\r\n.B\r\n"},
  };
  for (const row& w : rows) {
    bounce_request r = request();
    r.original_head = w.head;
    r.original_body_is_raw = w.raw;
    const reading x = read(r);
    ASSERT_EQ(x.p.parts.size(), 3u);
    EXPECT_EQ(x.p.parts[2].body, w.returned) << w.head;
  }
}

TEST_F(bounce, a_stuffed_header_line_is_stuffed_again_on_the_wire) {
  bounce_request r = request();
  r.original_head = ".A: 1\r\n\r\n";
  r.original_body_is_raw = true;
  const std::optional<bounce_message> b = compose_bounce(r);
  ASSERT_TRUE(b);
  EXPECT_NE(b->body.find("\r\n..A: 1\r\n"), std::string::npos);
}

TEST_F(bounce, long_header_lines_are_split_into_continuations) {
  bounce_request r = request();
  const std::string line = "X-Long: " + std::string(3000, 'a');
  const std::string head = line + "\r\n\r\n";
  r.original_head = head;
  const reading x = read(r);
  ASSERT_EQ(x.p.parts.size(), 3u);
  const std::vector<std::string> lines = lines_of(x.p.parts[2].body);
  ASSERT_EQ(lines.size(), 4u);
  std::string joined;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    EXPECT_LE(lines[i].size(), 990u);
    if (i > 0) {
      EXPECT_TRUE(lines[i].starts_with(" "));
      joined.append(lines[i], 1);
    } else {
      joined = lines[i];
    }
  }
  EXPECT_EQ(joined, line);
}

TEST_F(bounce, returned_headers_are_capped_in_whole_lines) {
  bounce_request r = request();
  std::string head;
  for (int i = 0; i < 1000; ++i) head += "X-Line: " + std::string(92, 'a' + i % 26) + "\r\n";
  head += "\r\n";
  r.original_head = head;
  const reading x = read(r);
  ASSERT_EQ(x.p.parts.size(), 3u);
  const std::string& returned = x.p.parts[2].body;
  EXPECT_LE(returned.size(), max_returned_headers);
  EXPECT_EQ(returned.size() % 102, 0u);
  EXPECT_EQ(returned, head.substr(0, returned.size()));
}

TEST_F(bounce, long_diagnostics_are_folded_under_998_octets) {
  std::string words;
  for (int i = 0; i < 500; ++i) words += "word" + std::to_string(i) + " ";
  words.pop_back();
  const std::string unbroken(5000, 'x');
  for (const std::string& diagnostic : {words, unbroken}) {
    bounce_request r = request();
    r.recipients[0].diagnostic = "550 " + diagnostic;
    const reading x = read(r);  // checks every line's length
    ASSERT_EQ(x.report.size(), 2u);
    const std::string code = value_of(x.report[1], "Diagnostic-Code");
    if (diagnostic == words) {
      EXPECT_EQ(code, "smtp; 550 " + words);
    } else {
      // Cut in pieces: unfolding shows where (a space each).
      std::string glued = code;
      std::erase(glued, ' ');
      EXPECT_EQ(glued, "smtp;550" + unbroken);
    }
  }
}

TEST_F(bounce, raw_8bit_headers_keep_their_octets_with_an_8bit_encoding) {
  bounce_request r = request();
  r.original_head = "Subject: caf\xc3\xa9\r\n\r\n";
  r.recipients[0].diagnostic = "550 unknown user j\xc3\xb6rg";
  const reading x = read(r);
  ASSERT_EQ(x.p.parts.size(), 3u);
  EXPECT_EQ(value_of(x.p.headers, "Content-Transfer-Encoding"), "8bit");
  EXPECT_NE(value_of(x.p.headers, "Content-Type").find("report-type=delivery-status;"),
            std::string::npos);
  EXPECT_EQ(value_of(x.p.parts[2].headers, "Content-Type"), "text/rfc822-headers");
  EXPECT_EQ(value_of(x.p.parts[2].headers, "Content-Transfer-Encoding"), "8bit");
  EXPECT_EQ(x.p.parts[2].body, "Subject: caf\xc3\xa9\r\n");
  // The classic report is ASCII: reflected 8-bit octets become "?".
  EXPECT_EQ(value_of(x.p.parts[1].headers, "Content-Type"), "message/delivery-status");
  EXPECT_EQ(value_of(x.report[1], "Diagnostic-Code"), "smtp; 550 unknown user j??rg");
  EXPECT_EQ(value_of(x.p.parts[0].headers, "Content-Type"), "text/plain; charset=us-ascii");
  EXPECT_TRUE(x.msg.envelope.eight_bit);
  EXPECT_TRUE(x.msg.envelope.body_8bitmime);
  EXPECT_FALSE(x.msg.envelope.smtputf8);
}

TEST_F(bounce, international_mail_gets_the_rfc_6533_forms) {
  bounce_request r = request();
  r.original_smtputf8 = true;
  r.sender = "ren\xc3\xa9@example.com";
  r.original_head = "Subject: caf\xc3\xa9\r\n\r\n";
  r.recipients = {{"j\xc3\xb6rg@example.net", bounce_reason::no_smtputf8, "", "", "mx.example.net"},
                  {"bob@example.net", bounce_reason::rejected, "5.1.1",
                   "550 5.1.1 unknown \xc3\xb6 \xff\xc3", ""}};
  const reading x = read(r);
  ASSERT_EQ(x.p.parts.size(), 3u);
  EXPECT_NE(value_of(x.p.headers, "Content-Type").find("report-type=global-delivery-status;"),
            std::string::npos);
  EXPECT_EQ(value_of(x.p.headers, "To"), "<ren\xc3\xa9@example.com>");
  EXPECT_EQ(value_of(x.p.parts[0].headers, "Content-Type"), "text/plain; charset=utf-8");
  EXPECT_EQ(value_of(x.p.parts[1].headers, "Content-Type"), "message/global-delivery-status");
  EXPECT_EQ(value_of(x.p.parts[1].headers, "Content-Transfer-Encoding"), "8bit");
  EXPECT_EQ(value_of(x.p.parts[2].headers, "Content-Type"), "message/global-headers");
  ASSERT_EQ(x.report.size(), 3u);
  EXPECT_EQ(value_of(x.report[1], "Final-Recipient"), "utf-8; j\xc3\xb6rg@example.net");
  EXPECT_EQ(value_of(x.report[1], "Status"), "5.6.7");
  EXPECT_EQ(value_of(x.report[2], "Final-Recipient"), "rfc822; bob@example.net");
  // UTF-8 is kept, octets that are not UTF-8 are not.
  EXPECT_EQ(value_of(x.report[2], "Diagnostic-Code"), "smtp; 550 5.1.1 unknown \xc3\xb6 ??");
  EXPECT_TRUE(x.msg.envelope.smtputf8);
  EXPECT_TRUE(x.msg.envelope.eight_bit);
  EXPECT_EQ(x.msg.envelope.recipients, std::vector<std::string>{"ren\xc3\xa9@example.com"});
}

TEST_F(bounce, an_ascii_sender_needs_no_smtputf8_for_the_bounce) {
  bounce_request r = request();
  r.recipients[0].address = "j\xc3\xb6rg@example.net";
  const reading x = read(r);
  EXPECT_EQ(value_of(x.p.parts[1].headers, "Content-Type"), "message/global-delivery-status");
  EXPECT_FALSE(x.msg.envelope.smtputf8);
  EXPECT_TRUE(x.msg.envelope.body_8bitmime);
}

TEST_F(bounce, the_same_input_gives_the_same_bounce_and_the_sequence_tells_them_apart) {
  const bounce_request r = request();
  bounce_request next = request();
  next.sequence = 2;
  const reading a = read(r);
  const reading again = read(r);
  const reading b = read(next);
  EXPECT_EQ(a.msg.body, again.msg.body);
  EXPECT_NE(value_of(a.p.headers, "Message-ID"), value_of(b.p.headers, "Message-ID"));
  EXPECT_EQ(b.p.boundary, "=_ringrelay_0123456789ABCDEF_2");
}

}  // namespace
}  // namespace ringrelay::delivery
