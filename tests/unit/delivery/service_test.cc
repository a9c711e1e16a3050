// delivery::received_header: the exact trace field (SPEC.md §6), the date
// with its numeric zone, and that client-supplied text cannot add lines or
// break the field's syntax.
#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <regex>
#include <ringrelay/delivery/service.hh>
#include <string>
#include <vector>

#include "time_zone.hh"

namespace ringrelay::delivery {
namespace {

constexpr std::int64_t at = 1'700'000'000;  // Tue, 14 Nov 2023 22:13:20 UTC

using test::time_zone;

spool::stored_message message(std::vector<std::string> recipients) {
  spool::stored_message m;
  m.id = 0x0123456789ABCDEFull;
  m.env.received_at = at;
  m.env.helo = "client.test";
  m.env.client_address = "192.0.2.7";
  m.env.sender = "alice@example.org";
  m.env.recipients = std::move(recipients);
  return m;
}

using received = time_zone;

TEST_F(received, a_single_recipient_is_named_in_a_for_clause) {
  use("UTC0");
  EXPECT_EQ(received_header(message({"bob@example.com"}), "relay.test"),
            "Received: from client.test ([192.0.2.7])\r\n"
            "\tby relay.test (ringrelay)\r\n"
            "\twith ESMTP id 0123456789ABCDEF\r\n"
            "\tfor <bob@example.com>; Tue, 14 Nov 2023 22:13:20 +0000\r\n");
}

TEST_F(received, several_recipients_are_not_named) {
  use("UTC0");
  EXPECT_EQ(received_header(message({"bob@example.com", "carol@example.net"}), "relay.test"),
            "Received: from client.test ([192.0.2.7])\r\n"
            "\tby relay.test (ringrelay)\r\n"
            "\twith ESMTP id 0123456789ABCDEF; Tue, 14 Nov 2023 22:13:20 +0000\r\n");
}

TEST_F(received, protocol_names_follow_rfc_3848_and_6531) {
  use("UTC0");
  struct row {
    bool smtputf8;
    const char* tls;
    const char* auth;
    const char* with;
    bool helo = false;
  };
  const row rows[] = {
      {false, "", "", "ESMTP"},
      {false, "TLSv1.3 TLS_AES_128_GCM_SHA256", "", "ESMTPS"},
      {false, "", "alice", "ESMTPA"},
      {false, "TLSv1.2 ECDHE-RSA-AES256-GCM-SHA384", "alice", "ESMTPSA"},
      {true, "", "", "UTF8SMTP"},
      {true, "TLSv1.3 TLS_AES_256_GCM_SHA384", "alice", "UTF8SMTPSA"},
      // After HELO: plain SMTP, which has no TLS variant (implicit TLS).
      {false, "", "", "SMTP", true},
      {false, "TLSv1.3 TLS_AES_128_GCM_SHA256", "", "SMTP", true},
  };
  for (const auto& r : rows) {
    auto m = message({"bob@example.com", "carol@example.net"});
    m.env.helo_greeting = r.helo;
    m.env.smtputf8 = r.smtputf8;
    m.env.tls_info = r.tls;
    m.env.auth_info = r.auth;
    std::string h = received_header(m, "relay.test");
    EXPECT_NE(h.find(std::string("\r\n\twith ") + r.with + " id 0123456789ABCDEF;"),
              std::string::npos)
        << h;
  }
}

TEST_F(received, the_tls_version_and_cipher_go_in_a_comment) {
  use("UTC0");
  auto m = message({"bob@example.com"});
  m.env.tls_info = "TLSv1.3 TLS_AES_128_GCM_SHA256";
  EXPECT_EQ(received_header(m, "relay.test"),
            "Received: from client.test ([192.0.2.7])\r\n"
            "\tby relay.test (ringrelay)\r\n"
            "\t(using TLSv1.3 with cipher TLS_AES_128_GCM_SHA256)\r\n"
            "\twith ESMTPS id 0123456789ABCDEF\r\n"
            "\tfor <bob@example.com>; Tue, 14 Nov 2023 22:13:20 +0000\r\n");
}

TEST_F(received, a_missing_helo_reads_unknown) {
  use("UTC0");
  auto m = message({"bob@example.com"});
  m.env.helo.clear();
  EXPECT_EQ(received_header(m, "relay.test").rfind("Received: from unknown ([192.0.2.7])\r\n", 0),
            0u);
}

TEST_F(received, the_date_is_rfc_5322_with_a_numeric_zone) {
  struct row {
    const char* tz;
    const char* date;
  };
  const row rows[] = {
      {"UTC0", "Tue, 14 Nov 2023 22:13:20 +0000"},
      {"<+0530>-5:30", "Wed, 15 Nov 2023 03:43:20 +0530"},
      {"<-03>3", "Tue, 14 Nov 2023 19:13:20 -0300"},
      {"EST5EDT,M3.2.0,M11.1.0", "Tue, 14 Nov 2023 17:13:20 -0500"},
  };
  for (const auto& r : rows) {
    use(r.tz);
    std::string h = received_header(message({"a@b.example", "c@d.example"}), "relay.test");
    EXPECT_TRUE(h.ends_with(std::string("; ") + r.date + "\r\n")) << r.tz << ": " << h;
  }
  // Summer time, and a day of the month below 10.
  use("EST5EDT,M3.2.0,M11.1.0");
  auto m = message({"a@b.example", "c@d.example"});
  m.env.received_at = 1'688'360'000;  // 2023-07-03 04:53:20 UTC
  EXPECT_TRUE(received_header(m, "relay.test").ends_with("; Mon, 03 Jul 2023 00:53:20 -0400\r\n"))
      << received_header(m, "relay.test");
  // Whatever the zone, the shape of RFC 5322 3.3 (day, date, time, zone).
  const std::regex date(
      R"(; (Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) )"
      R"(\d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}\r\n$)");
  for (const char* tz : {"UTC0", "<+1345>-13:45", "<-1130>11:30"}) {
    use(tz);
    EXPECT_TRUE(std::regex_search(received_header(m, "relay.test"), date)) << tz;
  }
}

// The lines of a header field: each must end in CRLF, hold no other CR or
// LF (nor NUL), and every line after the first is a continuation (TAB).
std::vector<std::string> checked_lines(const std::string& h) {
  std::vector<std::string> lines;
  std::size_t from = 0;
  while (from < h.size()) {
    std::size_t end = h.find("\r\n", from);
    EXPECT_NE(end, std::string::npos) << "the last line does not end in CRLF: " << h;
    if (end == std::string::npos) break;
    std::string line = h.substr(from, end - from);
    EXPECT_EQ(line.find_first_of(std::string("\r\n\0", 3)), std::string::npos)
        << "bare CR, LF or NUL in: " << line;
    if (!lines.empty()) {
      EXPECT_EQ(line.rfind('\t', 0), 0u) << "not a continuation: " << line;
    }
    lines.push_back(line);
    from = end + 2;
  }
  return lines;
}

TEST_F(received, client_text_cannot_add_lines_or_break_the_syntax) {
  use("UTC0");
  const std::string hostile[] = {
      "evil\r\nX-Injected: yes",
      "evil\nX-Injected: yes",
      "evil\rX-Injected: yes",
      std::string("nul\0byte", 8),
      "a (comment) b",
      "close) ; for <x@y>",
      "<<>>;;(())",
      "\r\n\r\n",
      "\r\n\tfolded: looks like a continuation",
      "tab\there\x7f\x01\x1f",
  };
  for (bool tls : {false, true}) {
    for (std::size_t recipients : {1, 2}) {
      auto base = message(recipients == 1 ? std::vector<std::string>{"bob@example.com"}
                                          : std::vector<std::string>{"b@x.example", "c@y.example"});
      if (tls) base.env.tls_info = "TLSv1.3 TLS_AES_128_GCM_SHA256";
      const std::string benign = received_header(base, "relay.test");
      const auto benign_lines = checked_lines(benign);
      for (const auto& bad : hostile) {
        for (int field = 0; field < 5; ++field) {
          auto m = base;
          switch (field) {
            case 0:
              m.env.helo = bad;
              break;
            case 1:
              m.env.client_address = bad;
              break;
            case 2:
              m.env.recipients[0] = bad;
              break;
            case 3:
              if (!tls) continue;
              m.env.tls_info = "TLSv1.3 " + bad;  // the cipher part
              break;
            case 4:
              if (!tls) continue;
              m.env.tls_info = bad + " TLS_AES_128_GCM_SHA256";  // the version part
              break;
          }
          const std::string h = received_header(m, "relay.test");
          SCOPED_TRACE("field " + std::to_string(field) + ", recipients " +
                       std::to_string(recipients) + ", tls " + std::to_string(tls) + ": " + h);
          auto lines = checked_lines(h);
          ASSERT_EQ(lines.size(), benign_lines.size());
          for (char c : {'(', ')', '<', '>', ';', '['}) {
            EXPECT_EQ(std::count(h.begin(), h.end(), c),
                      std::count(benign.begin(), benign.end(), c))
                << "'" << c << "'";
          }
          // The fixed parts are where they belong.
          EXPECT_EQ(lines[0].rfind("Received: from ", 0), 0u);
          EXPECT_EQ(lines[1], "\tby relay.test (ringrelay)");
          EXPECT_TRUE(h.ends_with("; Tue, 14 Nov 2023 22:13:20 +0000\r\n"));
          EXPECT_NE(h.find(" id 0123456789ABCDEF"), std::string::npos);
          EXPECT_EQ(h.find("\r\nX-Injected"), std::string::npos);
        }
      }
    }
  }
}

}  // namespace
}  // namespace ringrelay::delivery
