// auth/sasl — the server side of an SMTP AUTH exchange (RFC 4954) for the
// PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login) mechanisms, as a
// pure state machine.
//
// No I/O, no clock, no password checking. The session calls
//   start(mechanism, initial_response)   for "AUTH <mechanism> [<initial-response>]"
//   step(line)                           for each client line that follows
//                                        (without its CRLF)
// and gets back one of
//   challenge    send `reply` ("334 ...") and wait for the next line;
//   credentials  the exchange is over: verify `credentials()` and answer
//                235 2.7.0 or 535 5.7.8 (that is the caller's);
//   error        send `reply` (a 5xx) and leave AUTH: the exchange is over.
// The reply texts are static strings.
//
// Lines: RFC 4954 §4 lets AUTH lines grow to 12288 octets including CRLF
// (`max_line`), beyond the usual 512: the session must read AUTH lines up
// to that length. A longer line is answered with 500 5.5.6; the session
// calls `line_too_long()` when its reader overflowed, and `start`/`step`
// check the length too.
//
// Decisions (docs/accounts.md has the reasons):
//   - "*" cancels (501 5.7.0), also as an initial response;
//   - base64 is strict (auth/base64.hh), else 501 5.5.2;
//   - "=" as an initial response is an empty response (RFC 4954 §4);
//   - PLAIN: exactly "[authzid] NUL authcid NUL passwd" with a non-empty
//     authcid and password, else 501 5.5.2; an authzid other than empty
//     or the authcid is refused with 535 5.7.8 (ringrelay does not let
//     one account act for another);
//   - LOGIN: a NUL in the username or password is 501 5.5.2; empty ones
//     are passed on and fail verification like any wrong password.
//   - Passwords are compared as octets, without SASLprep.
//
// Threads: one exchange per session, on the session's shard. Calling
// `step` when no line is awaited is a broken invariant and aborts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ringrelay::auth {

struct sasl_credentials {
  std::string username;  // PLAIN authcid, or LOGIN's first answer
  std::string password;
};

class sasl_exchange {
 public:
  // RFC 4954 §4: octets an AUTH line may have, CRLF included.
  static constexpr std::size_t max_line = 12288;

  enum class status : std::uint8_t { challenge, credentials, error };
  struct result {
    status st;
    std::uint16_t code;      // 334, 235 is the caller's, 5xx
    std::string_view reply;  // the reply line without CRLF ("" for credentials)
  };

  enum class state : std::uint8_t {
    idle,               // no exchange (before start, or after its end)
    awaiting_plain,     // "334 " sent: the PLAIN response is next
    awaiting_username,  // LOGIN "334 VXNlcm5hbWU6" (Username:) sent
    awaiting_password,  // LOGIN "334 UGFzc3dvcmQ6" (Password:) sent
  };

  sasl_exchange() = default;
  ~sasl_exchange();
  sasl_exchange(const sasl_exchange&) = delete;
  sasl_exchange& operator=(const sasl_exchange&) = delete;

  // Begins an exchange. `mechanism` is matched without regard to case;
  // `initial_response` is the base64 text after it, "" when absent, "="
  // for an empty one. Any earlier exchange is forgotten.
  result start(std::string_view mechanism, std::string_view initial_response);
  // The client's next line, without CRLF.
  result step(std::string_view line);
  // The session's line reader overflowed (more than max_line octets).
  result line_too_long();

  // Valid after status::credentials until the next start().
  const sasl_credentials& credentials() const { return _credentials; }
  // Moves the credentials out (to a verifier job), leaving none here.
  sasl_credentials take_credentials();

  state current() const { return _state; }
  bool awaiting_line() const { return _state != state::idle; }

 private:
  void enter(state s);
  result fail(std::uint16_t code, std::string_view reply);
  result finish_plain(std::string_view response);
  result finish_login_username(std::string_view response);
  result finish_login_password(std::string_view response);
  // Decodes `text` into `_decoded`; an error result when it is "*" or not
  // base64, else nothing.
  bool decode(std::string_view text, result& error);
  void forget();

  state _state = state::idle;
  std::string _decoded;
  sasl_credentials _credentials;
};

const char* state_name(sasl_exchange::state s);

}  // namespace ringrelay::auth
