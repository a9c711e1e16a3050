// The SMTP session's specification, as scripted dialogues: each row is what a
// client sends and what it must get back. Every dialogue is played exchange
// by exchange, as one buffer, cut in two at every offset and one octet at a
// time: however the octets arrive, the replies, the events and the stored
// messages must be the same.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <ringrelay/log/log.hh>
#include <ringrelay/smtp/session.hh>
#include <string>
#include <string_view>
#include <vector>

namespace ringrelay::smtp {
namespace {

// What the spool did with a committed message.
enum class spool_result { stored, io_error, no_space };

struct exchange {
  std::string client;  // octets the client sends
  // Reply lines without their CRLF, in order, and what the glue was told to
  // do, in parentheses: "(commit)", "(discard)", "(close)", "(starttls)".
  std::vector<std::string_view> server;
};

struct dialogue {
  std::string name;
  std::vector<exchange> steps;
  session_limits limits = {};
  bool trusted = true;
  spool_result spool = spool_result::stored;
  // Cut the input at every `cut_stride`-th offset (1: at every one). 0: play
  // it only exchange by exchange, because TLS starts in between (what the
  // client pipelines after STARTTLS is dropped with the rest of its buffer).
  std::size_t cut_stride = 1;
  bool starttls = false;  // STARTTLS offered
  bool auth = false;      // AUTH offered; the one account is alice / secret
  bool auth_require_tls = false;
  // Sender verification on: the check answers at once, refusing the
  // domains nomx.test (451 4.1.8) and nullmx.test (550 5.7.27).
  bool verify_sender = false;
};

// A message as the glue stores it at commit.
struct stored_message {
  std::string sender;
  std::vector<std::string> recipients;
  std::string body;  // wire form: dot-stuffed for DATA, raw for BDAT
  std::uint64_t size = 0;
  bool body_is_raw = false;
  bool smtputf8 = false;
  body_type declared = body_type::unspecified;

  bool operator==(const stored_message&) const = default;
};

void PrintTo(const stored_message& m, std::ostream* os) {
  *os << "{from=<" << m.sender << "> rcpts=" << m.recipients.size()
      << " body=" << testing::PrintToString(m.body) << " size=" << m.size
      << " raw=" << m.body_is_raw << " smtputf8=" << m.smtputf8
      << " body_type=" << static_cast<int>(m.declared) << "}";
}

void PrintTo(const dialogue& d, std::ostream* os) {
  *os << d.name;
}

struct outcome {
  std::string transcript;
  std::vector<stored_message> messages;

  bool operator==(const outcome&) const = default;
};

void PrintTo(const outcome& o, std::ostream* os) {
  *os << testing::PrintToString(o.transcript) << " " << testing::PrintToString(o.messages);
}

constexpr std::string_view hostname = "mx.test";
constexpr std::string_view queue_id = "ID";

// Refused messages are logged at info; the transcripts say it all.
class quiet_log : public testing::Environment {
 public:
  void SetUp() override { log::set_level(log::level::warn); }
};
testing::Environment* const quiet = testing::AddGlobalTestEnvironment(new quiet_log);

// Plays the connection glue (smtp/server.cc, connection::process) without a
// ring: commands go through feed(), body octets through scan(), and the
// spool, a TLS handshake and the password check all answer at once.
class driver {
 public:
  driver(const session_config& cfg, const dialogue& d)
      : _s(cfg, peer_info{"192.0.2.1", d.trusted}), _spool(d.spool) {
    _s.greet();
  }

  // One receive buffer.
  void receive(std::string_view in) {
    _drop_input = false;
    while (!in.empty() && _s.current() != state::closing && !_drop_input) {
      ASSERT_NE(_s.current(), state::committing);
      const std::size_t consumed = _s.in_body() ? scan(in) : feed(in);
      ASSERT_LE(consumed, in.size());
      ASSERT_TRUE(consumed > 0 || _s.current() == state::closing)
          << "no progress in state " << state_name(_s.current());
      in.remove_prefix(consumed);
    }
  }

  void timeout() { _s.timeout(); }
  state current() const { return _s.current(); }

  outcome& result() {
    take_output();
    return _result;
  }

 private:
  std::size_t feed(std::string_view in) {
    const feed_result r = _s.feed(in);
    handle(r.ev);
    return r.consumed;
  }

  std::size_t scan(std::string_view in) {
    const body_step step = _s.scan(in);
    EXPECT_LE(step.body, step.consumed);
    EXPECT_LE(step.replay, 2);
    if (_open && step.store) {
      _body.append(held_back_text, step.replay);
      _body.append(in.substr(0, step.body));
    }
    handle(step.ev);
    return step.consumed;
  }

  void handle(event ev) {
    take_output();
    switch (ev) {
      case event::body:
        if (_s.message_open() && !_open) {
          _open = true;
          _body.clear();
        }
        break;
      case event::commit:
        mark("(commit)");
        commit();
        break;
      case event::discard:
        mark("(discard)");
        _open = false;
        break;
      case event::close:
        mark("(close)");
        _open = false;
        break;
      case event::starttls:
        mark("(starttls)");
        _drop_input = true;
        _s.tls_started("TLSv1.3", "TLS_AES_128_GCM_SHA256");
        break;
      case event::authenticate:
        mark("(authenticate)");
        authenticate();
        break;
      case event::verify_sender:
        mark("(verify_sender)");
        verify_sender();
        break;
      case event::need_more:
      case event::none:
        break;
    }
  }

  void commit() {
    if (!_open) _body.clear();  // BDAT 0 LAST opens no spool message
    _open = false;
    if (_spool != spool_result::stored) {
      _s.commit_failed(_spool == spool_result::no_space ? commit_error::no_space
                                                        : commit_error::io);
      return;
    }
    _result.messages.push_back({std::string(_s.sender()), _s.recipients(), _body,
                                _s.scanner().size(), _s.body_is_raw(), _s.smtputf8(),
                                _s.declared_body()});
    _s.committed(queue_id);
  }

  void authenticate() {
    const auto& c = _s.credentials();
    if (c.username == "alice" && c.password == "secret") {
      _s.auth_succeeded("alice");
    } else {
      _s.auth_failed(c.username.find('@') != std::string::npos);
    }
  }

  void verify_sender() {
    const std::string_view sender = _s.sender();
    if (sender.ends_with("@nomx.test")) {
      _s.sender_verified("451 4.1.8 Sender verify failed: domain has no MX or A record");
    } else if (sender.ends_with("@nullmx.test")) {
      _s.sender_verified("550 5.7.27 Sender domain accepts no mail (null MX)");
    } else {
      _s.sender_verified("");
    }
  }

  void mark(std::string_view what) {
    _result.transcript.append(what);
    _result.transcript.append("\r\n");
  }

  void take_output() {
    _result.transcript += _s.output();
    _s.output().clear();
  }

  session _s;
  spool_result _spool;
  bool _open = false;
  bool _drop_input = false;
  std::string _body;
  outcome _result;
};

// Alice may send from example.com only. A trusted session without AUTH
// asks with account "" (the networks' account, here one that may not send
// from refused.example).
std::string alice_policy(std::string_view account, std::string_view sender) {
  if (account.empty())
    return sender.ends_with("@refused.example")
               ? "550 5.7.1 Error: the trusted account may not send as <" + std::string(sender) +
                     ">"
               : "";
  if (account == "alice" && sender.ends_with("@example.com")) return "";
  return "550 5.7.1 Error: " + std::string(account) + " may not send as <" + std::string(sender) +
         ">";
}

session_config config_for(const dialogue& d) {
  return {std::string(hostname), d.limits,     d.starttls,     d.auth,
          d.auth_require_tls,    alice_policy, d.verify_sender};
}

std::string lines(const std::vector<std::string_view>& server) {
  std::string out;
  for (auto l : server) {
    out.append(l);
    out.append("\r\n");
  }
  return out;
}

std::string client_octets(const dialogue& d) {
  std::string all;
  for (const auto& e : d.steps) all += e.client;
  return all;
}

// Plays `in` as the receive buffers cut at `cuts` (ascending offsets).
outcome play(const dialogue& d, std::string_view in, const std::vector<std::size_t>& cuts) {
  const session_config cfg = config_for(d);
  driver drv(cfg, d);
  std::size_t from = 0;
  for (std::size_t cut : cuts) {
    drv.receive(in.substr(from, cut - from));
    from = cut;
  }
  drv.receive(in.substr(from));
  return drv.result();
}

// Plays the dialogue one exchange at a time, checking each exchange's
// replies, and returns the whole outcome.
outcome play_by_exchange(const dialogue& d) {
  const session_config cfg = config_for(d);
  driver drv(cfg, d);
  std::size_t seen = 0;
  for (std::size_t i = 0; i < d.steps.size(); ++i) {
    const exchange& e = d.steps[i];
    drv.receive(e.client);
    const std::string& transcript = drv.result().transcript;
    EXPECT_EQ(transcript.substr(seen), lines(e.server))
        << "exchange " << i << ", client sent " << testing::PrintToString(e.client);
    seen = transcript.size();
  }
  return drv.result();
}

// --- replies, as the client sees them --------------------------------------

constexpr std::string_view ok = "250 2.0.0 Ok";
constexpr std::string_view sender_ok = "250 2.1.0 Ok";
constexpr std::string_view recipient_ok = "250 2.1.5 Ok";
constexpr std::string_view go_ahead = "354 End data with <CR><LF>.<CR><LF>";
constexpr std::string_view queued = "250 2.0.0 Ok: queued as ID";
constexpr std::string_view bye = "221 2.0.0 Bye";
constexpr std::string_view helo_first = "503 5.5.1 Error: send HELO or EHLO first";
constexpr std::string_view need_mail = "503 5.5.1 Error: need MAIL command";
constexpr std::string_view need_rcpt = "503 5.5.1 Error: need RCPT command";
constexpr std::string_view nested_mail = "503 5.5.1 Error: nested MAIL command";
constexpr std::string_view finish_bdat = "503 5.5.1 Error: finish the BDAT transfer or RSET first";
constexpr std::string_view bare_cr_or_lf =
    "550 5.6.0 Error: message contains a bare CR or LF; every line must end with CRLF (RFC 5321 "
    "2.3.8)";
constexpr std::string_view line_too_long =
    "550 5.6.0 Error: message has a line longer than 1000 octets including CRLF (RFC 5321 "
    "4.5.3.1.6); wrap it or use a transfer encoding";
constexpr std::string_view command_too_long =
    "500 5.5.2 Error: command line too long (the limit is 512 octets including CRLF)";
constexpr std::string_view ev_commit = "(commit)";
constexpr std::string_view ev_discard = "(discard)";
constexpr std::string_view ev_close = "(close)";
constexpr std::string_view ev_starttls = "(starttls)";
constexpr std::string_view ev_authenticate = "(authenticate)";
constexpr std::string_view ev_verify = "(verify_sender)";

// --- the common steps -------------------------------------------------------

const exchange greeting{"", {"220 mx.test ESMTP ringrelay ready"}};
const exchange ehlo{"EHLO client.example\r\n",
                    {"250-mx.test", "250-PIPELINING", "250-SIZE 52428800", "250-8BITMIME",
                     "250-SMTPUTF8", "250-ENHANCEDSTATUSCODES", "250 CHUNKING"}};
const exchange ehlo_size_10{"EHLO client.example\r\n",
                            {"250-mx.test", "250-PIPELINING", "250-SIZE 10", "250-8BITMIME",
                             "250-SMTPUTF8", "250-ENHANCEDSTATUSCODES", "250 CHUNKING"}};
const exchange ehlo_starttls{
    "EHLO client.example\r\n",
    {"250-mx.test", "250-PIPELINING", "250-SIZE 52428800", "250-8BITMIME", "250-SMTPUTF8",
     "250-ENHANCEDSTATUSCODES", "250-STARTTLS", "250 CHUNKING"}};
const exchange ehlo_auth{
    "EHLO client.example\r\n",
    {"250-mx.test", "250-PIPELINING", "250-SIZE 52428800", "250-8BITMIME", "250-SMTPUTF8",
     "250-ENHANCEDSTATUSCODES", "250-AUTH PLAIN LOGIN", "250 CHUNKING"}};
const exchange mail{"MAIL FROM:<alice@example.com>\r\n", {sender_ok}};
const exchange rcpt{"RCPT TO:<bob@example.net>\r\n", {recipient_ok}};
const exchange data{"DATA\r\n", {go_ahead}};
const exchange body{"Subject: hello\r\n\r\nHello Bob.\r\n.\r\n", {ev_commit, queued}};
const exchange quit{"QUIT\r\n", {bye, ev_close}};

// `e`, after which the glue is told `ev`.
exchange then(exchange e, std::string_view ev) {
  e.server.push_back(ev);
  return e;
}

// Session limits with a 10-octet message size.
session_limits small_messages() {
  session_limits l;
  l.message_size = 10;
  return l;
}

session_limits two_recipients() {
  session_limits l;
  l.recipients = 2;
  return l;
}

std::vector<dialogue> dialogues() {
  const std::string noop_512 = "NOOP " + std::string(505, 'x') + "\r\n";
  const std::string noop_513 = "NOOP " + std::string(506, 'x') + "\r\n";
  const std::string line_1000 = std::string(998, 'a') + "\r\n";
  const std::string line_1001 = std::string(999, 'a') + "\r\n";
  return {
      // Session start and end.
      {"greets_and_advertises_the_extensions", {greeting, ehlo, quit}},
      {"helo_starts_a_session_without_extensions",
       {greeting, {"HELO client.example\r\n", {"250 mx.test"}}, mail, rcpt, data, body}},
      {"quit_closes_and_nothing_after_it_is_read",
       {greeting, ehlo, {"QUIT\r\nNOOP\r\n", {bye, ev_close}}, {"NOOP\r\n", {}}}},
      {"quit_between_bdat_chunks_drops_the_message",
       {greeting, ehlo, mail, rcpt, {"BDAT 2\r\nab", {"250 2.0.0 Ok: 2 octets received"}}, quit}},

      // Sequence.
      {"commands_before_helo_are_out_of_sequence",
       {greeting,
        {"MAIL FROM:<alice@example.com>\r\n", {helo_first}},
        {"RCPT TO:<bob@example.net>\r\n", {helo_first}},
        {"DATA\r\n", {helo_first}},
        {"RSET\r\n", {ok}},
        {"MAIL FROM:<alice@example.com>\r\n", {helo_first}},
        {"NOOP\r\n", {ok}},
        ehlo,
        mail}},
      {.name = "an_untrusted_client_may_not_send_mail",
       .steps = {greeting,
                 ehlo,
                 {"MAIL FROM:<alice@example.com>\r\n", {"530 5.7.0 Authentication required"}},
                 {"RCPT TO:<bob@example.net>\r\n", {need_mail}},
                 {"DATA\r\n", {need_mail}}},
       .trusted = false},
      // A trusted session is held to the account its networks map to.
      {"a_trusted_session_is_held_to_its_account_policy",
       {greeting,
        ehlo,
        {"MAIL FROM:<carol@refused.example>\r\n",
         {"550 5.7.1 Error: the trusted account may not send as <carol@refused.example>"}},
        mail}},
      {"rcpt_needs_mail", {greeting, ehlo, {"RCPT TO:<bob@example.net>\r\n", {need_mail}}}},
      {"data_needs_mail_and_a_recipient",
       {greeting,
        ehlo,
        {"DATA\r\n", {need_mail}},
        mail,
        {"DATA\r\n", {need_rcpt}},
        rcpt,
        data,
        body}},
      {"mail_does_not_nest",
       {greeting,
        ehlo,
        mail,
        {"MAIL FROM:<carol@example.com>\r\n", {nested_mail}},
        rcpt,
        {"MAIL FROM:<carol@example.com>\r\n", {nested_mail}},
        data,
        body}},
      {"ehlo_again_resets_the_transaction",
       {greeting, ehlo, mail, rcpt, ehlo, {"RCPT TO:<carol@example.net>\r\n", {need_mail}}}},
      {"rset_resets_the_transaction",
       {greeting, ehlo, mail, rcpt, {"RSET\r\n", {ok}}, {"DATA\r\n", {need_mail}}, mail}},

      // Pipelining (RFC 2920): one reply per command, in order, even when one
      // fails; commands pipelined after the final "." are answered after it.
      {"a_pipelined_group_is_answered_in_order",
       {greeting,
        ehlo,
        {"MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.net>\r\nRCPT TO:<bob>\r\n"
         "RCPT TO:<carol@example.net>\r\nDATA\r\n",
         {sender_ok, recipient_ok, "501 5.1.3 Bad recipient address syntax", recipient_ok,
          go_ahead}},
        {"Subject: hi\r\n\r\nHello.\r\n.\r\nMAIL FROM:<alice@example.com>\r\n"
         "RCPT TO:<dave@example.org>\r\nBDAT 4 LAST\r\nHi\r\nQUIT\r\nNOOP\r\n",
         {ev_commit, queued, sender_ok, recipient_ok, ev_commit, queued, bye, ev_close}}}},

      // Limits.
      {.name = "recipients_beyond_the_limit_are_refused",
       .steps =
           {greeting,
            ehlo,
            mail,
            rcpt,
            {"RCPT TO:<carol@example.net>\r\n", {recipient_ok}},
            {"RCPT TO:<dave@example.net>\r\n",
             {"452 4.5.3 Error: too many recipients (the limit is 2 per message; send the rest in "
              "another one)"}},
            data,
            body},
       .limits = two_recipients()},
      {"a_command_line_has_at_most_512_octets",
       {greeting,
        ehlo,
        {noop_512, {ok}},
        {noop_513, {command_too_long}},
        {"NOOP\r\n", {ok}},
        mail,
        {"RCPT TO:<" + std::string(2000, 'b') + "@example.net>\r\n", {command_too_long}},
        rcpt,
        data,
        body}},
      {"a_bare_lf_ends_a_command_line",
       {greeting, {"EHLO client.example\n", ehlo.server}, {"NOOP\n", {ok}}}},
      {"a_text_line_has_at_most_1000_octets",
       {greeting,
        ehlo,
        mail,
        rcpt,
        data,
        {line_1000 + ".\r\n", {ev_commit, queued}},
        mail,
        rcpt,
        data,
        {"Subject: long\r\n" + line_1001 + "end\r\n.\r\n", {line_too_long, ev_discard}},
        mail}},
      {.name = "a_message_above_the_size_limit_is_refused_after_its_end",
       .steps = {greeting,
                 ehlo_size_10,
                 mail,
                 rcpt,
                 data,
                 // 11 octets on the wire, 10 without the stuffing dot (RFC 1870).
                 {"..2345678\r\n.\r\n", {ev_commit, queued}},
                 mail,
                 rcpt,
                 data,
                 {"0123456789\r\n.\r\n",
                  {"552 5.3.4 Error: message size exceeds the limit of 10 octets", ev_discard}},
                 mail,
                 rcpt,
                 {"BDAT 6\r\n012345", {"250 2.0.0 Ok: 6 octets received"}},
                 {"BDAT 5 LAST\r\n6789\n",
                  {"552 5.3.4 Error: message size exceeds the limit of 10 octets", ev_discard}}},
       .limits = small_messages()},
      {.name = "mail_size_above_the_limit_is_refused_at_once",
       .steps = {greeting,
                 ehlo_size_10,
                 {"MAIL FROM:<alice@example.com> SIZE=11\r\n",
                  {"552 5.3.4 Message size exceeds fixed limit"}},
                 {"MAIL FROM:<alice@example.com> SIZE=10\r\n", {sender_ok}}},
       .limits = small_messages()},

      // DATA (RFC 5321 4.1.1.4): only CRLF "." CRLF ends the message.
      {"an_empty_message_is_accepted",
       {greeting, ehlo, mail, rcpt, data, {".\r\n", {ev_commit, queued}}}},
      {"dot_stuffed_lines_do_not_end_the_message",
       {greeting, ehlo, mail, rcpt, data, {"..\r\n...\r\n.x\r\n.\r\n", {ev_commit, queued}}}},
      {"a_bare_lf_in_the_body_is_refused",
       {greeting,
        ehlo,
        mail,
        rcpt,
        data,
        {"line one\nline two\r\n.\r\n", {bare_cr_or_lf, ev_discard}},
        mail}},
      {"a_bare_cr_in_the_body_is_refused",
       {greeting,
        ehlo,
        mail,
        rcpt,
        data,
        {"line one\rline two\r\n.\r\n", {bare_cr_or_lf, ev_discard}},
        mail}},
      // SMTP smuggling: "." LF is not an end of data, so the commands after
      // it are message text, and the message is refused.
      {"a_smuggled_end_of_data_is_message_text",
       {greeting,
        ehlo,
        mail,
        rcpt,
        data,
        {"Hi\r\n.\nMAIL FROM:<mallory@example.com>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\n"
         "Forged\r\n.\r\n",
         {bare_cr_or_lf, ev_discard}},
        mail}},

      // BDAT (RFC 3030).
      {"bdat_chunks_are_acknowledged_and_last_commits",
       {greeting,
        ehlo,
        mail,
        rcpt,
        {"BDAT 6\r\nHello,", {"250 2.0.0 Ok: 6 octets received"}},
        {"BDAT 2\r\n\r\n", {"250 2.0.0 Ok: 8 octets received"}},
        {"BDAT 0\r\n", {"250 2.0.0 Ok: 8 octets received"}},
        {"BDAT 9 LAST\r\n.\r\nQUIT\r\n", {ev_commit, queued}},
        mail}},
      {"bdat_0_last_ends_an_empty_message",
       {greeting, ehlo, mail, rcpt, {"BDAT 0 LAST\r\n", {ev_commit, queued}}}},
      // RFC 3030 4.2: a refused BDAT's chunk is still read, and thrown away.
      {"bdat_out_of_sequence_swallows_its_chunk",
       {greeting,
        {"BDAT 6\r\nQUIT\r\n", {helo_first}},
        ehlo,
        {"BDAT 6\r\nQUIT\r\n", {need_mail}},
        mail,
        {"BDAT 6 LAST\r\nQUIT\r\n", {need_rcpt}},
        rcpt,
        data,
        body}},
      {"data_cannot_follow_bdat",
       {greeting,
        ehlo,
        mail,
        rcpt,
        {"BDAT 3\r\nabc", {"250 2.0.0 Ok: 3 octets received"}},
        {"DATA\r\n", {"503 5.5.1 Error: DATA cannot follow BDAT in one message"}},
        {"MAIL FROM:<alice@example.com>\r\n", {finish_bdat}},
        {"BDAT 2 LAST\r\n\r\n", {ev_commit, queued}}}},
      {"rset_between_bdat_chunks_discards_the_message",
       {greeting,
        ehlo,
        mail,
        rcpt,
        {"BDAT 3\r\nabc", {"250 2.0.0 Ok: 3 octets received"}},
        {"RSET\r\n", {ok, ev_discard}},
        mail,
        rcpt,
        {"BDAT 3 LAST\r\nabc", {ev_commit, queued}}}},
      {"ehlo_between_bdat_chunks_discards_the_message",
       {greeting,
        ehlo,
        mail,
        rcpt,
        {"BDAT 3\r\nabc", {"250 2.0.0 Ok: 3 octets received"}},
        then(ehlo, ev_discard),
        {"RCPT TO:<carol@example.net>\r\n", {need_mail}}}},
      {"only_bdat_or_rset_may_follow_a_chunk",
       {greeting,
        ehlo,
        mail,
        rcpt,
        {"BDAT 3\r\nabc", {"250 2.0.0 Ok: 3 octets received"}},
        {"RCPT TO:<carol@example.net>\r\n", {finish_bdat}},
        {"MAIL FROM:<alice@example.com>\r\n", {finish_bdat}},
        {"NOOP\r\n", {ok}},
        {"BDAT 3 LAST\r\ndef", {ev_commit, queued}}}},
      {"a_bare_cr_ending_the_last_chunk_is_refused",
       {greeting,
        ehlo,
        mail,
        rcpt,
        {"BDAT 3\r\nab\r", {"250 2.0.0 Ok: 3 octets received"}},
        {"BDAT 0 LAST\r\n", {bare_cr_or_lf, ev_discard}},
        mail}},

      // The spool's answer decides the reply.
      {.name = "a_spool_write_error_is_a_temporary_failure",
       .steps =
           {greeting,
            ehlo,
            mail,
            rcpt,
            data,
            {"Hi\r\n.\r\n",
             {ev_commit,
              "451 4.3.0 Error: local error while storing the message, not accepted; try again "
              "later"}},
            mail},
       .spool = spool_result::io_error},
      {.name = "a_full_spool_is_a_temporary_failure",
       .steps = {greeting,
                 ehlo,
                 mail,
                 rcpt,
                 {"BDAT 4 LAST\r\nHi\r\n",
                  {ev_commit,
                   "452 4.3.1 Error: insufficient system storage, message not accepted; try again "
                   "later"}},
                 mail},
       .spool = spool_result::no_space},

      // Other commands.
      {"vrfy_help_and_noop_answer_without_a_transaction",
       {greeting,
        ehlo,
        {"VRFY bob\r\n",
         {"252 2.5.0 Cannot verify the user; send the message and delivery will be attempted"}},
        {"HELP\r\n",
         {"214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP"}},
        {"NOOP\r\n", {ok}},
        {"NOOP whatever\r\n", {ok}}}},
      {"unknown_commands_are_refused",
       {greeting,
        {"FROB\r\n", {"500 5.5.1 Command unrecognized"}},
        ehlo,
        {"MAILFROM:<alice@example.com>\r\n", {"500 5.5.1 Command unrecognized"}},
        mail}},
      {"bad_syntax_is_refused_with_501",
       {greeting,
        {"HELO\r\n", {"501 5.5.4 Syntax: HELO hostname"}},
        ehlo,
        {"MAIL FROM:alice@example.com\r\n", {"501 5.5.4 Syntax: MAIL FROM:<address>"}},
        {"MAIL FROM:<alice>\r\n", {"501 5.1.7 Bad sender address syntax"}},
        {"MAIL FROM:<alice@example.com> FROB=1\r\n", {"555 5.5.4 Unsupported parameter"}},
        mail,
        {"RCPT TO:<bob@example.net> NOTIFY\r\n", {"501 5.5.4 Syntax: parameter needs a value"}},
        {"DATA now\r\n", {"501 5.5.4 Syntax: DATA"}},
        {"BDAT ten\r\nRSET\r\n", {"501 5.5.4 Syntax: BDAT chunk-size [LAST]", ok}}}},
      {"binarymime_is_not_offered",
       {greeting,
        ehlo,
        {"MAIL FROM:<alice@example.com> BODY=BINARYMIME\r\n",
         {"555 5.5.4 Error: BODY=BINARYMIME is not supported here; send the message as 8BITMIME"}},
        {"MAIL FROM:<alice@example.com> BODY=8BITMIME\r\n", {sender_ok}}}},
      {"starttls_and_auth_are_refused_where_not_offered",
       {greeting,
        ehlo,
        {"STARTTLS\r\n", {"502 5.5.1 Error: STARTTLS is not offered on this port"}},
        {"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", {"502 5.5.1 Error: AUTH is not offered here"}},
        mail}},

      // RFC 3207 4.2: after the handshake the session starts over, and
      // nothing sent in the clear after STARTTLS is acted on.
      {.name = "starttls_starts_the_session_over",
       .steps = {greeting,
                 ehlo_starttls,
                 {"HELP\r\n",
                  {"214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP "
                   "STARTTLS"}},
                 mail,
                 {"STARTTLS\r\n",
                  {"503 5.5.1 Error: STARTTLS is not allowed inside a transaction; RSET first"}},
                 {"RSET\r\n", {ok}},
                 {"STARTTLS\r\nMAIL FROM:<mallory@example.com>\r\n",
                  {"220 2.0.0 Ready to start TLS", ev_starttls}},
                 {"MAIL FROM:<alice@example.com>\r\n", {helo_first}},
                 ehlo,
                 {"HELP\r\n",
                  {"214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP"}},
                 {"STARTTLS\r\n", {"503 5.5.1 Error: TLS is already active"}},
                 mail,
                 rcpt,
                 data,
                 body},
       .cut_stride = 0,
       .starttls = true},

      // AUTH (RFC 4954): an account may send from an untrusted address.
      {.name = "auth_plain_lets_an_account_send",
       .steps =
           {greeting,
            {"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", {"503 5.5.1 Error: send EHLO before AUTH"}},
            ehlo_auth,
            {"HELP\r\n",
             {"214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP AUTH"}},
            {"MAIL FROM:<alice@example.com>\r\n", {"530 5.7.0 Authentication required"}},
            {"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
             {ev_authenticate, "235 2.7.0 Authentication successful"}},
            {"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", {"503 5.5.1 Error: already authenticated"}},
            {"MAIL FROM:<alice@elsewhere.example>\r\n",
             {"550 5.7.1 Error: alice may not send as <alice@elsewhere.example>"}},
            mail,
            rcpt,
            data,
            body},
       .trusted = false,
       .auth = true},
      {.name = "auth_login_refuses_a_wrong_password",
       .steps = {greeting,
                 ehlo_auth,
                 {"AUTH LOGIN\r\n", {"334 VXNlcm5hbWU6"}},
                 {"YWxpY2U=\r\n", {"334 UGFzc3dvcmQ6"}},
                 {"d3Jvbmc=\r\n",
                  {ev_authenticate, "535 5.7.8 Authentication credentials invalid"}},
                 {"AUTH LOGIN YWxpY2VAZXhhbXBsZS5jb20=\r\n", {"334 UGFzc3dvcmQ6"}},
                 {"c2VjcmV0\r\n",
                  {ev_authenticate,
                   "535 5.7.8 Authentication credentials invalid; log in with your account's "
                   "username, not an email address"}},
                 {"AUTH LOGIN\r\n", {"334 VXNlcm5hbWU6"}},
                 {"*\r\n", {"501 5.7.0 Authentication cancelled"}},
                 {"MAIL FROM:<alice@example.com>\r\n", {"530 5.7.0 Authentication required"}}},
       .trusted = false,
       .auth = true},
      {.name = "auth_may_require_tls",
       .steps = {greeting,
                 ehlo,
                 {"HELP\r\n",
                  {"214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP"}},
                 {"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
                  {"538 5.7.11 Encryption required for requested authentication mechanism; use "
                   "STARTTLS first"}}},
       .trusted = false,
       .auth = true,
       .auth_require_tls = true},

      // The hop limit (RFC 5321 6.3): more Received: fields than the limit
      // is a loop, refused after the end of data; as many is fine.
      {.name = "too_many_received_headers_is_a_loop",
       .steps = {greeting,
                 ehlo,
                 mail,
                 rcpt,
                 data,
                 {"Received: a\r\nReceived: b\r\nreceived: c\r\n\r\nx\r\n.\r\n",
                  {"554 5.4.6 Error: too many hops: the message has 3 Received headers (the limit "
                   "is 2); it is probably in a mail loop",
                   ev_discard}},
                 mail,
                 rcpt,
                 {"BDAT 28 LAST\r\nReceived: a\r\nReceived: b\r\n\r\n", {ev_commit, queued}}},
       .limits = {.hops = 2}},

      // Sender verification (SPEC.md §4): MAIL waits for the domain's
      // check; a refusal ends the transaction, so a pipelined RCPT and DATA
      // get 503; the null sender is never checked.
      {.name = "sender_verification_waits_for_the_check_and_refusals_end_the_transaction",
       .steps = {greeting,
                 ehlo,
                 {"MAIL FROM:<a@nomx.test>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n",
                  {ev_verify, "451 4.1.8 Sender verify failed: domain has no MX or A record",
                   need_mail, need_mail}},
                 {"MAIL FROM:<a@nullmx.test>\r\n",
                  {ev_verify, "550 5.7.27 Sender domain accepts no mail (null MX)"}},
                 {"MAIL FROM:<>\r\n", {sender_ok}},
                 {"RSET\r\n", {ok}},
                 {"MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.net>\r\n",
                  {ev_verify, sender_ok, recipient_ok}},
                 data,
                 body},
       .verify_sender = true},

      // SMTPUTF8 (RFC 6531 3.5).
      {"non_ascii_addresses_need_smtputf8",
       {greeting,
        ehlo,
        mail,
        {"RCPT TO:<jörg@bücher.example>\r\n",
         {"553 5.6.7 Error: a non-ASCII recipient address needs SMTPUTF8 on MAIL FROM"}},
        {"RSET\r\n", {ok}},
        {"MAIL FROM:<jörg@bücher.example>\r\n",
         {"550 5.6.7 Non-ASCII sender address requires the SMTPUTF8 parameter"}},
        {"MAIL FROM:<jörg@bücher.example> SMTPUTF8\r\n", {sender_ok}},
        {"RCPT TO:<δοκιμή@παράδειγμα.δοκιμή>\r\n", {recipient_ok}},
        data,
        body}},
  };
}

class session_dialogue : public testing::TestWithParam<dialogue> {};

TEST_P(session_dialogue, answers_the_same_however_the_octets_arrive) {
  const dialogue& d = GetParam();
  const outcome expected = play_by_exchange(d);
  if (d.cut_stride == 0) return;
  const std::string in = client_octets(d);
  EXPECT_EQ(play(d, in, {}), expected) << "as one buffer";
  for (std::size_t cut = 0; cut <= in.size(); cut += d.cut_stride) {
    ASSERT_EQ(play(d, in, {cut}), expected) << "cut at " << cut;
  }
  std::vector<std::size_t> every_octet;
  for (std::size_t i = 1; i < in.size(); ++i) every_octet.push_back(i);
  EXPECT_EQ(play(d, in, every_octet), expected) << "one octet at a time";
}

INSTANTIATE_TEST_SUITE_P(session, session_dialogue, testing::ValuesIn(dialogues()),
                         [](const testing::TestParamInfo<dialogue>& p) { return p.param.name; });

// --- what is stored --------------------------------------------------------

dialogue single_message(std::vector<exchange> transaction) {
  dialogue d{"message", {greeting, ehlo}};
  d.steps.insert(d.steps.end(), transaction.begin(), transaction.end());
  return d;
}

TEST(session_envelope, data_stores_the_body_in_wire_form_with_the_envelope) {
  const outcome o = play_by_exchange(single_message({
      {"MAIL FROM:<alice@example.com> BODY=8BITMIME\r\n", {sender_ok}},
      rcpt,
      {"RCPT TO:<carol@example.net>\r\n", {recipient_ok}},
      data,
      {"..dot\r\nbody\r\n.\r\n", {ev_commit, queued}},
  }));
  ASSERT_EQ(o.messages.size(), 1u);
  const stored_message want{.sender = "alice@example.com",
                            .recipients = {"bob@example.net", "carol@example.net"},
                            .body = "..dot\r\nbody\r\n",
                            .size = 12,
                            .declared = body_type::eight_bit_mime};
  EXPECT_EQ(o.messages[0], want);
}

TEST(session_envelope, bdat_stores_the_raw_body_and_smtputf8) {
  const outcome o = play_by_exchange(single_message({
      {"MAIL FROM:<> SMTPUTF8\r\n", {sender_ok}},
      {"RCPT TO:<jörg@bücher.example>\r\n", {recipient_ok}},
      {"BDAT 5\r\n.dot\r", {"250 2.0.0 Ok: 5 octets received"}},
      {"BDAT 1 LAST\r\n\n", {ev_commit, queued}},
  }));
  ASSERT_EQ(o.messages.size(), 1u);
  const stored_message want{.sender = "",
                            .recipients = {"jörg@bücher.example"},
                            .body = ".dot\r\n",
                            .size = 6,
                            .body_is_raw = true,
                            .smtputf8 = true};
  EXPECT_EQ(o.messages[0], want);
}

TEST(session_envelope, an_empty_message_has_an_empty_body) {
  const outcome o =
      play_by_exchange(single_message({mail, rcpt, data, {".\r\n", {ev_commit, queued}}}));
  ASSERT_EQ(o.messages.size(), 1u);
  EXPECT_EQ(o.messages[0].body, "");
  EXPECT_EQ(o.messages[0].size, 0u);
  EXPECT_FALSE(o.messages[0].body_is_raw);
}

TEST(session_envelope, the_next_transaction_starts_empty) {
  const outcome o = play_by_exchange(single_message({
      {"MAIL FROM:<alice@example.com> SMTPUTF8\r\n", {sender_ok}},
      rcpt,
      {"BDAT 2 LAST\r\nab", {ev_commit, queued}},
      {"MAIL FROM:<carol@example.com>\r\n", {sender_ok}},
      {"RCPT TO:<dave@example.net>\r\n", {recipient_ok}},
      data,
      {"cd\r\n.\r\n", {ev_commit, queued}},
  }));
  ASSERT_EQ(o.messages.size(), 2u);
  const stored_message want{.sender = "carol@example.com",
                            .recipients = {"dave@example.net"},
                            .body = "cd\r\n",
                            .size = 4};
  EXPECT_EQ(o.messages[1], want);
}

// --- limits at their default values ----------------------------------------

TEST(session_default_limits, a_message_has_at_most_1000_recipients) {
  dialogue d = single_message({mail});
  std::vector<std::string> expected_rcpts;
  for (int i = 0; i < 1000; ++i) {
    expected_rcpts.push_back("r" + std::to_string(i) + "@example.net");
    d.steps.push_back({"RCPT TO:<" + expected_rcpts.back() + ">\r\n", {recipient_ok}});
  }
  d.steps.push_back(
      {"RCPT TO:<one-too-many@example.net>\r\n",
       {"452 4.5.3 Error: too many recipients (the limit is 1000 per message; send the rest in "
        "another one)"}});
  d.steps.push_back(data);
  d.steps.push_back(body);
  d.cut_stride = 97;
  const outcome expected = play_by_exchange(d);
  ASSERT_EQ(expected.messages.size(), 1u);
  EXPECT_EQ(expected.messages[0].recipients, expected_rcpts);
  const std::string in = client_octets(d);
  for (std::size_t cut = 0; cut <= in.size(); cut += d.cut_stride) {
    ASSERT_EQ(play(d, in, {cut}), expected) << "cut at " << cut;
  }
}

// --- timers ----------------------------------------------------------------

TEST(session_timeout, closes_with_421_and_reads_nothing_more) {
  const dialogue d{"timeout", {greeting, ehlo}};
  const session_config cfg = config_for(d);
  driver drv(cfg, d);
  drv.receive(client_octets(d) + "MAIL FROM:<alice@example.com>\r\nNOOP");
  drv.timeout();
  EXPECT_EQ(drv.current(), state::closing);
  drv.receive("\r\nNOOP\r\n");
  EXPECT_EQ(drv.result().transcript,
            lines(greeting.server) + lines(ehlo.server) + lines({sender_ok}) +
                "421 4.4.2 mx.test Error: idle timeout exceeded, closing connection\r\n");
}

}  // namespace
}  // namespace ringrelay::smtp
