// accounts/policy — what an account may do: when it becomes active, which
// sender domains it may use.
//
// Pure functions of the account and the values passed in; any thread.
// Refusals are the caller's to phrase (SPEC.md §3, §4): MAIL from an
// account that is not active yet gets 451 4.7.0 naming `active_at`; a
// sender domain the account may not use gets 550 5.7.1. A disabled account
// (`enabled` false) fails AUTH like a wrong password: that check is the
// caller's, before verification, and is not repeated here.
#pragma once

#include <cstdint>
#include <ringrelay/accounts/table.hh>
#include <string_view>

namespace ringrelay::accounts {

// A new account may send `delay` seconds after its `created_at`
// (config key accounts.activation_delay; 15 minutes in the shipped config).
class activation {
 public:
  explicit activation(std::uint32_t delay_seconds) : _delay(delay_seconds) {}

  // Unix seconds from which the account may send.
  std::int64_t active_at(const account& a) const { return a.created_at + _delay; }
  // True when the account may send at `now_seconds` (Unix seconds).
  bool active(const account& a, std::int64_t now_seconds) const {
    return now_seconds >= active_at(a);
  }
  std::uint32_t delay() const { return _delay; }

 private:
  std::uint32_t _delay;
};

// True when `a` may send mail from `domain` (the envelope sender's domain,
// without the "@"): the account lists no domains, or lists this one. The
// comparison is ASCII case-insensitive and ignores one trailing dot; a
// listed domain does not cover its subdomains (list them too). The null
// sender "<>" has no domain: the caller decides about it before asking.
bool sender_domain_allowed(const account& a, std::string_view domain);

}  // namespace ringrelay::accounts
