#include <gtest/gtest.h>

#include <algorithm>
#include <ringrelay/delivery/upstream_session.hh>
#include <string>
#include <utility>
#include <vector>

namespace ringrelay::delivery {
namespace {

constexpr std::string_view greeting = "220 mx.example ESMTP\r\n";
constexpr std::string_view ehlo_command = "EHLO relay.example\r\n";
// Everything the relay uses, with a SIZE limit.
constexpr std::string_view ehlo_full =
    "250-mx.example Hello\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250-8BITMIME\r\n"
    "250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n250 CHUNKING\r\n";
// No PIPELINING, no SIZE: one command at a time, no SIZE= parameter.
constexpr std::string_view ehlo_plain =
    "250-mx.example\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n";
constexpr std::string_view ehlo_pipelining_only = "250-mx.example\r\n250 PIPELINING\r\n";
constexpr std::string_view ehlo_nothing = "250 mx.example\r\n";

const char* framing_name(body_framing f) {
  switch (f) {
    case body_framing::data_as_stored:
      return "data_as_stored";
    case body_framing::data_stuffing_needed:
      return "data_stuffing_needed";
    case body_framing::bdat:
      return "bdat";
  }
  return "?";
}

// Plays the glue: records what the session sends and the events it raises,
// and "sends" the body (a marker naming the framing) on send_body.
struct driver {
  upstream_session s{"relay.example"};
  std::string sent;
  std::vector<event> events;

  void take() {
    sent += s.output();
    s.output().clear();
  }
  void collect(event e) {
    for (; e != event::none; e = s.next_event()) {
      events.push_back(e);
      if (e == event::send_body) {
        take();
        sent += std::string("<body ") + framing_name(s.framing()) + ">";
        s.body_sent();
      }
    }
    take();
  }
  // Feeds `in` in two pieces cut at `cut` (clamped), or byte by byte when
  // `cut` is `byte_by_byte`.
  static constexpr std::size_t byte_by_byte = static_cast<std::size_t>(-1);
  void feed(std::string_view in, std::size_t cut = 0) {
    if (cut == byte_by_byte) {
      for (char c : in) collect(s.feed(std::string_view(&c, 1)));
      return;
    }
    cut = std::min(cut, in.size());
    if (cut > 0) collect(s.feed(in.substr(0, cut)));
    if (cut < in.size()) collect(s.feed(in.substr(cut)));
  }
  std::string pop_sent() { return std::exchange(sent, {}); }
  std::vector<event> pop_events() { return std::exchange(events, {}); }
  void connect(std::string_view ehlo_reply) {
    feed(greeting);
    ASSERT_EQ(pop_sent(), ehlo_command);
    feed(ehlo_reply);
    ASSERT_EQ(pop_events(), std::vector<event>{event::ready});
    ASSERT_EQ(s.state(), session_state::ready);
  }
};

envelope make_envelope(std::vector<std::string> recipients, std::uint64_t size = 100) {
  envelope e;
  e.sender = "a@x.example";
  e.recipients = std::move(recipients);
  e.size = size;
  return e;
}

envelope two_recipients() {
  return make_envelope({"b@y.example", "c@y.example"});
}

envelope with(envelope e, bool envelope::*flag) {
  e.*flag = true;
  return e;
}

struct expected_result {
  outcome status;
  std::uint16_t code;
  std::string_view enhanced;
};

struct step {
  std::string_view server;  // what the upstream says
  std::string_view client;  // what the session sends after it
};

struct dialogue {
  const char* name;
  std::string_view ehlo;
  envelope env;
  std::vector<step> steps;  // the first step's server text is empty: start_message
  std::vector<event> events;
  std::vector<expected_result> results;
  session_state end = session_state::ready;
};

const std::string_view pipelined_two =
    "MAIL FROM:<a@x.example> SIZE=100\r\nRCPT TO:<b@y.example>\r\nRCPT TO:<c@y.example>\r\n"
    "DATA\r\n";
const std::vector<event> delivered_events = {event::send_body, event::message_done, event::ready};
const std::vector<event> rset_events = {event::message_done, event::ready};
const std::vector<event> local_refusal_events = {event::message_done, event::ready};

std::vector<dialogue> dialogues() {
  return {
      {"pipelined_batch_then_body",
       ehlo_full,
       two_recipients(),
       {{"", pipelined_two},
        {"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n",
         "<body data_as_stored>.\r\n"},
        {"250 2.0.0 Ok: queued as 1234\r\n", ""}},
       delivered_events,
       {{outcome::delivered, 250, "2.0.0"}, {outcome::delivered, 250, "2.0.0"}}},
      {"one_command_at_a_time_without_pipelining",
       ehlo_plain,
       two_recipients(),
       {{"", "MAIL FROM:<a@x.example>\r\n"},
        {"250 2.1.0 Ok\r\n", "RCPT TO:<b@y.example>\r\n"},
        {"250 2.1.5 Ok\r\n", "RCPT TO:<c@y.example>\r\n"},
        {"250 2.1.5 Ok\r\n", "DATA\r\n"},
        {"354 go ahead\r\n", "<body data_as_stored>.\r\n"},
        {"250 2.0.0 Ok\r\n", ""}},
       delivered_events,
       {{outcome::delivered, 250, "2.0.0"}, {outcome::delivered, 250, "2.0.0"}}},
      {"one_recipient_refused_with_multi_line_reply",
       ehlo_full,
       two_recipients(),
       {{"", pipelined_two},
        {"250 2.1.0 Ok\r\n550-5.1.1 No such user\r\n550 5.1.1 see https://help.example\r\n"
         "250 2.1.5 Ok\r\n354 go\r\n",
         "<body data_as_stored>.\r\n"},
        {"250 2.0.0 Ok\r\n", ""}},
       delivered_events,
       {{outcome::permanent, 550, "5.1.1"}, {outcome::delivered, 250, "2.0.0"}}},
      {"one_recipient_deferred",
       ehlo_full,
       two_recipients(),
       {{"", pipelined_two},
        {"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n450 4.2.1 Mailbox busy\r\n354 go\r\n",
         "<body data_as_stored>.\r\n"},
        {"250 2.0.0 Ok\r\n", ""}},
       delivered_events,
       {{outcome::delivered, 250, "2.0.0"}, {outcome::temporary, 450, "4.2.1"}}},
      {"all_recipients_refused_pipelined",
       ehlo_full,
       two_recipients(),
       {{"", pipelined_two},
        {"250 2.1.0 Ok\r\n550 5.1.1 No\r\n550 5.1.1 No\r\n554 5.5.1 No valid recipients\r\n",
         "RSET\r\n"},
        {"250 2.0.0 Ok\r\n", ""}},
       rset_events,
       {{outcome::permanent, 550, "5.1.1"}, {outcome::permanent, 550, "5.1.1"}}},
      {"all_recipients_refused_one_at_a_time",
       ehlo_plain,
       two_recipients(),
       {{"", "MAIL FROM:<a@x.example>\r\n"},
        {"250 2.1.0 Ok\r\n", "RCPT TO:<b@y.example>\r\n"},
        {"550 5.1.1 No\r\n", "RCPT TO:<c@y.example>\r\n"},
        {"451 4.3.0 Later\r\n", "RSET\r\n"},
        {"250 2.0.0 Ok\r\n", ""}},
       rset_events,
       {{outcome::permanent, 550, "5.1.1"}, {outcome::temporary, 451, "4.3.0"}}},
      {"mail_refused_pipelined_keeps_the_mail_reply",
       ehlo_full,
       two_recipients(),
       {{"", pipelined_two},
        {"550 5.7.1 Sender rejected\r\n503 5.5.1 Need MAIL\r\n503 5.5.1 Need MAIL\r\n"
         "503 5.5.1 Need MAIL\r\n",
         "RSET\r\n"},
        {"250 2.0.0 Ok\r\n", ""}},
       rset_events,
       {{outcome::permanent, 550, "5.7.1"}, {outcome::permanent, 550, "5.7.1"}}},
      {"mail_deferred_one_at_a_time",
       ehlo_plain,
       two_recipients(),
       {{"", "MAIL FROM:<a@x.example>\r\n"},
        {"451 4.3.0 Try later\r\n", "RSET\r\n"},
        {"250 2.0.0 Ok\r\n", ""}},
       rset_events,
       {{outcome::temporary, 451, "4.3.0"}, {outcome::temporary, 451, "4.3.0"}}},
      {"data_refused",
       ehlo_full,
       two_recipients(),
       {{"", pipelined_two},
        {"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 No\r\n554 5.7.0 Policy\r\n", "RSET\r\n"},
        {"250 2.0.0 Ok\r\n", ""}},
       rset_events,
       {{outcome::permanent, 554, "5.7.0"}, {outcome::permanent, 550, "5.1.1"}}},
      {"deferred_after_end_of_data",
       ehlo_full,
       two_recipients(),
       {{"", pipelined_two},
        {"250 Ok\r\n250 Ok\r\n250 Ok\r\n354 go\r\n", "<body data_as_stored>.\r\n"},
        {"451 4.3.0 Queue full\r\n", ""}},
       delivered_events,
       {{outcome::temporary, 451, "4.3.0"}, {outcome::temporary, 451, "4.3.0"}}},
      {"refused_after_end_of_data",
       ehlo_full,
       two_recipients(),
       {{"", pipelined_two},
        {"250 Ok\r\n250 Ok\r\n250 Ok\r\n354 go\r\n", "<body data_as_stored>.\r\n"},
        {"550 5.7.1 Spam\r\n", ""}},
       delivered_events,
       {{outcome::permanent, 550, "5.7.1"}, {outcome::permanent, 550, "5.7.1"}}},
      {"closing_421_between_pipelined_replies",
       ehlo_full,
       two_recipients(),
       {{"", pipelined_two}, {"250 2.1.0 Ok\r\n421 4.4.2 Shutting down\r\n", ""}},
       {event::message_done, event::closed},
       {{outcome::temporary, 421, "4.4.2"}, {outcome::temporary, 421, "4.4.2"}},
       session_state::closed},
      {"closing_421_after_the_body_keeps_refusals",
       ehlo_full,
       two_recipients(),
       {{"", pipelined_two},
        {"250 Ok\r\n550 5.1.1 No\r\n250 Ok\r\n354 go\r\n", "<body data_as_stored>.\r\n"},
        {"421 4.3.0 Bye\r\n", ""}},
       {event::send_body, event::message_done, event::closed},
       {{outcome::permanent, 550, "5.1.1"}, {outcome::temporary, 421, "4.3.0"}},
       session_state::closed},
      {"lone_dot_when_354_comes_without_recipients",
       ehlo_full,
       two_recipients(),
       {{"", pipelined_two},
        {"250 Ok\r\n550 5.1.1 No\r\n550 5.1.1 No\r\n354 go\r\n", ".\r\n"},
        {"554 5.5.1 No valid recipients\r\n", "RSET\r\n"},
        {"250 Ok\r\n", ""}},
       rset_events,
       {{outcome::permanent, 550, "5.1.1"}, {outcome::permanent, 550, "5.1.1"}}},
      {"bdat_for_a_raw_body_with_chunking",
       ehlo_full,
       with(two_recipients(), &envelope::body_is_raw),
       {{"",
         "MAIL FROM:<a@x.example> SIZE=100\r\nRCPT TO:<b@y.example>\r\nRCPT TO:<c@y.example>\r\n"},
        {"250 Ok\r\n250 Ok\r\n250 Ok\r\n", "BDAT 100 LAST\r\n<body bdat>"},
        {"250 2.0.0 Ok\r\n", ""}},
       delivered_events,
       {{outcome::delivered, 250, "2.0.0"}, {outcome::delivered, 250, "2.0.0"}}},
      {"bdat_body_not_sent_when_all_refused",
       ehlo_full,
       with(two_recipients(), &envelope::body_is_raw),
       {{"",
         "MAIL FROM:<a@x.example> SIZE=100\r\nRCPT TO:<b@y.example>\r\nRCPT TO:<c@y.example>\r\n"},
        {"250 Ok\r\n550 5.1.1 No\r\n550 5.1.1 No\r\n", "RSET\r\n"},
        {"250 Ok\r\n", ""}},
       rset_events,
       {{outcome::permanent, 550, "5.1.1"}, {outcome::permanent, 550, "5.1.1"}}},
      {"bdat_one_at_a_time",
       "250-mx.example\r\n250 CHUNKING\r\n",
       with(make_envelope({"b@y.example"}, 7), &envelope::body_is_raw),
       {{"", "MAIL FROM:<a@x.example>\r\n"},
        {"250 Ok\r\n", "RCPT TO:<b@y.example>\r\n"},
        {"250 Ok\r\n", "BDAT 7 LAST\r\n<body bdat>"},
        {"250 Ok\r\n", ""}},
       delivered_events,
       {{outcome::delivered, 250, ""}}},
      {"raw_body_without_chunking_needs_stuffing",
       ehlo_pipelining_only,
       with(make_envelope({"b@y.example"}), &envelope::body_is_raw),
       {{"", "MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\n"},
        {"250 Ok\r\n250 Ok\r\n354 go\r\n", "<body data_stuffing_needed>.\r\n"},
        {"250 Ok\r\n", ""}},
       delivered_events,
       {{outcome::delivered, 250, ""}}},
      {"eight_bit_and_smtputf8_parameters",
       ehlo_full,
       with(with(make_envelope({"δοκιμή@παράδειγμα.example"}), &envelope::eight_bit),
            &envelope::smtputf8),
       {{"",
         "MAIL FROM:<a@x.example> SIZE=100 BODY=8BITMIME SMTPUTF8\r\n"
         "RCPT TO:<δοκιμή@παράδειγμα.example>\r\nDATA\r\n"},
        {"250 Ok\r\n250 Ok\r\n354 go\r\n", "<body data_as_stored>.\r\n"},
        {"250 Ok\r\n", ""}},
       delivered_events,
       {{outcome::delivered, 250, ""}}},
      {"eight_bit_without_8bitmime_is_refused_unsent",
       ehlo_nothing,
       with(two_recipients(), &envelope::eight_bit),
       {{"", ""}},
       local_refusal_events,
       {{outcome::permanent, 554, "5.6.3"}, {outcome::permanent, 554, "5.6.3"}}},
      {"non_ascii_address_without_smtputf8_is_refused_unsent",
       ehlo_plain,
       with(make_envelope({"δοκιμή@y.example"}), &envelope::smtputf8),
       {{"", ""}},
       local_refusal_events,
       {{outcome::permanent, 554, "5.6.7"}}},
      {"utf8_headers_without_smtputf8_are_refused_unsent",
       ehlo_plain,
       with(make_envelope({"b@y.example"}), &envelope::smtputf8),
       {{"", ""}},
       local_refusal_events,
       {{outcome::permanent, 554, "5.6.9"}}},
      {"size_over_the_upstream_limit_is_refused_unsent",
       ehlo_full,
       make_envelope({"b@y.example"}, 1000001),
       {{"", ""}},
       local_refusal_events,
       {{outcome::permanent, 552, "5.3.4"}}},
      {"size_at_the_upstream_limit_is_sent",
       ehlo_full,
       make_envelope({"b@y.example"}, 1000000),
       {{"", "MAIL FROM:<a@x.example> SIZE=1000000\r\nRCPT TO:<b@y.example>\r\nDATA\r\n"},
        {"250 Ok\r\n250 Ok\r\n354 go\r\n", "<body data_as_stored>.\r\n"},
        {"250 Ok\r\n", ""}},
       delivered_events,
       {{outcome::delivered, 250, ""}}},
      {"recipient_with_crlf_is_never_sent",
       ehlo_full,
       make_envelope({"b@y.example>\r\nRSET", "", "c@y.example"}),
       {{"", "MAIL FROM:<a@x.example> SIZE=100\r\nRCPT TO:<c@y.example>\r\nDATA\r\n"},
        {"250 Ok\r\n250 Ok\r\n354 go\r\n", "<body data_as_stored>.\r\n"},
        {"250 2.0.0 Ok\r\n", ""}},
       delivered_events,
       {{outcome::permanent, 550, "5.1.3"},
        {outcome::permanent, 550, "5.1.3"},
        {outcome::delivered, 250, "2.0.0"}}},
      {"sender_with_nul_is_refused_unsent",
       ehlo_full,
       [] {
         envelope e = two_recipients();
         e.sender = std::string("a@x.example\0b", 13);
         return e;
       }(),
       {{"", ""}},
       local_refusal_events,
       {{outcome::permanent, 550, "5.1.7"}, {outcome::permanent, 550, "5.1.7"}}},
      {"no_recipients_sends_nothing",
       ehlo_full,
       make_envelope({}),
       {{"", ""}},
       local_refusal_events,
       {}},
      {"garbage_reply_fails_the_connection",
       ehlo_full,
       two_recipients(),
       {{"", pipelined_two}, {"250 Ok\r\nhello there\r\n", ""}},
       {event::message_done, event::failed},
       {{outcome::temporary, 451, "4.5.0"}, {outcome::temporary, 451, "4.5.0"}},
       session_state::failed},
      {"mismatched_multi_line_codes_fail_the_connection",
       ehlo_full,
       two_recipients(),
       {{"", pipelined_two}, {"250 Ok\r\n250-Ok\r\n251 Ok\r\n", ""}},
       {event::message_done, event::failed},
       {{outcome::temporary, 451, "4.5.0"}, {outcome::temporary, 451, "4.5.0"}},
       session_state::failed},
      {"354_to_rcpt_fails_the_connection",
       ehlo_full,
       two_recipients(),
       {{"", pipelined_two}, {"250 Ok\r\n250 Ok\r\n354 go\r\n", ""}},
       {event::message_done, event::failed},
       {{outcome::temporary, 451, "4.5.0"}, {outcome::temporary, 451, "4.5.0"}},
       session_state::failed},
      {"250_to_data_fails_the_connection_but_keeps_refusals",
       ehlo_full,
       two_recipients(),
       {{"", pipelined_two}, {"250 Ok\r\n550 5.1.1 No\r\n250 Ok\r\n250 Ok\r\n", ""}},
       {event::message_done, event::failed},
       {{outcome::permanent, 550, "5.1.1"}, {outcome::temporary, 451, "4.5.0"}},
       session_state::failed},
  };
}

// How the upstream's bytes are cut: each step's text whole, split at every
// offset, or byte by byte. The dialogue must come out the same.
void run(const dialogue& d, std::size_t cut) {
  driver g;
  g.connect(d.ehlo);
  g.collect(g.s.start_message(d.env));
  for (std::size_t i = 0; i < d.steps.size(); ++i) {
    SCOPED_TRACE("step " + std::to_string(i));
    g.feed(d.steps[i].server, cut);
    EXPECT_EQ(g.pop_sent(), d.steps[i].client);
  }
  EXPECT_EQ(g.events, d.events);
  EXPECT_EQ(g.s.state(), d.end);
  const auto& results = g.s.results();
  ASSERT_EQ(results.size(), d.results.size());
  for (std::size_t i = 0; i < results.size(); ++i) {
    SCOPED_TRACE("recipient " + std::to_string(i));
    EXPECT_EQ(results[i].status, d.results[i].status);
    EXPECT_EQ(results[i].response.code, d.results[i].code);
    EXPECT_EQ(results[i].response.enhanced, d.results[i].enhanced);
    EXPECT_EQ(results[i].response.one_line().find_first_of("\r\n"), std::string::npos);
  }
}

class upstream_dialogue : public testing::TestWithParam<dialogue> {};

TEST_P(upstream_dialogue, whole_replies) {
  run(GetParam(), 0);
}

TEST_P(upstream_dialogue, replies_split_at_every_offset) {
  std::size_t longest = 0;
  for (const step& s : GetParam().steps) longest = std::max(longest, s.server.size());
  for (std::size_t cut = 1; cut < longest; ++cut) {
    SCOPED_TRACE("cut " + std::to_string(cut));
    run(GetParam(), cut);
  }
}

TEST_P(upstream_dialogue, replies_byte_by_byte) {
  run(GetParam(), driver::byte_by_byte);
}

INSTANTIATE_TEST_SUITE_P(table, upstream_dialogue, testing::ValuesIn(dialogues()),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(upstream_session, ehlo_extensions_are_parsed_case_insensitively_at_every_split) {
  const std::string in = std::string("220-mx.example ESMTP\r\n220 second line\r\n") +
                         "250-mx.example greets relay.example\r\n250-pipelining\r\n"
                         "250-SIZE 52428800\r\n250-8BITMIME\r\n250-SmtpUtf8\r\n"
                         "250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n"
                         "250 CHUNKING\r\n";
  for (std::size_t cut = 0; cut < in.size(); ++cut) {
    SCOPED_TRACE(cut);
    driver g;
    g.feed(in, cut);
    EXPECT_EQ(g.pop_sent(), ehlo_command);
    EXPECT_EQ(g.events, std::vector<event>{event::ready});
    const extensions& e = g.s.offered();
    EXPECT_TRUE(e.pipelining);
    EXPECT_TRUE(e.size);
    EXPECT_EQ(e.max_size, 52428800u);
    EXPECT_TRUE(e.eight_bit_mime);
    EXPECT_TRUE(e.smtputf8);
    EXPECT_TRUE(e.enhanced_status_codes);
    EXPECT_TRUE(e.starttls);
    EXPECT_TRUE(e.chunking);
  }
}

TEST(upstream_session, size_without_a_limit_sends_size_but_refuses_nothing) {
  driver g;
  g.connect("250-mx.example\r\n250 SIZE\r\n");
  EXPECT_TRUE(g.s.offered().size);
  EXPECT_EQ(g.s.offered().max_size, 0u);
  g.collect(g.s.start_message(make_envelope({"b@y.example"}, 999999999)));
  EXPECT_EQ(g.pop_sent(), "MAIL FROM:<a@x.example> SIZE=999999999\r\n");
}

TEST(upstream_session, ehlo_5xx_falls_back_to_helo_without_extensions) {
  driver g;
  g.feed(greeting);
  EXPECT_EQ(g.pop_sent(), ehlo_command);
  g.feed("502 5.5.2 Command not recognized\r\n");
  EXPECT_EQ(g.pop_sent(), "HELO relay.example\r\n");
  EXPECT_TRUE(g.events.empty());
  g.feed("250 mx.example\r\n");
  EXPECT_EQ(g.pop_events(), std::vector<event>{event::ready});
  EXPECT_FALSE(g.s.offered().pipelining);
  g.collect(g.s.start_message(make_envelope({"b@y.example"})));
  EXPECT_EQ(g.pop_sent(), "MAIL FROM:<a@x.example>\r\n");
}

struct refused_connection {
  const char* name;
  std::vector<std::string_view> replies;
  outcome status;
  std::uint16_t code;
};

class upstream_refused_connection : public testing::TestWithParam<refused_connection> {};

TEST_P(upstream_refused_connection, fails_before_ready) {
  const refused_connection& c = GetParam();
  driver g;
  for (std::string_view r : c.replies) g.feed(r);
  EXPECT_EQ(g.events, std::vector<event>{event::failed});
  EXPECT_EQ(g.s.state(), session_state::failed);
  EXPECT_EQ(g.s.reason().status, c.status);
  EXPECT_EQ(g.s.reason().response.code, c.code);
  EXPECT_FALSE(g.s.reason().description.empty());
}

INSTANTIATE_TEST_SUITE_P(
    table, upstream_refused_connection,
    testing::ValuesIn(std::vector<refused_connection>{
        {"greeting_554", {"554 5.7.1 No SMTP service here\r\n"}, outcome::permanent, 554},
        {"greeting_421", {"421 4.3.2 Too busy\r\n"}, outcome::temporary, 421},
        {"greeting_450", {"450 4.7.1 Later\r\n"}, outcome::temporary, 450},
        {"greeting_garbage", {"SSH-2.0-OpenSSH_9.2\r\n"}, outcome::temporary, 451},
        {"greeting_250", {"250 hello\r\n"}, outcome::temporary, 451},
        {"ehlo_421", {greeting, "421 4.3.2 Bye\r\n"}, outcome::temporary, 421},
        {"ehlo_451", {greeting, "451 4.3.0 Later\r\n"}, outcome::temporary, 451},
        {"helo_550",
         {greeting, "500 5.5.1 What\r\n", "550 5.7.1 Go away\r\n"},
         outcome::permanent,
         550},
        {"helo_451",
         {greeting, "500 5.5.1 What\r\n", "451 4.3.0 Later\r\n"},
         outcome::temporary,
         451},
    }),
    [](const auto& info) { return std::string(info.param.name); });

TEST(upstream_session, three_messages_on_one_connection_then_quit) {
  driver g;
  g.connect(ehlo_full);
  const std::string one = "MAIL FROM:<a@x.example> SIZE=100\r\nRCPT TO:<b@y.example>\r\nDATA\r\n";

  g.collect(g.s.start_message(make_envelope({"b@y.example"})));
  EXPECT_EQ(g.pop_sent(), one);
  g.feed("250 Ok\r\n250 Ok\r\n354 go\r\n");
  g.feed("250 2.0.0 queued as A\r\n");
  EXPECT_EQ(g.pop_sent(), "<body data_as_stored>.\r\n");
  EXPECT_EQ(g.pop_events(), delivered_events);
  EXPECT_EQ(g.s.results()[0].status, outcome::delivered);
  EXPECT_EQ(g.s.results()[0].response.one_line(), "250 2.0.0 queued as A");

  // The second is refused, so the connection is RSET before it is reused.
  g.collect(g.s.start_message(make_envelope({"b@y.example"})));
  EXPECT_EQ(g.pop_sent(), one);
  g.feed("250 Ok\r\n550 5.1.1 No\r\n554 5.5.1 No valid recipients\r\n");
  EXPECT_EQ(g.pop_sent(), "RSET\r\n");
  EXPECT_EQ(g.pop_events(), std::vector<event>{event::message_done});
  EXPECT_EQ(g.s.state(), session_state::rset);
  g.feed("250 2.0.0 Ok\r\n");
  EXPECT_EQ(g.pop_events(), std::vector<event>{event::ready});

  g.collect(g.s.start_message(make_envelope({"b@y.example"})));
  EXPECT_EQ(g.pop_sent(), one);
  g.feed("250 Ok\r\n250 Ok\r\n354 go\r\n250 2.0.0 queued as C\r\n", driver::byte_by_byte);
  EXPECT_EQ(g.pop_sent(), "<body data_as_stored>.\r\n");
  EXPECT_EQ(g.pop_events(), delivered_events);
  EXPECT_EQ(g.s.results()[0].response.one_line(), "250 2.0.0 queued as C");

  EXPECT_TRUE(g.s.quit());
  g.take();
  EXPECT_EQ(g.pop_sent(), "QUIT\r\n");
  g.feed("221 2.0.0 Bye\r\n");
  EXPECT_EQ(g.pop_events(), std::vector<event>{event::closed});
  EXPECT_EQ(g.s.state(), session_state::closed);
  EXPECT_EQ(g.s.reason().response.code, 221);
}

// RFC 2920 3.1: the next MAIL/RCPT/DATA go right behind the end of data;
// the first message's reply ends it, the next one's replies follow with no
// `ready` between.
TEST(upstream_session, the_next_transaction_goes_out_behind_the_end_of_data) {
  driver g;
  g.connect(ehlo_full);
  const std::string one = "MAIL FROM:<a@x.example> SIZE=100\r\nRCPT TO:<b@y.example>\r\nDATA\r\n";
  g.collect(g.s.start_message(make_envelope({"b@y.example"})));
  EXPECT_EQ(g.pop_sent(), one);
  EXPECT_FALSE(g.s.queue_next(make_envelope({"c@y.example"}))) << "only behind an end of data";
  g.feed("250 Ok\r\n250 Ok\r\n354 go\r\n");
  EXPECT_EQ(g.pop_events(), std::vector<event>{event::send_body});
  ASSERT_TRUE(g.s.queue_next(make_envelope({"c@y.example", "d@y.example"}, 200)));
  EXPECT_TRUE(g.s.next_queued());
  EXPECT_FALSE(g.s.queue_next(make_envelope({"e@y.example"}))) << "one at a time";
  g.take();
  EXPECT_EQ(g.pop_sent(),
            "<body data_as_stored>.\r\nMAIL FROM:<a@x.example> SIZE=200\r\n"
            "RCPT TO:<c@y.example>\r\nRCPT TO:<d@y.example>\r\nDATA\r\n");

  // Not through the driver: the results of each message_done are checked
  // as it is handed out.
  EXPECT_EQ(g.s.feed("250 2.0.0 queued as A\r\n250 Ok\r\n550 5.1.1 No such user\r\n250 Ok\r\n"
                     "354 go\r\n"),
            event::message_done);
  ASSERT_EQ(g.s.results().size(), 1u);
  EXPECT_EQ(g.s.results()[0].status, outcome::delivered);
  EXPECT_EQ(g.s.results()[0].response.one_line(), "250 2.0.0 queued as A");
  EXPECT_EQ(g.s.next_event(), event::send_body);
  EXPECT_EQ(g.s.next_event(), event::none);
  EXPECT_FALSE(g.s.next_queued());
  g.s.body_sent();
  g.take();
  EXPECT_EQ(g.pop_sent(), ".\r\n");
  g.feed("250 2.0.0 queued as B\r\n");
  EXPECT_EQ(g.pop_events(), (std::vector<event>{event::message_done, event::ready}));
  ASSERT_EQ(g.s.results().size(), 2u);
  EXPECT_EQ(g.s.results()[0].status, outcome::permanent);
  EXPECT_EQ(g.s.results()[0].response.code, 550);
  EXPECT_EQ(g.s.results()[1].status, outcome::delivered);
  EXPECT_EQ(g.s.results()[1].response.one_line(), "250 2.0.0 queued as B");
  EXPECT_EQ(g.s.state(), session_state::ready);
}

// A refused first message does not touch the queued one; a refused MAIL of
// the queued one ends it with an RSET; a lost connection ends both.
TEST(upstream_session, a_queued_transaction_has_its_own_outcome) {
  {
    driver g;
    g.connect(ehlo_pipelining_only);
    g.collect(g.s.start_message(make_envelope({"b@y.example"})));
    g.feed("250 Ok\r\n250 Ok\r\n354 go\r\n");
    ASSERT_TRUE(g.s.queue_next(make_envelope({"c@y.example"})));
    g.pop_sent();
    EXPECT_EQ(g.s.feed("554 5.7.1 Spam\r\n250 Ok\r\n250 Ok\r\n354 go\r\n"), event::message_done);
    EXPECT_EQ(g.s.results()[0].status, outcome::permanent);
    EXPECT_EQ(g.s.next_event(), event::send_body);
  }
  {
    driver g;
    g.connect(ehlo_pipelining_only);
    g.collect(g.s.start_message(make_envelope({"b@y.example"})));
    g.feed("250 Ok\r\n250 Ok\r\n354 go\r\n");
    ASSERT_TRUE(g.s.queue_next(make_envelope({"c@y.example"})));
    g.take();
    g.pop_sent();
    g.pop_events();
    EXPECT_EQ(g.s.feed("250 2.0.0 A\r\n451 4.3.0 Later\r\n503 5.5.1 No MAIL\r\n503 5.5.1 No\r\n"),
              event::message_done);
    EXPECT_EQ(g.s.results()[0].status, outcome::delivered);
    EXPECT_EQ(g.s.next_event(), event::message_done);
    EXPECT_EQ(g.s.results()[0].status, outcome::temporary);
    EXPECT_EQ(g.s.results()[0].response.code, 451);
    EXPECT_EQ(g.s.next_event(), event::none);
    g.take();
    EXPECT_EQ(g.pop_sent(), "RSET\r\n");
    g.feed("250 Ok\r\n");
    EXPECT_EQ(g.pop_events(), std::vector<event>{event::ready});
  }
  for (std::string_view end : {"421 4.4.2 Closing\r\n", ""}) {
    driver g;
    g.connect(ehlo_pipelining_only);
    g.collect(g.s.start_message(make_envelope({"b@y.example"})));
    g.feed("250 Ok\r\n250 Ok\r\n354 go\r\n");
    ASSERT_TRUE(g.s.queue_next(make_envelope({"c@y.example", "d@y.example"})));
    event e = end.empty() ? g.s.abort("connection lost") : g.s.feed(end);
    EXPECT_EQ(e, event::message_done);
    ASSERT_EQ(g.s.results().size(), 1u);
    EXPECT_EQ(g.s.results()[0].status, outcome::temporary);
    EXPECT_EQ(g.s.next_event(), event::message_done);
    ASSERT_EQ(g.s.results().size(), 2u);
    EXPECT_EQ(g.s.results()[1].status, outcome::temporary);
    EXPECT_EQ(g.s.next_event(), end.empty() ? event::failed : event::closed);
    EXPECT_FALSE(g.s.next_queued());
  }
}

TEST(upstream_session, only_what_start_message_would_send_by_data_is_queued) {
  const auto at_end_of_data = [](driver& g, std::string_view ehlo, envelope first) {
    g.connect(ehlo);
    g.collect(g.s.start_message(std::move(first)));
    g.feed("250 Ok\r\n250 Ok\r\n354 go\r\n");
    g.pop_sent();
  };
  envelope ok = make_envelope({"c@y.example"});
  driver plain;
  plain.connect(ehlo_plain);
  plain.collect(plain.s.start_message(make_envelope({"b@y.example"})));
  plain.feed("250 Ok\r\n");
  plain.feed("250 Ok\r\n");
  plain.feed("354 go\r\n");
  plain.pop_sent();
  EXPECT_FALSE(plain.s.queue_next(ok)) << "no PIPELINING";

  driver full;
  at_end_of_data(full, ehlo_full, make_envelope({"b@y.example"}));
  EXPECT_FALSE(full.s.queue_next(with(ok, &envelope::body_is_raw))) << "goes by BDAT";
  envelope too_big = make_envelope({"c@y.example"}, 2000000);
  EXPECT_FALSE(full.s.queue_next(too_big)) << "over the SIZE limit";
  EXPECT_FALSE(full.s.queue_next(make_envelope({"c@y.example", "bad\r\nRSET@y"})));
  EXPECT_FALSE(full.s.queue_next(make_envelope({})));
  full.take();
  EXPECT_EQ(full.pop_sent(), "") << "a refused queue_next writes nothing";
  EXPECT_TRUE(full.s.queue_next(ok));

  driver narrow;
  at_end_of_data(narrow, ehlo_pipelining_only, make_envelope({"b@y.example"}));
  EXPECT_FALSE(narrow.s.queue_next(with(ok, &envelope::eight_bit))) << "no 8BITMIME";
  EXPECT_FALSE(narrow.s.queue_next(with(ok, &envelope::smtputf8))) << "no SMTPUTF8";
  EXPECT_TRUE(narrow.s.queue_next(with(ok, &envelope::body_is_raw))) << "dot-stuffed by DATA";
}

TEST(upstream_session, quit_only_when_ready) {
  driver g;
  EXPECT_FALSE(g.s.quit());
  g.connect(ehlo_full);
  g.collect(g.s.start_message(make_envelope({"b@y.example"})));
  EXPECT_FALSE(g.s.quit());
}

TEST(upstream_session, reply_while_idle_fails_but_421_closes) {
  driver a;
  a.connect(ehlo_full);
  a.feed("250 Ok\r\n");
  EXPECT_EQ(a.events, std::vector<event>{event::failed});
  EXPECT_EQ(a.s.reason().response.enhanced, "4.5.0");

  driver b;
  b.connect(ehlo_full);
  b.feed("421 4.4.2 Idle timeout\r\n250 ignored\r\n");
  EXPECT_EQ(b.events, std::vector<event>{event::closed});
  EXPECT_EQ(b.s.reason().response.code, 421);
}

TEST(upstream_session, reply_while_the_body_is_being_sent_fails) {
  driver g;
  g.connect(ehlo_full);
  g.collect(g.s.start_message(make_envelope({"b@y.example"})));
  // Not through the driver: the glue has not finished the body yet.
  EXPECT_EQ(g.s.feed("250 Ok\r\n250 Ok\r\n354 go\r\n552 5.3.4 Too big\r\n"), event::send_body);
  EXPECT_EQ(g.s.next_event(), event::message_done);
  EXPECT_EQ(g.s.next_event(), event::failed);
  EXPECT_EQ(g.s.next_event(), event::none);
  EXPECT_EQ(g.s.results()[0].status, outcome::temporary);
}

TEST(upstream_session, raw_body_without_final_crlf_gets_one_before_the_dot) {
  driver g;
  g.connect(ehlo_nothing);
  envelope e = make_envelope({"b@y.example"});
  e.body_is_raw = true;
  g.collect(g.s.start_message(e));
  g.feed("250 Ok\r\n");
  g.feed("250 Ok\r\n");
  EXPECT_EQ(g.pop_sent(), "MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\n");
  EXPECT_EQ(g.s.feed("354 go\r\n"), event::send_body);
  EXPECT_EQ(g.s.framing(), body_framing::data_stuffing_needed);
  std::string body;
  bool at_line_start = true;
  dot_stuff("Subject: x\r\n\r\n.hidden", at_line_start, body);
  EXPECT_EQ(body, "Subject: x\r\n\r\n..hidden");
  g.s.body_sent(at_line_start);
  EXPECT_EQ(g.s.output(), "\r\n.\r\n");
}

struct abort_case {
  const char* name;
  std::size_t replies;  // how many of the scripted replies arrive first
  bool start;           // whether a message is started after the EHLO reply
  std::vector<event> events;
  std::string_view text;
};

class upstream_abort : public testing::TestWithParam<abort_case> {};

TEST_P(upstream_abort, settles_what_is_pending_and_says_where) {
  const abort_case& c = GetParam();
  const std::vector<std::string_view> script = {greeting, ehlo_plain, "250 Ok\r\n",
                                                "550 5.1.1 No\r\n"};
  driver g;
  for (std::size_t i = 0; i < c.replies; ++i) {
    g.feed(script[i]);
    if (i == 1 && c.start) g.collect(g.s.start_message(two_recipients()));
  }
  g.pop_events();
  g.collect(g.s.abort("Connection timed out"));
  EXPECT_EQ(g.events, c.events);
  EXPECT_EQ(g.s.state(), session_state::failed);
  EXPECT_EQ(g.s.reason().response.one_line(), c.text);
  if (c.start) {
    EXPECT_EQ(g.s.results()[1].status, outcome::temporary);
    EXPECT_EQ(g.s.results()[1].response.one_line(), c.text);
  }
  if (c.replies == 4) {
    EXPECT_EQ(g.s.results()[0].status, outcome::permanent);
  }
  EXPECT_EQ(g.s.abort("again"), event::none);
}

INSTANTIATE_TEST_SUITE_P(
    table, upstream_abort,
    testing::ValuesIn(std::vector<abort_case>{
        {"greeting",
         0,
         false,
         {event::failed},
         "451 4.4.2 Connection timed out while waiting for the greeting"},
        {"idle", 2, false, {event::failed}, "451 4.4.2 Connection timed out while idle"},
        {"mail",
         2,
         true,
         {event::message_done, event::failed},
         "451 4.4.2 Connection timed out while waiting for the reply to MAIL FROM"},
        {"rcpt",
         4,
         true,
         {event::message_done, event::failed},
         "451 4.4.2 Connection timed out while waiting for the reply to RCPT TO"},
    }),
    [](const auto& info) { return std::string(info.param.name); });

TEST(upstream_session, abort_after_quit_is_an_orderly_close) {
  driver g;
  g.connect(ehlo_full);
  ASSERT_TRUE(g.s.quit());
  EXPECT_EQ(g.s.abort("Connection closed by upstream"), event::closed);
}

TEST(upstream_session, start_message_outside_ready_is_a_glue_bug) {
  EXPECT_DEATH(
      {
        upstream_session s("relay.example");
        s.start_message(two_recipients());
      },
      "start_message called in state greeting");
}

struct stuffing_case {
  const char* name;
  std::string_view in;
  std::string_view out;
  bool ends_at_line_start;
};

class dot_stuffing : public testing::TestWithParam<stuffing_case> {};

TEST_P(dot_stuffing, same_result_whatever_the_chunking) {
  const stuffing_case& c = GetParam();
  for (std::size_t a = 0; a <= c.in.size(); ++a) {
    for (std::size_t b = a; b <= c.in.size(); ++b) {
      SCOPED_TRACE(std::to_string(a) + "," + std::to_string(b));
      std::string out;
      bool at_line_start = true;
      dot_stuff(c.in.substr(0, a), at_line_start, out);
      dot_stuff(c.in.substr(a, b - a), at_line_start, out);
      dot_stuff(c.in.substr(b), at_line_start, out);
      EXPECT_EQ(out, c.out);
      EXPECT_EQ(at_line_start, c.ends_at_line_start);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(table, dot_stuffing,
                         testing::ValuesIn(std::vector<stuffing_case>{
                             {"empty", "", "", true},
                             {"no_dots", "a\r\nb\r\n", "a\r\nb\r\n", true},
                             {"dot_at_body_start", ".a\r\n", "..a\r\n", true},
                             {"lone_dot_line", "a\r\n.\r\nb\r\n", "a\r\n..\r\nb\r\n", true},
                             {"dots_inside_lines_untouched", "a.b\r\n x.\r\n", "a.b\r\n x.\r\n",
                              true},
                             {"two_dots", "..\r\n", "...\r\n", true},
                             {"consecutive_dot_lines", ".\r\n.\r\n", "..\r\n..\r\n", true},
                             {"no_final_crlf", "a\r\n.b", "a\r\n..b", false},
                             {"ends_with_cr", "a\r", "a\r", false},
                         }),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(dot_stuffing, line_start_is_carried_across_chunks) {
  std::string out;
  bool at_line_start = true;
  dot_stuff("first line\r\n", at_line_start, out);
  EXPECT_TRUE(at_line_start);
  dot_stuff(".second", at_line_start, out);
  EXPECT_FALSE(at_line_start);
  dot_stuff(".still second\r", at_line_start, out);
  dot_stuff("\n", at_line_start, out);
  dot_stuff(".", at_line_start, out);
  dot_stuff("\r\n", at_line_start, out);
  EXPECT_EQ(out, "first line\r\n..second.still second\r\n..\r\n");
}

}  // namespace
}  // namespace ringrelay::delivery

namespace ringrelay::delivery {
namespace {

// Opportunistic STARTTLS upstream (RFC 3207, RFC 7435).
constexpr std::string_view ehlo_with_starttls =
    "250-mx.example\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n";

std::string take(upstream_session& s) {
  std::string out = std::move(s.output());
  s.output().clear();
  return out;
}

TEST(upstream_starttls, offered_then_used_and_ehlo_is_sent_again) {
  upstream_session s("relay.test", true);
  EXPECT_EQ(s.feed("220 mx.example ESMTP\r\n"), event::none);
  EXPECT_EQ(take(s), "EHLO relay.test\r\n");
  EXPECT_EQ(s.feed(ehlo_with_starttls), event::none);
  EXPECT_EQ(take(s), "STARTTLS\r\n");
  EXPECT_EQ(s.feed("220 2.0.0 go ahead\r\n"), event::start_tls);
  EXPECT_EQ(s.state(), session_state::handshake);
  s.tls_established();
  EXPECT_TRUE(s.tls());
  EXPECT_EQ(take(s), "EHLO relay.test\r\n");
  // Inside TLS the offer is not taken up again.
  EXPECT_EQ(s.feed(ehlo_with_starttls), event::ready);
  EXPECT_TRUE(take(s).empty());
  EXPECT_TRUE(s.offered().pipelining);
}

TEST(upstream_starttls, not_offered_means_plaintext) {
  upstream_session s("relay.test", true);
  s.feed("220 mx.example ESMTP\r\n");
  take(s);
  EXPECT_EQ(s.feed("250-mx.example\r\n250 PIPELINING\r\n"), event::ready);
  EXPECT_TRUE(take(s).empty());
  EXPECT_FALSE(s.tls());
}

TEST(upstream_starttls, refused_means_plaintext) {
  upstream_session s("relay.test", true);
  s.feed("220 mx.example ESMTP\r\n");
  take(s);
  s.feed(ehlo_with_starttls);
  EXPECT_EQ(take(s), "STARTTLS\r\n");
  EXPECT_EQ(s.feed("454 4.7.0 TLS not available\r\n"), event::ready);
  EXPECT_FALSE(s.tls());
}

TEST(upstream_starttls, off_when_not_asked) {
  upstream_session s("relay.test");
  s.feed("220 mx.example ESMTP\r\n");
  take(s);
  EXPECT_EQ(s.feed(ehlo_with_starttls), event::ready);
  EXPECT_TRUE(take(s).empty());
}

TEST(upstream_starttls, a_failed_handshake_fails_the_connection) {
  upstream_session s("relay.test", true);
  s.feed("220 mx.example ESMTP\r\n");
  s.feed(ehlo_with_starttls);
  EXPECT_EQ(s.feed("220 go ahead\r\n"), event::start_tls);
  EXPECT_EQ(s.abort("TLS handshake failed"), event::failed);
  EXPECT_NE(s.reason().description.find("TLS handshake"), std::string::npos);
}

}  // namespace
}  // namespace ringrelay::delivery
