#include "options.hh"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <ringrelay/net/listener.hh>

namespace ringrelay::ringbench {

const char* const main_help = R"(NAME
    ringbench - SMTP load generator and counting sink

SYNOPSIS
    ringbench send --server HOST:PORT (--messages N | --duration S) [OPTIONS]
    ringbench sink --listen HOST:PORT [OPTIONS]
    ringbench send --help | ringbench sink --help

DESCRIPTION
    `send` drives SMTP load against any server and reports throughput,
    latency percentiles and replies by code. `sink` is an SMTP server that
    accepts and discards mail, answers a configured mix of replies and
    verifies that every message body arrived intact. Both run one io_uring
    event loop per thread, like ringrelay itself.

    See `ringbench send --help`, `ringbench sink --help` and docs/ringbench.md.
)";

const char* const send_help = R"(NAME
    ringbench send - SMTP load generator

SYNOPSIS
    ringbench send --server HOST:PORT (--messages N | --duration S) [OPTIONS]

DESCRIPTION
    Opens --connections SMTP sessions spread over --threads event loops and
    sends generated messages until --messages were attempted or --duration
    elapsed, whichever comes first; then finishes the messages in flight and
    says QUIT. A run is always bounded: with only --messages it still stops
    after 3600 s.

    Every message carries "X-Ringbench-Id: THREAD-SEQ" and
    "X-Ringbench-Sum: CRC" (CRC-32C of the body after the header block, in
    hex), so `ringbench sink` can prove that the body arrived intact, even
    through relays that add headers. Bodies are 76-character lines of
    printable text, some starting with "." (dot-stuffing is exercised); each
    size is generated and dot-stuffed once and sent from that buffer.

OPTIONS
    --server HOST:PORT    the SMTP server (numeric IPv4 or [IPv6] address)
    --connections N       concurrent SMTP sessions (default 10)
    --messages N          messages to attempt in total
    --duration S          stop starting messages after S seconds (20, 20s,
                          5m, 1h; at most 86400 s)
    --size SIZE|MIX       whole message size (headers + body) in octets:
                          1024, 1k, 100k, 10m (k = 1024, m = 1048576), or a
                          weighted mix such as 1k:70,100k:25,10m:5
                          (default 1k)
    --rcpts N             recipients per message (default 1, at most 1000)
    --pipelining on|off   on (default): MAIL, every RCPT and DATA go out in
                          one write, and the next message's commands leave
                          as soon as the final reply arrives; off: one
                          command per round trip. A server that does not
                          offer PIPELINING gets one command at a time.
    --reuse N             messages per connection before QUIT and a new
                          connection (default 0: unlimited)
    --from ADDRESS        envelope sender (default ringbench@example.com)
    --to-domain DOMAIN    recipients are rcptK@DOMAIN (default example.net)
    --ehlo NAME           EHLO name (default ringbench.localdomain)
    --auth plain|login    authenticate after EHLO; needs --user and
                          --password
    --user U, --password P
    --threads N           event loops, one per CPU by default
    --timeout S           a connect, reply or TLS handshake slower than this
                          fails the connection (default 30)
    --starttls            EHLO, STARTTLS, TLS handshake, EHLO again; AUTH and
                          the messages then go inside TLS
    --tls                 implicit TLS: the handshake right after connecting
                          (ports such as 465), then greeting, EHLO, ...
    --tls-verify CAFILE   verify the server's certificate chain against the
                          PEM CA certificate(s) in CAFILE (the name is not
                          checked: ringbench connects to addresses). Without
                          it the certificate is NOT verified, which suits a
                          benchmark but checks nothing about the server
    --rate N              start N messages per second in total, evenly spaced
                          and handed to whichever connection is free (N may
                          have decimals); latency is then measured from
                          each message's scheduled start (see OUTPUT)
    --json                print the summary as JSON on standard output
    --quiet               no progress lines
    --help                this text

OUTPUT
    Each second, on standard error: elapsed time, messages/s and MB/s in
    that second, errors so far, messages in flight, messages done.
    At the end, on standard output: messages ok, errors by reply code
    ("conn" for a connection lost or timed out mid-message), refused
    recipients, throughput over the whole run (MB = 1,000,000 octets of
    message, dot-stuffing excluded), and latency percentiles (p50, p90,
    p99, p99.9, max) of the time from sending MAIL to the final 2xx reply,
    for successful messages. Percentiles come from a log-bucket histogram
    and are accurate to about 1.6%.

    With --rate the clock of each message starts at its scheduled time
    instead (the schedule is fixed: message k of a thread is due at
    start + k/rate). MAIL leaves at that time when a connection is free;
    when none is, the message waits and the wait counts in its latency, so
    a server that falls behind shows it (no coordinated omission). Give
    enough --connections for the rate: a queue that grows means the rate is
    above what the server, or the connections, can take. The summary then
    also gives the latency from MAIL (the server's part) and the start lag
    (how late MAIL left: waiting for a free connection, or ringbench's own
    wake-up on a busy machine). The schedule starts once the connections
    are ready (TLS and AUTH done).

EXIT STATUS
    0  every attempted message got a final 2xx reply
    1  some message failed, or none was sent, or the server could not be
       used at all (the reason is printed)
    2  bad command line

EXAMPLES
    ringbench send --server 127.0.0.1:2525 --connections 50 --duration 20
    ringbench send --server 127.0.0.1:2525 --messages 1000 --size 1k:70,100k:25,10m:5
    ringbench send --server 127.0.0.1:587 --duration 60 --auth plain --user u --password p
    ringbench send --server 127.0.0.1:587 --duration 60 --starttls --auth plain --user u --password p
    ringbench send --server 127.0.0.1:465 --duration 60 --tls --rate 5000 --connections 50
)";

const char* const sink_help = R"(NAME
    ringbench sink - counting, verifying SMTP sink

SYNOPSIS
    ringbench sink --listen HOST:PORT [OPTIONS]

DESCRIPTION
    Accepts SMTP on HOST:PORT with one listener per thread (SO_REUSEPORT),
    discards every message and counts messages and octets. It offers
    PIPELINING, SIZE, 8BITMIME, SMTPUTF8 and ENHANCEDSTATUSCODES, and
    CHUNKING, AUTH and STARTTLS when asked. At the end of each message it
    answers with the next code of the --reply mix.

    Integrity: for a message with an "X-Ringbench-Sum" header (ringbench
    send puts it there) the sink computes the CRC-32C of the body after the
    first empty line, dot-stuffing removed, and counts a mismatch when it
    differs. Headers a relay adds (Received, ...) do not matter. Messages
    without the header are counted as unverified.

OPTIONS
    --listen HOST:PORT   address to listen on (numeric IPv4 or [IPv6])
    --threads N          event loops, one per CPU by default
    --reply MIX          replies to the end of data, weighted, e.g.
                         250:98,451:1,550:1 (default 250); spread evenly,
                         so every 100 messages get exactly that mix
    --delay-ms D         wait D milliseconds before each end-of-data reply
    --auth-accept        offer AUTH PLAIN LOGIN and accept any credentials
    --chunking           offer CHUNKING (BDAT)
    --tls-cert FILE      PEM certificate chain; with --tls-key the sink
                         offers STARTTLS (RFC 3207)
    --tls-key FILE       the PEM private key of --tls-cert
    --implicit-tls       TLS from the connect on (like port 465) instead of
                         STARTTLS; needs --tls-cert and --tls-key
    --duration S         exit after S seconds (default: until SIGINT or
                         SIGTERM)
    --expect N           exit once N messages were received
    --json               print the summary as JSON on standard output
    --quiet              no progress lines
    --help               this text

OUTPUT
    Each second, on standard error: elapsed time, messages/s and MB/s in
    that second, messages so far, mismatches, open connections. On exit, on
    standard output: messages, octets (RFC 1870 size, the sum of message
    sizes), verified, mismatches, unverified, replies sent by code,
    connections, authentications. The first mismatches are also logged with
    their X-Ringbench-Id.

EXIT STATUS
    0  no mismatch (and --expect reached when given)
    1  some message failed verification, or --duration ended before
       --expect was reached
    2  bad command line, or the address cannot be listened on

EXAMPLES
    ringbench sink --listen 127.0.0.2:2526
    ringbench sink --listen 127.0.0.2:2526 --reply 250:98,451:1,550:1 --delay-ms 5
    ringbench sink --listen 127.0.0.2:2526 --expect 10000 --json
    ringbench sink --listen 127.0.0.2:2526 --tls-cert cert.pem --tls-key key.pem
)";

namespace {

bool parse_u64(std::string_view text, std::uint64_t& out) {
  if (text.empty()) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

bool parse_u32(std::string_view text, std::uint32_t& out, std::uint32_t max) {
  std::uint64_t v;
  if (!parse_u64(text, v) || v > max) return false;
  out = static_cast<std::uint32_t>(v);
  return true;
}

// Splits "a,b,c" into its items; parses each "value[:weight]" with `one`.
template <typename Parse>
std::string parse_mix(std::string_view text, std::vector<weighted_value>& out, const char* what,
                      Parse one) {
  out.clear();
  std::uint64_t total = 0;
  while (!text.empty()) {
    auto comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
    weighted_value w;
    auto colon = item.find(':');
    std::string err = one(item.substr(0, colon), w.value);
    if (!err.empty()) return err;
    if (colon != std::string_view::npos &&
        (!parse_u32(item.substr(colon + 1), w.weight, 1000000) || w.weight == 0))
      return std::string("the weight in '") + std::string(item) +
             "' must be a whole number from 1 to 1000000";
    total += w.weight;
    out.push_back(w);
  }
  if (out.empty()) return std::string("the ") + what + " mix is empty";
  if (total > 1000000)
    return std::string("the ") + what + " mix's weights add up to more than 1000000";
  return {};
}

}  // namespace

bool parse_size(std::string_view text, std::uint64_t& out) {
  std::uint64_t mult = 1;
  if (!text.empty()) {
    char last = text.back();
    if (last == 'k' || last == 'K') mult = 1024;
    if (last == 'm' || last == 'M') mult = 1048576;
    if (mult != 1) text.remove_suffix(1);
  }
  std::uint64_t v;
  if (!parse_u64(text, v) || v == 0 || v > (std::uint64_t{1} << 40) / mult) return false;
  out = v * mult;
  return true;
}

bool parse_duration(std::string_view text, double& out) {
  double mult = 1;
  if (!text.empty()) {
    char last = text.back();
    if (last == 's') mult = 1;
    if (last == 'm') mult = 60;
    if (last == 'h') mult = 3600;
    if (last == 's' || last == 'm' || last == 'h') text.remove_suffix(1);
  }
  if (text.empty()) return false;
  std::string s(text);
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (*end || !std::isfinite(v) || v <= 0) return false;
  out = v * mult;
  return true;
}

std::string parse_size_mix(std::string_view text, std::vector<weighted_value>& out) {
  return parse_mix(text, out, "size", [](std::string_view v, std::uint64_t& size) -> std::string {
    if (!parse_size(v, size))
      return std::string("'").append(v).append(
          "' is not a size: write octets (2048) or 1k, 100k, 10m");
    return {};
  });
}

std::string parse_reply_mix(std::string_view text, std::vector<weighted_value>& out) {
  return parse_mix(text, out, "reply", [](std::string_view v, std::uint64_t& code) -> std::string {
    if (!parse_u64(v, code) || code < 200 || code > 599)
      return std::string("'").append(v).append(
          "' is not a reply code: write a code from 200 to 599");
    return {};
  });
}

namespace {

// Walks argv; `value()` takes an option's value from "--opt=V" or the next
// argument.
class arg_reader {
 public:
  arg_reader(int argc, char** argv) : _argc(argc), _argv(argv) {}

  bool next() {
    if (_i >= _argc) return false;
    std::string_view a = _argv[_i++];
    _inline.reset();
    auto eq = a.find('=');
    if (a.starts_with("--") && eq != std::string_view::npos) {
      _inline = std::string(a.substr(eq + 1));
      a = a.substr(0, eq);
    }
    _name = std::string(a);
    return true;
  }
  const std::string& name() const { return _name; }
  bool value(std::string& out, std::string& err) {
    if (_inline) {
      out = *_inline;
      return true;
    }
    if (_i >= _argc) {
      err = _name + " needs a value";
      return false;
    }
    out = _argv[_i++];
    return true;
  }

 private:
  int _argc;
  char** _argv;
  int _i = 0;
  std::string _name;
  std::optional<std::string> _inline;
};

std::string bad(const std::string& opt, const std::string& value, const char* want) {
  return opt + " " + value + ": " + want;
}

std::string parse_threads(const std::string& v, unsigned& out) {
  std::uint32_t n;
  if (!parse_u32(v, n, 999) || n == 0)
    return bad("--threads", v, "write a number of threads from 1 to 999");
  out = n;
  return {};
}

// Messages per second: a decimal number such as 200 or 12.5.
bool parse_rate(const std::string& v, double& out) {
  char* end = nullptr;
  out = std::strtod(v.c_str(), &end);
  return !v.empty() && *end == 0 && std::isfinite(out) && out > 0 && out <= max_rate;
}

std::string parse_bounded_duration(const std::string& opt, const std::string& v, double& out) {
  if (!parse_duration(v, out) || out > max_duration_s)
    return bad(opt, v, "write seconds (20, 20s, 1.5, 5m, 1h), more than 0 and at most 86400");
  return {};
}

}  // namespace

std::string parse_send(int argc, char** argv, send_options& o, bool& help) {
  help = false;
  arg_reader r(argc, argv);
  std::string v, err;
  bool have_user = false, have_password = false;
  while (r.next()) {
    const std::string& n = r.name();
    if (n == "--help" || n == "-h") {
      help = true;
      return {};
    }
    if (n == "--json") {
      o.json = true;
      continue;
    }
    if (n == "--quiet") {
      o.quiet = true;
      continue;
    }
    if (n == "--starttls" || n == "--tls") {
      tls_mode m = n == "--tls" ? tls_mode::implicit : tls_mode::starttls;
      if (o.tls != tls_mode::none && o.tls != m)
        return "--starttls and --tls exclude each other: --starttls upgrades a plain port "
               "(25, 587), --tls speaks TLS from the connect on (465)";
      o.tls = m;
      continue;
    }
    if (!n.starts_with("--")) return "unexpected argument '" + n + "' (options start with --)";
    if (!r.value(v, err)) return err;
    if (n == "--server") {
      o.server = v;
      if (!net::parse_endpoint(v, o.server_addr, o.server_addr_len) || v.find(':') == v.npos)
        return bad(n, v, "write a numeric address and port: 127.0.0.1:2525 or [::1]:2525");
    } else if (n == "--connections") {
      if (!parse_u32(v, o.connections, 100000) || o.connections == 0)
        return bad(n, v, "write a number of connections from 1 to 100000");
    } else if (n == "--messages") {
      if (!parse_u64(v, o.messages) || o.messages == 0)
        return bad(n, v, "write a number of messages, at least 1");
    } else if (n == "--duration") {
      if (err = parse_bounded_duration(n, v, o.duration_s); !err.empty()) return err;
    } else if (n == "--size") {
      if (err = parse_size_mix(v, o.sizes); !err.empty()) return "--size: " + err;
    } else if (n == "--rcpts") {
      if (!parse_u32(v, o.rcpts, 1000) || o.rcpts == 0)
        return bad(n, v, "write a number of recipients from 1 to 1000");
    } else if (n == "--pipelining") {
      if (v != "on" && v != "off") return bad(n, v, "write on or off");
      o.pipelining = v == "on";
    } else if (n == "--reuse") {
      if (!parse_u32(v, o.reuse, 1u << 31))
        return bad(n, v, "write messages per connection (0 for unlimited)");
    } else if (n == "--from") {
      if (v.find_first_of("<> \r\n") != v.npos)
        return bad(n, v, "write a bare address such as bench@example.com (no <>, no spaces)");
      o.from = v;
    } else if (n == "--to-domain") {
      if (v.empty() || v.find_first_of("<>@ \r\n") != v.npos)
        return bad(n, v, "write a domain such as example.net");
      o.to_domain = v;
    } else if (n == "--ehlo") {
      if (v.empty() || v.find_first_of(" \r\n") != v.npos)
        return bad(n, v, "write a host name without spaces");
      o.ehlo = v;
    } else if (n == "--auth") {
      if (v == "plain")
        o.auth = auth_mechanism::plain;
      else if (v == "login")
        o.auth = auth_mechanism::login;
      else
        return bad(n, v, "write plain or login");
    } else if (n == "--user") {
      o.user = v;
      have_user = true;
    } else if (n == "--password") {
      o.password = v;
      have_password = true;
    } else if (n == "--threads") {
      if (err = parse_threads(v, o.threads); !err.empty()) return err;
    } else if (n == "--timeout") {
      if (!parse_duration(v, o.timeout_s) || o.timeout_s > 3600)
        return bad(n, v, "write seconds, more than 0 and at most 3600");
    } else if (n == "--tls-verify") {
      if (v.empty()) return bad(n, v, "write the PEM file of the CA certificate(s) to trust");
      o.tls_ca = v;
    } else if (n == "--rate") {
      if (!parse_rate(v, o.rate))
        return bad(n, v, "write messages per second, more than 0 and at most 10000000");
    } else {
      return "unknown option " + n;
    }
  }
  if (o.server.empty()) return "--server HOST:PORT is required (e.g. --server 127.0.0.1:2525)";
  if (o.messages == 0 && o.duration_s == 0)
    return "give --messages N or --duration S (or both): a run is always bounded";
  if (o.auth != auth_mechanism::none && (!have_user || !have_password))
    return "--auth needs --user and --password";
  if (o.auth == auth_mechanism::none && (have_user || have_password))
    return "--user and --password are used only with --auth plain|login";
  if (!o.tls_ca.empty() && o.tls == tls_mode::none)
    return "--tls-verify checks a TLS certificate: add --starttls or --tls";
  return {};
}

std::string parse_sink(int argc, char** argv, sink_options& o, bool& help) {
  help = false;
  arg_reader r(argc, argv);
  std::string v, err;
  while (r.next()) {
    const std::string& n = r.name();
    if (n == "--help" || n == "-h") {
      help = true;
      return {};
    }
    if (n == "--json") {
      o.json = true;
    } else if (n == "--quiet") {
      o.quiet = true;
    } else if (n == "--auth-accept") {
      o.auth_accept = true;
    } else if (n == "--chunking") {
      o.chunking = true;
    } else if (n == "--implicit-tls") {
      o.implicit_tls = true;
    } else if (!n.starts_with("--")) {
      return "unexpected argument '" + n + "' (options start with --)";
    } else {
      if (!r.value(v, err)) return err;
      if (n == "--listen") {
        sockaddr_storage ss;
        socklen_t len;
        if (!net::parse_endpoint(v, ss, len) || v.find(':') == v.npos)
          return bad(n, v, "write a numeric address and port: 127.0.0.2:2526 or [::1]:2526");
        o.listen = v;
        auto colon = v.rfind(':');
        o.listen_host = v.substr(0, colon);
        if (o.listen_host.starts_with('['))
          o.listen_host = o.listen_host.substr(1, o.listen_host.size() - 2);
        o.listen_port = static_cast<std::uint16_t>(std::atoi(v.c_str() + colon + 1));
      } else if (n == "--threads") {
        if (err = parse_threads(v, o.threads); !err.empty()) return err;
      } else if (n == "--reply") {
        if (err = parse_reply_mix(v, o.replies); !err.empty()) return "--reply: " + err;
      } else if (n == "--delay-ms") {
        if (!parse_u32(v, o.delay_ms, 600000))
          return bad(n, v, "write milliseconds from 0 to 600000");
      } else if (n == "--duration") {
        if (err = parse_bounded_duration(n, v, o.duration_s); !err.empty()) return err;
      } else if (n == "--expect") {
        if (!parse_u64(v, o.expect) || o.expect == 0)
          return bad(n, v, "write a number of messages, at least 1");
      } else if (n == "--tls-cert") {
        if (v.empty()) return bad(n, v, "write the PEM certificate chain's file");
        o.tls_cert = v;
      } else if (n == "--tls-key") {
        if (v.empty()) return bad(n, v, "write the PEM private key's file");
        o.tls_key = v;
      } else {
        return "unknown option " + n;
      }
    }
  }
  if (o.listen.empty()) return "--listen HOST:PORT is required (e.g. --listen 127.0.0.2:2526)";
  if (o.tls_cert.empty() != o.tls_key.empty())
    return "--tls-cert and --tls-key go together: give the certificate chain and its key";
  if (o.implicit_tls && o.tls_cert.empty())
    return "--implicit-tls needs --tls-cert FILE and --tls-key FILE";
  return {};
}

}  // namespace ringrelay::ringbench
