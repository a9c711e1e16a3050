// auth/sasl — see the header for the contract. Section numbers are RFC
// 4954's unless stated.
#include <cstdlib>
#include <ringrelay/auth/base64.hh>
#include <ringrelay/auth/sasl.hh>
#include <ringrelay/log/log.hh>

#include "secure.hh"

namespace ringrelay::auth {
namespace {

using result = sasl_exchange::result;
using status = sasl_exchange::status;

// §4: an empty challenge is "334" SP with nothing after it.
constexpr result plain_challenge{status::challenge, 334, "334 "};
// LOGIN's prompts: base64 of "Username:" and "Password:".
constexpr result username_challenge{status::challenge, 334, "334 VXNlcm5hbWU6"};
constexpr result password_challenge{status::challenge, 334, "334 UGFzc3dvcmQ6"};
constexpr result got_credentials{status::credentials, 0, ""};

// §4 and §6 give these codes; the texts say what to do instead.
constexpr std::string_view cancelled = "501 5.7.0 Authentication cancelled";
constexpr std::string_view bad_base64 =
    "501 5.5.2 Cannot Base64-decode client response: send RFC 4648 base64 without spaces";
constexpr std::string_view unknown_mechanism =
    "504 5.5.4 Unrecognized authentication type: use PLAIN or LOGIN";
constexpr std::string_view too_long = "500 5.5.6 Authentication exchange line is too long";
constexpr std::string_view malformed_plain =
    "501 5.5.2 Malformed PLAIN response: expected [authzid] NUL username NUL password";
constexpr std::string_view malformed_login = "501 5.5.2 Malformed LOGIN response: NUL octet";
// RFC 4616 §2 lets a server refuse an authorization identity it will not
// grant; 535 5.7.8 is §6's "credentials invalid".
constexpr std::string_view foreign_authzid =
    "535 5.7.8 Authentication credentials invalid: the authorization identity must be empty "
    "or your username";

bool equal_ignoring_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'a' && x <= 'z') x = static_cast<char>(x - 'a' + 'A');
    if (y >= 'a' && y <= 'z') y = static_cast<char>(y - 'a' + 'A');
    if (x != y) return false;
  }
  return true;
}

[[noreturn]] void misuse(const char* call, sasl_exchange::state s) {
  RR_ERROR("sasl_exchange: %s called in state %s", call, state_name(s));
  std::abort();
}

}  // namespace

const char* state_name(sasl_exchange::state s) {
  switch (s) {
    case sasl_exchange::state::idle:
      return "idle";
    case sasl_exchange::state::awaiting_plain:
      return "awaiting_plain";
    case sasl_exchange::state::awaiting_username:
      return "awaiting_username";
    case sasl_exchange::state::awaiting_password:
      return "awaiting_password";
  }
  return "?";
}

sasl_exchange::~sasl_exchange() {
  forget();
}

void sasl_exchange::enter(state s) {
  if (s == _state) return;
  RR_DEBUG("sasl state %s -> %s", state_name(_state), state_name(s));
  _state = s;
}

// The buffers held a password: zero them before they are reused or freed.
void sasl_exchange::forget() {
  detail::wipe(_decoded);
  detail::wipe(_credentials.username);
  detail::wipe(_credentials.password);
}

result sasl_exchange::fail(std::uint16_t code, std::string_view reply) {
  forget();
  enter(state::idle);
  return {status::error, code, reply};
}

bool sasl_exchange::decode(std::string_view text, result& error) {
  // §4: a line holding "*" cancels the exchange.
  if (text == "*") {
    error = fail(501, cancelled);
    return false;
  }
  detail::wipe(_decoded);
  if (!base64_decode(text, _decoded)) {
    error = fail(501, bad_base64);
    return false;
  }
  return true;
}

result sasl_exchange::start(std::string_view mechanism, std::string_view initial_response) {
  forget();
  enter(state::idle);
  // "AUTH " mechanism SP initial-response CRLF, against §4's limit.
  if (5 + mechanism.size() + 1 + initial_response.size() + 2 > max_line) return fail(500, too_long);
  const bool plain = equal_ignoring_case(mechanism, "PLAIN");
  if (!plain && !equal_ignoring_case(mechanism, "LOGIN")) return fail(504, unknown_mechanism);
  if (initial_response.empty()) {
    enter(plain ? state::awaiting_plain : state::awaiting_username);
    return plain ? plain_challenge : username_challenge;
  }
  // §4: "=" is a present but empty initial response.
  result error{};
  if (initial_response == "=") {
    _decoded.clear();
  } else if (!decode(initial_response, error)) {
    return error;
  }
  return plain ? finish_plain(_decoded) : finish_login_username(_decoded);
}

result sasl_exchange::step(std::string_view line) {
  if (_state == state::idle) misuse("step", _state);
  if (line.size() + 2 > max_line) return fail(500, too_long);
  result error{};
  if (!decode(line, error)) return error;
  switch (_state) {
    case state::awaiting_plain:
      return finish_plain(_decoded);
    case state::awaiting_username:
      return finish_login_username(_decoded);
    case state::awaiting_password:
      return finish_login_password(_decoded);
    case state::idle:
      break;
  }
  misuse("step", _state);
}

result sasl_exchange::line_too_long() {
  if (_state == state::idle) misuse("line_too_long", _state);
  return fail(500, too_long);
}

// RFC 4616 §2: message = [authzid] UTF8NUL authcid UTF8NUL passwd, where
// no part holds a NUL and authcid and passwd are not empty.
result sasl_exchange::finish_plain(std::string_view m) {
  const auto first = m.find('\0');
  const auto second = first == std::string_view::npos ? first : m.find('\0', first + 1);
  if (second == std::string_view::npos || m.find('\0', second + 1) != std::string_view::npos)
    return fail(501, malformed_plain);
  const auto authzid = m.substr(0, first);
  const auto authcid = m.substr(first + 1, second - first - 1);
  const auto passwd = m.substr(second + 1);
  if (authcid.empty() || passwd.empty()) return fail(501, malformed_plain);
  if (!authzid.empty() && authzid != authcid) return fail(535, foreign_authzid);
  _credentials.username.assign(authcid);
  _credentials.password.assign(passwd);
  detail::wipe(_decoded);
  enter(state::idle);
  return got_credentials;
}

result sasl_exchange::finish_login_username(std::string_view username) {
  if (username.find('\0') != std::string_view::npos) return fail(501, malformed_login);
  _credentials.username.assign(username);
  detail::wipe(_decoded);
  enter(state::awaiting_password);
  return password_challenge;
}

result sasl_exchange::finish_login_password(std::string_view password) {
  if (password.find('\0') != std::string_view::npos) return fail(501, malformed_login);
  _credentials.password.assign(password);
  detail::wipe(_decoded);
  enter(state::idle);
  return got_credentials;
}

sasl_credentials sasl_exchange::take_credentials() {
  sasl_credentials out{_credentials.username, _credentials.password};
  detail::wipe(_credentials.username);
  detail::wipe(_credentials.password);
  return out;
}

}  // namespace ringrelay::auth
